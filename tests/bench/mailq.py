"""mailq — fill a running mail system's queue over SMTP and time its `mailq`.

Owns: the fill (more submissions through the same SMTP client as the
workload, never by writing a system's queue files: that would skip the
work each system does to queue a message) and the timing of the listing
command each system gives its users (sendmail -bp, postqueue -p, edgemail's
mailq console script), warm (best and median of 3, after one untimed run)
and cold (after `sync; echo 3 > /proc/sys/vm/drop_caches`, when the kernel
permits it; otherwise the figure is None with the reason).

Never does: touch a queue directory.  Dropping the page cache is machine-wide
(it slows every process for a moment, nothing else).
"""
from __future__ import annotations

import os
import re
import statistics
import subprocess
import time

from submit import submit, tree

TOTAL_RE = re.compile(rb"Total requests: (\d+)|in (\d+) Requests?\.")


async def fill(host: str, port: int, have: int, target: int, *, source: str,
               size: int = 2048, connections: int = 4) -> dict:
    """Submit target - have more messages; return what the fill took."""
    missing = max(0, target - have)
    if not missing:
        return {"submitted": 0, "errors": 0, "seconds": 0.0}
    res = await submit(host, port, count=missing, size=size, connections=connections,
                       source=source)
    return {"submitted": res.messages, "errors": res.errors, "seconds": round(res.seconds, 1),
            "msg_per_s": round(res.rate, 1), "size": size, "first_error": res.first_error}


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            pass
    return total


def wait_settled(roots: list[int], timeout: float = 300.0) -> float:
    """Wait until the daemon's tree uses no CPU for a second (queue managers
    finish moving what the fill left them); return the seconds waited."""
    t0 = time.monotonic()
    last = cpu_ticks(tree(roots))
    while time.monotonic() - t0 < timeout:
        time.sleep(1.0)
        now = cpu_ticks(tree(roots))
        if now - last <= 1:
            break
        last = now
    return time.monotonic() - t0


def drop_caches() -> str | None:
    """None when the page cache was dropped, else why not."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return None
    except OSError as exc:
        return f"drop_caches not permitted: {exc}"


def run_mailq(argv: list[str], env: dict) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seconds = time.perf_counter() - t0
    m = TOTAL_RE.search(proc.stdout)
    listed = int(m.group(1) or m.group(2)) if m else None
    return {"seconds": round(seconds, 3), "rc": proc.returncode, "listed": listed,
            "bytes": len(proc.stdout), "stderr": proc.stderr.decode(errors="replace")[-300:]}


def time_mailq(argv: list[str], env: dict, warm_runs: int = 3) -> dict:
    run_mailq(argv, env)                       # untimed: load the cache
    warm = [run_mailq(argv, env) for _ in range(warm_runs)]
    why_not = drop_caches()
    cold = None if why_not else run_mailq(argv, env)
    secs = [w["seconds"] for w in warm]
    return {"warm_best_s": min(secs), "warm_median_s": statistics.median(secs),
            "warm_runs": warm, "cold_s": cold["seconds"] if cold else None,
            "cold_run": cold, "cold_note": why_not,
            "listed": warm[-1]["listed"], "rc": warm[-1]["rc"]}
