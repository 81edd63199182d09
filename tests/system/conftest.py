"""Fixtures for system tests: a hardware-sim world (root) and the link manager wired to it."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HWSIM = Path(__file__).resolve().parents[2] / "hardware-sim"
sys.path.insert(0, str(HWSIM))


@pytest.fixture
def world():
    """world(**opts) -> simworld.World (fast link unless told otherwise); always torn down."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, TUN); CI runs as root")
    import simworld
    made = []

    def up(**opts):
        opts.setdefault("link", {"down_bps": 2_000_000, "up_bps": 2_000_000, "delay_ms": 5})
        opts.setdefault("with_isp", False)
        w = simworld.World.up(**opts)
        made.append(w)
        return w

    yield up
    for w in made:
        w.down()
