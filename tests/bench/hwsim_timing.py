"""hwsim_timing — how well the simulated modem keeps time over a real pty (figures, not a test).

Usage: tests/bench/hwsim_timing.py [--runs 5] [--out bench-out]   (no root needed)

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

Output: a table on stdout and OUT/hwsim-timing.json (figures in seconds,
want, ratio median/want, the load average before and after).
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

from tests.hwsim.hwsim_helpers import ModemProc, command, connect, open_port  # noqa: E402


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


FIGURES = {"pacing": (pacing, 1024 * 8 / 33600 + 0.100), "repaced": (repaced, 2000 * 8 / 400000 + 0.010),
           "guard": (guard, 0.3), "connect": (connect_delay, 1.0), "drop": (drop, 0.5)}


def measure(runs: int) -> dict:
    out = {}
    for name, (fn, want) in FIGURES.items():
        got = []
        for _ in range(runs):
            with tempfile.TemporaryDirectory(prefix="hwsim-timing-") as tmp:
                got.append(fn(Path(tmp)))
        med = statistics.median(got)
        out[name] = {"want_s": round(want, 4), "median_s": round(med, 4), "min_s": round(min(got), 4),
                     "max_s": round(max(got), 4), "ratio": round(med / want, 3), "runs": runs}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", default="bench-out")
    args = ap.parse_args(argv)
    load_before = os.getloadavg()
    figures = measure(args.runs)
    report = {"figures": figures, "load_before": load_before, "load_after": os.getloadavg(),
              "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    print(f"{'figure':10} {'want s':>8} {'median s':>9} {'min s':>7} {'max s':>7} {'ratio':>6}")
    for name, f in figures.items():
        print(f"{name:10} {f['want_s']:8.3f} {f['median_s']:9.3f} {f['min_s']:7.3f} {f['max_s']:7.3f} {f['ratio']:6.2f}")
    print(f"load average before {load_before[0]:.2f}, after {report['load_after'][0]:.2f}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "hwsim-timing.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
