"""hwsim_timing — how well the simulated modem keeps time over a real pty (figures, not a test).

Usage: tests/bench/hwsim_timing.py [--runs 5] [--world] [--out bench-out]
       (no root needed; --world, the figures over ppp0, needs root)

tests/hwsim asserts what modemsim.py does over the pty; the timings are
asserted on virtual time (test_modemcore.py: guard time, connect delay,
carrier loss after N s; test_linkframe.py: the line's pacing).  This
script measures the same timings on the wall clock, through pyserial on
the pty, where a loaded machine adds its own delays; it used to be
assertions with tolerances in tests/hwsim, which made them race.

Figures (each the median of --runs fresh modems, with min and max):

    pacing      1024 B written, read back: up 33.6 kbit/s, down 56 kbit/s,
                50 ms each way; want 1024*8/33600 + 0.100 s (chunks
                pipeline: the slower direction plus both delays)
    repaced     the line changed at run time (control "link": 400 kbit/s,
                5 ms): 2000 B back; want 2000*8/400000 + 0.010 s
    guard       "+++" after a guard time (S12=15: 0.3 s) -> OK; want >= 0.3 s
    connect     ATDT with connect_delay 1.0 s -> CONNECT; want 1.0 s
    drop        --drop-after-s 0.5: CONNECT -> NO CARRIER; want 0.5 s

With --world (root: simworld's namespaces, fakepppd, ppp0; the default
line, 56k down, 33.6k up, 50 ms each way), from tests/hwsim/test_link.py:

    rtt         TCP echo of 32 B over ppp0 (median of 7); want 2 x 0.050 s
                + one 86 B frame each way at 33.6k and 56k
    down, up    goodput of 24000 B (down) / 16000 B (up), from the first
                segment on, in kbit/s; want the line rate (56 / 33.6)
    dellink     "hard" carrier loss -> RTM_DELLINK of ppp0; want < 0.2 s

Output: a table on stdout and OUT/hwsim-timing.json (want, median, min,
max: seconds, kbit/s for down and up; ratio median/want; the load average
before and after).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.hwsim.hwsim_helpers import (ModemProc, bulk_transfer, command, connect, echo_client,  # noqa: E402
                                       link_up, open_port, simworld)


@contextlib.contextmanager
def modem(tmp: Path, args: list[str]) -> Iterator[ModemProc]:
    m = ModemProc(tmp, args)
    try:
        yield m
    finally:
        m.stop()


def loopback(tmp: Path, args: list[str], payload: bytes, link: dict | None = None) -> float:
    """Seconds from writing `payload` into the paced loopback line to reading it all back."""
    with modem(tmp, ["--connect-delay", "0.1", *args]) as m, open_port(m, timeout=3) as port:
        if link:
            m.control("link", **link)
        connect(port)
        t0 = time.monotonic()
        port.write(payload)
        got = port.read(len(payload))
        secs = time.monotonic() - t0
    assert got == payload, "the loopback lost bytes"
    return secs


def pacing(tmp: Path) -> float:
    return loopback(tmp, ["--down-bps", "56000", "--up-bps", "33600", "--delay-ms", "50"], bytes(range(256)) * 4)


def repaced(tmp: Path) -> float:
    return loopback(tmp, [], b"z" * 2000, link=dict(down_bps=400000, up_bps=400000, delay_ms=5))


def guard(tmp: Path) -> float:
    """Seconds from "+++" (after the guard before it) to OK."""
    with modem(tmp, ["--connect-delay", "0.1"]) as m, open_port(m, timeout=2) as port:
        assert command(port, b"ATS12=15").endswith(b"OK\r\n")
        connect(port)
        time.sleep(0.4)                           # the guard before the +++
        port.write(b"+++")
        t0 = time.monotonic()
        reply = port.read_until(b"OK\r\n")
        secs = time.monotonic() - t0
    assert reply.endswith(b"OK\r\n"), reply
    return secs


def connect_delay(tmp: Path) -> float:
    """Seconds from ATDT to CONNECT with a 1 s connect delay."""
    with modem(tmp, ["--connect-delay", "1.0"]) as m, open_port(m, timeout=3) as port:
        assert command(port, b"ATE0").endswith(b"OK\r\n")
        t0 = time.monotonic()
        reply = command(port, b"ATDT1", wait_s=3)
        secs = time.monotonic() - t0
    assert b"CONNECT" in reply, reply
    return secs


def drop(tmp: Path) -> float:
    """Seconds from CONNECT to NO CARRIER with --drop-after-s 0.5."""
    with modem(tmp, ["--connect-delay", "0.1", "--drop-after-s", "0.5"]) as m, open_port(m, timeout=2) as port:
        connect(port)
        t0 = time.monotonic()
        got = port.read_until(b"NO CARRIER\r\n")
        secs = time.monotonic() - t0
    assert got.endswith(b"NO CARRIER\r\n"), got
    return secs


def rtt(w) -> float:
    c = echo_client(w, 7002)
    rtts = []
    for _ in range(7):
        time.sleep(0.05)                          # let the previous ACK clear the line
        t0 = time.monotonic()
        c.sendall(b"p" * 32)
        assert c.recv(100) == b"p" * 32
        rtts.append(time.monotonic() - t0)
    c.close()
    return statistics.median(rtts)


def goodput(w, direction: str, nbytes: int) -> float:
    """kbit/s from the first segment in to the last."""
    first, after_first = None, 0
    for data in bulk_transfer(w, direction, nbytes, 7003 if direction == "down" else 7004):
        if first is None:
            first = time.monotonic()
        else:
            after_first += len(data)
    assert first is not None
    return after_first * 8 / (time.monotonic() - first) / 1000


def dellink(w) -> float:
    from tests.hwsim.netlinkrec import NetlinkRecorder
    with NetlinkRecorder(w.edge_ns) as rec:
        proc = link_up(w)
        t0 = time.monotonic()
        w.modem_control("drop", mode="hard")
        gone = rec.wait_for("DELLINK").t - t0
    proc.wait(5)
    return gone


def world_figures(runs: int) -> dict:
    frame = 32 + 52 + 2                           # payload, IPv4 + TCP with timestamps, SLIP ENDs
    wants = {"rtt": 2 * 0.050 + frame * 8 / 33600 + frame * 8 / 56000, "down": 56.0, "up": 33.6, "dellink": 0.2}
    got: dict[str, list[float]] = {k: [] for k in wants}
    for _ in range(runs):
        w = simworld.World.up(with_isp=False, link={"buffer": 65536})
        try:
            link_up(w)
            got["rtt"].append(rtt(w))
            got["down"].append(goodput(w, "down", 24000))
            got["up"].append(goodput(w, "up", 16000))
        finally:
            w.down()
        w = simworld.World.up(with_isp=False)
        try:
            got["dellink"].append(dellink(w))
        finally:
            w.down()
    return {k: summary(got[k], wants[k]) for k in wants}


def summary(got: list[float], want: float) -> dict:
    med = statistics.median(got)
    return {"want": round(want, 4), "median": round(med, 4), "min": round(min(got), 4),
            "max": round(max(got), 4), "ratio": round(med / want, 3), "runs": len(got)}


FIGURES = {"pacing": (pacing, 1024 * 8 / 33600 + 0.100), "repaced": (repaced, 2000 * 8 / 400000 + 0.010),
           "guard": (guard, 0.3), "connect": (connect_delay, 1.0), "drop": (drop, 0.5)}


def measure(runs: int) -> dict:
    out = {}
    for name, (fn, want) in FIGURES.items():
        got = []
        for _ in range(runs):
            with tempfile.TemporaryDirectory(prefix="hwsim-timing-") as tmp:
                got.append(fn(Path(tmp)))
        out[name] = summary(got, want)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--world", action="store_true", help="also the figures over ppp0 (root)")
    ap.add_argument("--out", default="bench-out")
    args = ap.parse_args(argv)
    load_before = os.getloadavg()
    figures = measure(args.runs)
    if args.world:
        figures.update(world_figures(args.runs))
    report = {"figures": figures, "load_before": load_before, "load_after": os.getloadavg(),
              "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    print(f"{'figure':10} {'want':>8} {'median':>9} {'min':>7} {'max':>7} {'ratio':>6}   (s; down, up: kbit/s)")
    for name, f in figures.items():
        print(f"{name:10} {f['want']:8.3f} {f['median']:9.3f} {f['min']:7.3f} {f['max']:7.3f} {f['ratio']:6.2f}")
    print(f"load average before {load_before[0]:.2f}, after {report['load_after'][0]:.2f}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "hwsim-timing.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
