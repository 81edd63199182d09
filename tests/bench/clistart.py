"""clistart — what one command-line call costs (issue 15 §2): wall time and max RSS.

Usage (standalone): tests/bench/clistart.py [--runs 20] [--stdin FILE] -- CMD ...
In `make bench`: run.py's CLI phase (`--cli-runs N`, 0 skips it) calls
measure_cli() for each system after the submission rounds.

Each call is one fork+exec of the command as a user types it (the console
script, sendmail's or Postfix's binary), under /usr/bin/time, its stdout to /dev/null, stdin from
a file (the message for `sendmail -t`).  Wall time is time.perf_counter()
around spawn -> wait4(); the memory is GNU time's %M (the child's ru_maxrss:
the largest resident set it had, its VmHWM; time forks it from its own small
image, where a fork of this Python would report our pages).  The wall time
includes time's own fork and exec (the same for every system).  One untimed call
first (warm page cache, as a cron job or MUA calling the program again
finds it), then RUNS timed ones; reported: best, median and p90 of the wall
time (ms), the largest max RSS (MB), and each call's exit code must be 0.

Never: a timed assertion; the figures are printed and written by run.py.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: GNU time: the child's max RSS as its own small fork saw it (a child forked
#: from this Python would carry our pages into ru_maxrss until its exec)
TIME = "/usr/bin/time"


def one_call(argv: list[str], env: dict[str, str] | None, stdin_path: str | None) -> tuple[float, int, int]:
    """(wall seconds, max RSS KB, exit code) of one call."""
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    with tempfile.NamedTemporaryFile("r", prefix="clistart-") as rss_file:
        try:
            t0 = time.perf_counter()
            proc = subprocess.run([TIME, "-q", "-f", "%M", "-o", rss_file.name, *argv], env=env, stdin=stdin,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            wall = time.perf_counter() - t0
        finally:
            if stdin_path:
                stdin.close()
        maxrss = int(rss_file.read().split()[-1])
    if proc.returncode:
        sys.stderr.write(f"clistart: {argv[0]} exited {proc.returncode}: "
                         f"{proc.stderr[-500:].decode(errors='replace')}\n")
    return wall, maxrss, proc.returncode


def time_command(argv: list[str], env: dict[str, str] | None = None, stdin_path: str | None = None,
                 runs: int = 20) -> dict:
    """The figures of RUNS calls of ARGV (after one untimed call)."""
    one_call(argv, env, stdin_path)
    walls, rss, codes = [], [], []
    for _ in range(runs):
        wall, maxrss, code = one_call(argv, env, stdin_path)
        walls.append(wall * 1000)
        rss.append(maxrss)
        codes.append(code)
    walls.sort()
    return {"argv": argv, "runs": runs, "best_ms": round(walls[0], 1),
            "median_ms": round(statistics.median(walls), 1),
            "p90_ms": round(walls[int(0.9 * (len(walls) - 1))], 1),
            "max_rss_mb": round(max(rss) / 1024, 1), "median_rss_mb": round(statistics.median(rss) / 1024, 1),
            "failed_calls": sum(1 for c in codes if c)}


MESSAGE = (b"From: cron@edge.example\nTo: someone@remote.example\nSubject: nightly report\n\n"
           + b"All quiet on the edge.\n" * 40)


async def measure_cli(system, out: Path, runs: int, queued: int = 100, idle_sessions: int = 0,
                      idle_seconds: float = 60.0) -> dict:
    """One system's command line (issue 15 §2): a fresh start, QUEUED messages
    over SMTP, then RUNS calls of its listing command and of `sendmail -t`
    (the listing first: each submission adds a message).  With IDLE_SESSIONS,
    before the calls: that many idle SMTP sessions held IDLE_SECONDS while
    the tree's memory is sampled (idle.py).  edgemail's
    programs twice: the venv's console scripts (the tree's editable install,
    what `make venv` gives) and as the Debian package installs them."""
    import mailq as mailqmod
    import peers
    from submit import wait_listening
    message = out / "cli-message.txt"
    message.write_bytes(MESSAGE)
    rec: dict = {"system": system.name, "queued": queued, "loadavg_before": os.getloadavg()}
    system.prepare()
    system.start()
    try:
        await wait_listening(peers.SERVER_IP, system.port, 90, getattr(system, "check_alive", None))
        rec["fill"] = await mailqmod.fill(peers.SERVER_IP, system.port, 0, queued, source=peers.CLIENT_IP)
        rec["settle_s"] = round(mailqmod.wait_settled(system.root_pids()), 1)
        commands = {"mailq": (system.mailq_argv(), None), "sendmail -t": (system.submit_argv(), str(message))}
        if hasattr(system, "installed_argv"):
            commands["mailq (as installed)"] = (system.installed_argv("mailq"), None)
            commands["sendmail -t (as installed)"] = (system.installed_argv("sendmail") + ["-t"], str(message))
        if idle_sessions:
            import idle
            print(f"bench: {system.name}: {idle_sessions} idle sessions for {idle_seconds:.0f} s", flush=True)
            rec["idle"] = await idle.hold_idle(system, peers.SERVER_IP, system.port, peers.CLIENT_IP,
                                               idle_sessions, idle_seconds)
            print(f"bench: {system.name}: idle: " + ", ".join(
                f"{k}={v}" for k, v in rec["idle"].items() if k != "samples"), flush=True)
        env = system.env()
        rec["commands"] = {name: await asyncio.to_thread(time_command, argv, env, stdin, runs)
                           for name, (argv, stdin) in commands.items()}
    finally:
        system.stop()
    rec["loadavg_after"] = os.getloadavg()
    return rec


def cli_table(records: list[dict]) -> str:
    rows = [("system", "command", "best ms", "median ms", "p90 ms", "max RSS MB", "failed")]
    for r in records:
        if r.get("error"):
            rows.append((r["system"], f"ERROR {r['error']}", "", "", "", "", ""))
        for name, c in r.get("commands", {}).items():
            rows.append((r["system"], name, f"{c['best_ms']:.1f}", f"{c['median_ms']:.1f}",
                         f"{c['p90_ms']:.1f}", f"{c['max_rss_mb']:.1f}", str(c["failed_calls"])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
                     for row in rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--stdin", help="file given as each call's stdin")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    print(json.dumps(time_command(cmd, dict(os.environ), a.stdin, a.runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
