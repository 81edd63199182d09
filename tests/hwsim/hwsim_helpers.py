"""Helpers for the hardware-sim tests (importable as tests.hwsim.hwsim_helpers:
a module named conftest would clash with tests/system's when both folders
run in one pytest command).

ModemProc: hardware-sim/modemsim.py on a pty in a temporary folder;
open_port, command, connect: pyserial on its tty; link_up, echo_client,
bulk_transfer: TCP over a world's ppp0 (these also serve
tests/bench/hwsim_timing.py); run_chat: the real chat(8) on a tty; EdgeMailListener: an aiosmtpd server in
the world's edge namespace, the stand-in for edgemail's ISP-facing listener.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import termios
import threading
import time
import tty
from pathlib import Path

import pytest
import serial

HWSIM = Path(__file__).resolve().parents[2] / "hardware-sim"
sys.path.insert(0, str(HWSIM))

import simworld  # noqa: E402

CHAT = shutil.which("chat") or "/usr/sbin/chat"
needs_chat = pytest.mark.skipif(not os.path.exists(CHAT), reason="chat(8) not installed: apt-get install ppp (make debs)")


class ModemProc:
    def __init__(self, tmp: Path, args: list[str]):
        self.tty = str(tmp / "ttyS0")
        self.control_path = str(tmp / "modem.sock")
        self.log_path = tmp / "modemsim.log"
        self.proc = subprocess.Popen(
            [sys.executable, str(HWSIM / "modemsim.py"), "--tty", self.tty, "--control", self.control_path, *args],
            stdout=subprocess.DEVNULL, stderr=open(self.log_path, "wb"))
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                self.control("status")
                return
            except (OSError, ValueError):
                assert self.proc.poll() is None, self.log()
                time.sleep(0.02)
        raise RuntimeError(f"modemsim did not start:\n{self.log()}")

    def control(self, cmd: str, **kw) -> dict:
        return simworld.control(self.control_path, cmd, **kw)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_state(self, state: str, timeout_s: float = 3.0) -> dict:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            st = self.control("status")
            if st["state"] == state:
                return st
            time.sleep(0.01)
        raise AssertionError(f"modem state {st['state']!r}, want {state!r}\n{self.log()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def open_port(m, timeout=1.0):
    """pyserial on the modem's tty (115200, `timeout` per read)."""
    return serial.Serial(m.tty, 115200, timeout=timeout)


def command(port, cmd: bytes, want_end=b"\r\n", wait_s=1.0) -> bytes:
    """One AT command; what came back until a final result (or `wait_s`)."""
    port.reset_input_buffer()
    port.write(cmd + b"\r")
    end = time.monotonic() + wait_s
    buf = b""
    while time.monotonic() < end:
        buf += port.read(port.in_waiting or 1)
        if buf.endswith(want_end) and len(buf.strip()) > 0:
            if any(word in buf for word in (b"OK", b"ERROR", b"CONNECT", b"NO CARRIER", b"BUSY")):
                break
    return buf


def connect(port, cmd=b"ATDT5551234"):
    """Echo off, dial: the CONNECT reply (AssertionError when the modem says otherwise)."""
    assert command(port, b"ATE0").endswith(b"OK\r\n")
    reply = command(port, cmd, wait_s=3)
    assert b"CONNECT" in reply, reply
    return reply


def link_up(w):
    """fakepppd up on the world's modem: ppp0 with its addresses."""
    proc = w.start_fakepppd()
    w.wait_ppp_up(proc=proc)
    return proc


def echo_client(w, port: int):
    """A TCP echo server in the ISP namespace and a client to it over ppp0 (TCP_NODELAY)."""
    with w.in_isp():
        srv = socket.create_server(("10.64.0.1", port))

    def serve():
        conn, _ = srv.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while data := conn.recv(65536):
            conn.sendall(data)
        conn.close()
    threading.Thread(target=serve, daemon=True).start()
    with w.in_edge():
        c = socket.create_connection(("10.64.0.1", port), timeout=5)
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return c


def bulk_transfer(w, direction: str, nbytes: int, port: int):
    """`nbytes` over ppp0, "down" (ISP -> edge) or "up"; yields (monotonic time, chunk) as received."""
    server_ns, client_ns = (w.in_isp, w.in_edge) if direction == "down" else (w.in_edge, w.in_isp)
    server_ip = "10.64.0.1" if direction == "down" else "10.64.0.2"
    with server_ns():
        srv = socket.create_server((server_ip, port))

    def serve():
        conn, _ = srv.accept()
        conn.sendall(b"d" * nbytes)
        conn.close()
    threading.Thread(target=serve, daemon=True).start()
    with client_ns():
        c = socket.create_connection((server_ip, port), timeout=10)
    with c:
        while data := c.recv(65536):
            yield data


def open_raw(path: str) -> int:
    """The tty as pppd leaves it for the connect script: raw, no echo."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    attrs = termios.tcgetattr(fd)
    attrs[4] = attrs[5] = termios.B115200
    termios.tcsetattr(fd, termios.TCSANOW, attrs)
    return fd


def run_chat(tty_path: str, *script: str, timeout: int = 3) -> tuple[int, float]:
    """Run the real chat(8) on the modem's tty; (exit status, seconds)."""
    fd = open_raw(tty_path)
    try:
        t0 = time.monotonic()
        rc = subprocess.run([CHAT, "-t", str(timeout), *script], stdin=fd, stdout=fd,
                            stderr=subprocess.DEVNULL, timeout=timeout + 10).returncode
        return rc, time.monotonic() - t0
    finally:
        os.close(fd)
        time.sleep(0.05)  # the modem polls for DTE close every 10 ms; a faster reopen would hide it


class EdgeMailListener:
    """An SMTP server (aiosmtpd) on 10.64.0.2:25 in the edge namespace, in a thread:
    the stand-in for edgemail's ISP-facing listener."""

    def __init__(self, w: simworld.World, port: int = 25):
        import asyncio
        import socket
        import threading

        from aiosmtpd.smtp import SMTP

        self.messages: list[dict] = []
        outer = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                outer.messages.append(dict(mail_from=envelope.mail_from, rcpts=list(envelope.rcpt_tos),
                                           data=envelope.content, peer=session.peer[0]))
                return "250 2.0.0 OK"

        with w.in_edge():
            self.sock = socket.create_server((w.edge_ip, port))
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self.server = self.loop.run_until_complete(self.loop.create_server(
                lambda: SMTP(Handler(), hostname="gw.edge.example"), sock=self.sock))
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(5)

    def wait(self, n: int, timeout_s: float = 10.0) -> list[dict]:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and len(self.messages) < n:
            time.sleep(0.02)
        return self.messages

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
