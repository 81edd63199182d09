"""Helpers for tests that watch processes through /proc: a process's
children, and waiting until processes are gone (exited, or zombies)."""

from __future__ import annotations

import time


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def state(pid: int) -> str:
    """The process's state letter ("Z": a zombie), or "" when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def wait_gone(pids: list[int], timeout: float = 10.0, what: str = "process") -> None:
    deadline = time.monotonic() + timeout
    for pid in pids:
        while state(pid) not in ("Z", ""):
            assert time.monotonic() < deadline, f"{what} {pid} still running after {timeout}s"
            time.sleep(0.005)
