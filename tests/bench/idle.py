"""idle — the daemon's memory while many SMTP sessions sit idle (issue 15 §1).

Used by run.py's command-line phase (`--idle-sessions N`, `--idle-seconds S`;
0 sessions skips it): with the system started and its queue at the CLI
phase's 100 messages, N client connections are opened from the bench's LAN
address, each reads the greeting and says EHLO, then stays silent.  The
daemon's process tree is sampled once a second for S seconds (sum of VmRSS
and of Pss, process count); reported: the sessions that got their EHLO
reply, the first, last, smallest and largest sample, and drift = (last -
first) / first of the Pss sum (the issue's goal: flat within 5 % once
steady; the first sample is taken after every session is open).

Never: sends mail; a session refused or closed by the server counts as not
held (Postfix serves at most default_process_limit = 100 smtpd at once, the
others wait in the listen queue without a greeting: that is its design).
"""
from __future__ import annotations

import asyncio
import time

from submit import TreeSampler


async def _one(host: str, port: int, source: str, held: list, timeout: float) -> None:
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, local_addr=(source, 0)), timeout)
    except (OSError, asyncio.TimeoutError):
        return
    try:
        greeting = await asyncio.wait_for(reader.readline(), timeout)
        if greeting.startswith(b"220"):
            writer.write(b"EHLO idle.lan.example\r\n")
            while True:
                line = await asyncio.wait_for(reader.readline(), timeout)
                if not line.startswith(b"250"):
                    break
                if line[3:4] == b" ":
                    held.append(1)
                    break
        await asyncio.sleep(3600)          # silent until cancelled
    except (OSError, asyncio.TimeoutError):
        pass
    finally:
        writer.close()


async def hold_idle(system, host: str, port: int, source: str, sessions: int, seconds: float) -> dict:
    """Open SESSIONS idle sessions, sample the tree for SECONDS, close them."""
    held: list = []
    tasks = [asyncio.ensure_future(_one(host, port, source, held, 10.0)) for _ in range(sessions)]
    deadline = time.monotonic() + 15.0
    while len(held) < sessions and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    samples = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        s = TreeSampler(system.root_pids)
        await asyncio.to_thread(s.sample)
        samples.append({"t": round(time.monotonic() - t0, 1), "rss_sum_kb": s.peak_rss_kb,
                        "pss_sum_kb": s.peak_pss_kb, "processes": s.max_procs})
        await asyncio.sleep(1.0)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    pss = [x["pss_sum_kb"] for x in samples]
    return {"sessions": sessions, "held": len(held), "seconds": seconds,
            "first_pss_kb": pss[0], "last_pss_kb": pss[-1], "min_pss_kb": min(pss), "max_pss_kb": max(pss),
            "drift": round((pss[-1] - pss[0]) / pss[0], 4) if pss[0] else None,
            "max_rss_sum_kb": max(x["rss_sum_kb"] for x in samples),
            "max_processes": max(x["processes"] for x in samples), "samples": samples}
