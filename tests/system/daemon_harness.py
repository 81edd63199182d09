"""Helpers for the whole-daemon tests: the daemon as a subprocess (the same
`Daemon` class `make demo` uses), the console scripts, free ports, waiting
for what the daemon does (`wait_for`)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from edgemail.daemon.control import ControlClient
from demo.run import Daemon
from demo.run import write_config as demo_config

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
NODNS = Path(__file__).resolve().parent / "nodns"

__all__ = ["Daemon", "write_config", "start", "cli", "control", "free_port", "wait_for", "BIN", "NODNS"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(directory: Path, overrides: dict | None = None) -> Path:
    """The demo's config (the example's, moved into DIRECTORY) with
    local.create_mailboxes on: these tests send to many made-up users.  The
    default (unknown users refused) is tested by passing it false."""
    from edgemail.config.loader import _merge
    return demo_config(directory, _merge({"local": {"create_mailboxes": True}}, overrides or {}))


def start(tmp_path: Path, overrides: dict | None = None, env: dict | None = None) -> Daemon:
    d = Daemon(write_config(tmp_path, overrides), env=env)
    d.start()
    return d


def cli(daemon: Daemon, program: str, *args: str, input: bytes | None = None,
        env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a console script from the venv with EDGEMAIL_CONFIG pointing at the daemon's config."""
    full_env = {**os.environ, "EDGEMAIL_CONFIG": str(daemon.config), **(env or {})}
    return subprocess.run([str(BIN / program), *args], input=input, capture_output=True,
                          env=full_env, timeout=30)


def control(daemon: Daemon) -> ControlClient:
    return ControlClient(daemon.socket, timeout=10)


def wait_for(pred, what: str, log: Path, timeout: float = 20.0):
    """pred()'s first true value, polled until `timeout` (a positive event,
    never an assertion on time); the daemon's log tail when it never comes."""
    end = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}\n{log.read_text()[-4000:]}")
        time.sleep(0.05)
