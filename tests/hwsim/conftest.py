"""Fixtures for the hardware-sim tests: a modem emulator process, a whole world.

`modem(**opts)` starts hardware-sim/modemsim.py on a pty in tmp_path (no
root needed: without --netns its line is a paced loopback).  `world(**opts)`
is simworld.World.up(**opts) (root) and is always torn down, pass or fail;
the world's reaper tears it down even if pytest itself is killed.  The
helpers themselves are in hwsim_helpers.py.
"""
from __future__ import annotations

import os

import pytest

from tests.hwsim.hwsim_helpers import ModemProc, simworld


@pytest.fixture
def modem(tmp_path):
    started = []

    def start(*args: str) -> ModemProc:
        m = ModemProc(tmp_path, list(args))
        started.append(m)
        return m

    yield start
    for m in started:
        m.stop()


@pytest.fixture
def world():
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, TUN); CI runs as root")
    made = []

    def up(**opts) -> simworld.World:
        w = simworld.World.up(**opts)
        made.append(w)
        return w

    yield up
    for w in made:
        w.down()


FAST_LINE = {"down_bps": 1_000_000, "up_bps": 1_000_000, "delay_ms": 2}


@pytest.fixture
def online_world(world):
    """A world with the line up: fakepppd (with real chat) has made ppp0.
    The line is fast (1 Mbit/s, 2 ms) unless `link` says otherwise: these
    tests are about the ISP, not about the modem's physics."""
    def up(**opts) -> simworld.World:
        opts.setdefault("link", FAST_LINE)
        opts.setdefault("modem", {"connect_delay": 0.05})
        w = world(**opts)
        proc = w.start_fakepppd()
        w.wait_ppp_up(proc=proc)
        w.pppd = proc
        return w
    return up
