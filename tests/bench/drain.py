"""drain — issue 3's drain benchmark: empty a held queue over a paced 56k line.

Owns: the workload (N messages, sizes 2-50 KB drawn with a fixed seed,
recipients spread over 10 destination domains, all through one smart host),
the line (pacer.py between the system and the sink: `--drain-rate` bit/s
each way, `--drain-rtt` round trip, shared by all connections), the sink
(Postfix's own smtp-sink from the unpacked peer, a C program that accepts
everything fast), and the timing: from the queue-run command to an empty
queue.

The physical limit a drain is measured against: the bytes the system put on
the line towards the sink ÷ the rate, plus the round trips SMTP cannot
avoid.  Parallel connections hide each other's round trips behind data, so
the floor (`limit_s`) keeps only one connection's critical path: greeting,
EHLO, the first MAIL+RCPT+DATA group and the last final dot (4 RTT).
`serial_limit_s` is the floor for one connection with PIPELINING: 3 RTT per
connection (greeting, EHLO, QUIT) + 2 per message (the command group, the
dot).  `efficiency` = limit_s / measured time (1.0 = the line never idles).

edgemail's side: the same messages submitted over SMTP with `[link] mode =
"none"` and the smart host (an expensive route) pointed at the pacer, so
they wait in the queue, then `edgemail queue run` (what a user types, like
`postqueue -f`) and the same wait for an empty queue (spool/queue/).

Never does: address anything outside the bench namespace (the smart host
is the pacer on 10.255.77.1).
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import peers
from submit import SmtpError, expect, make_message, wait_listening

HERE = Path(__file__).resolve().parent
PACER_PORT, SINK_PORT = 2610, 2611
DOMAINS = [f"dest{i}.example" for i in range(10)]


def workload(count: int, seed: int = 3) -> list[tuple[str, int]]:
    """(recipient, size) per message: sizes 2-50 KB, 10 destinations round-robin."""
    rnd = random.Random(seed)
    return [(f"user{i}@{DOMAINS[i % len(DOMAINS)]}", rnd.randint(2048, 51200))
            for i in range(count)]


async def queue_messages(port: int, work: list[tuple[str, int]]) -> int:
    """Submit the workload over one SMTP connection; return messages accepted."""
    reader, writer = await asyncio.open_connection(peers.SERVER_IP, port,
                                                   local_addr=(peers.CLIENT_IP, 0))
    accepted = 0
    await expect(reader, 220, "greeting")
    writer.write(b"EHLO client.edge.example\r\n")
    await expect(reader, 250, "EHLO")
    for i, (rcpt, size) in enumerate(work):
        try:
            for cmd, code in ((b"MAIL FROM:<bench@edge.example>", 250),
                              (f"RCPT TO:<{rcpt}>".encode(), 250), (b"DATA", 354)):
                writer.write(cmd + b"\r\n")
                await expect(reader, code, cmd.decode())
            writer.write(make_message(i, size, "bench@edge.example", rcpt) + b".\r\n")
            await expect(reader, 250, "end of DATA")
            accepted += 1
        except SmtpError:
            writer.write(b"RSET\r\n")
            await reader.readline()
    writer.write(b"QUIT\r\n")
    writer.close()
    return accepted


def start_line(out: Path, rate: float, rtt: float, sink_root: Path) -> tuple[list, Path]:
    stats = out / "pacer-stats.json"
    stats.unlink(missing_ok=True)
    peers.ensure_postfix_users()          # smtp-sink drops to the bench's Postfix account
    sink = subprocess.Popen(
        [str(sink_root / "usr/sbin/smtp-sink"), "-u", peers.PF_USER, "-c",
         f"{peers.SERVER_IP}:{SINK_PORT}", "100"],
        env=dict(os.environ, LD_LIBRARY_PATH=peers.lib_path(sink_root)),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pacer = subprocess.Popen(
        [sys.executable, str(HERE / "pacer.py"), "--listen", f"{peers.SERVER_IP}:{PACER_PORT}",
         "--upstream", f"{peers.SERVER_IP}:{SINK_PORT}", "--rate", str(rate),
         "--rtt", str(rtt), "--stats", str(stats)])
    time.sleep(0.5)
    return [pacer, sink], stats


def limits(stats: dict, messages: int, rate: float, rtt: float) -> dict:
    wire = stats["up_bytes"] * 8 / rate
    return {"limit_s": round(wire + 4 * rtt, 1),
            "serial_limit_s": round(wire + (3 + 2 * messages) * rtt, 1)}


def queue_files(directory: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(directory))


async def drain_postfix(pf: peers.Postfix, args, out: Path) -> dict:
    """Queue the workload held by defer_transports, then `postqueue -f` through the line."""
    work = workload(args.drain_count)
    procs, stats_file = start_line(out, args.drain_rate, args.drain_rtt, pf.root)
    try:
        pf.relayhost = f"[{peers.SERVER_IP}]:{PACER_PORT}"
        pf.prepare()
        pf.start()
        accepted = await queue_messages(pf.port, work)
        await asyncio.sleep(2)            # qmgr moves the held mail to deferred/
        held = queue_files(pf.queue / "deferred")
        t0 = time.monotonic()
        peers.run(pf.flush_argv(), "postfix: postqueue -f", env=pf.env())
        await until_empty("postfix", [pf.queue / "deferred", pf.queue / "active", pf.queue / "incoming"],
                          t0, args.drain_timeout)
        seconds = time.monotonic() - t0
        await asyncio.sleep(1)            # let the pacer write its last counts
        stats = json.loads(stats_file.read_text())
    finally:
        pf.stop()
        for p in procs:
            p.terminate()
            p.wait()
    return line_report("postfix", work, accepted, held, seconds, stats, args)


async def until_empty(system: str, dirs: list[Path], t0: float, timeout: float, check=None) -> None:
    """Poll the queue directories until no file is left (TimeoutError after TIMEOUT)."""
    while sum(queue_files(d) for d in dirs):
        if check is not None:
            check()
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"{system}: queue not empty after {timeout}s")
        await asyncio.sleep(0.2)


def line_report(system: str, work, accepted: int, held: int, seconds: float, stats: dict,
                args) -> dict:
    lim = limits(stats, accepted, args.drain_rate, args.drain_rtt)
    return {"system": system, "messages": accepted, "held_before_run": held,
            "payload_bytes": sum(s for _, s in work), "seconds": round(seconds, 1), **lim,
            "efficiency": round(lim["limit_s"] / seconds, 3),
            "connections": stats["connections"],
            "round_trips_per_message": round(stats["turns"] / 2 / max(1, accepted), 2),
            "line": stats}


async def drain_edgemail(em: peers.Edgemail, sink_root: Path, args, out: Path) -> dict:
    """Queue the workload (expensive smart-host route, no link manager), then
    `edgemail queue run` through the line until spool/queue/ is empty."""
    work = workload(args.drain_count)
    procs, stats_file = start_line(out, args.drain_rate, args.drain_rtt, sink_root)
    spool = em.state / "spool"
    try:
        em.smart_host = f"[{peers.SERVER_IP}]:{PACER_PORT}"
        em.prepare()
        em.start()
        await wait_listening(peers.SERVER_IP, em.port, 90, em.check_alive)
        accepted = await queue_messages(em.port, work)
        await asyncio.sleep(1)
        held = queue_files(spool / "queue")
        t0 = time.monotonic()
        peers.run(em.queue_run_argv(), "edgemail: queue run", env=em.env())
        await until_empty("edgemail", [spool / "queue", spool / "hold"], t0, args.drain_timeout,
                          em.check_alive)
        seconds = time.monotonic() - t0
        await asyncio.sleep(1)            # let the pacer write its last counts
        stats = json.loads(stats_file.read_text())
    finally:
        em.stop()
        for p in procs:
            p.terminate()
            p.wait()
    rec = line_report("edgemail", work, accepted, held, seconds, stats, args)
    log = (em.state / "daemon.log").read_text(errors="replace")
    rec["sent_log_lines"] = log.count("stat=Sent")
    return rec
