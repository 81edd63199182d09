#!/usr/bin/env python3
"""modemsim.py - a Hayes modem on a pseudo-terminal, and the line behind it.

SYNOPSIS
    modemsim.py --tty /run/hwsim/X/ttyS0 --control /run/hwsim/X/modem.sock
                [--netns ISPNS [--ifname isp0] [--isp-addr 10.64.0.1] [--peer-addr 10.64.0.2]]
                [--down-bps 56000] [--up-bps 33600] [--delay-ms 50] [--buffer 8192]
                [--busy N] [--result 'NO DIALTONE'|'NO ANSWER'|'NO CARRIER'|BUSY]
                [--silent] [--garbage N] [--connect-delay S] [--speed N]
                [--drop-after-s T] [--drop-after-bytes N] [--drop-mode soft|hard|cut]

DESCRIPTION
    The DTE (chat, pyserial, pppd or fakepppd) opens the stable symlink
    --tty, which points at the slave of a pty whose master this program
    holds.  The Hayes dialogue is modemcore.ModemCore; this file is its
    driver:

    * DTE open/close: the master polls POLLHUP while no process holds the
      slave; the transition to HUP is "DTE closed" (hangs up if online).
    * DTR drop: the DTE sets the speed to 0 (B0); seen with tcgetattr on
      the master (ptys have no modem-control lines).
    * Carrier loss, soft: "\\r\\nNO CARRIER\\r\\n" in-band, back to command
      mode.  Hard: NO CARRIER, 200 ms for the DTE to read it, then the
      master is closed (the DTE gets EOF/EIO) and a fresh pty is made and
      the symlink re-pointed.  Cut: the master is closed at once, no text.
    * Data mode: with --netns, DTE bytes are SLIP frames; each packet goes
      through the uplink Pipe into TUN --ifname (isp0) in that namespace
      (this process moves itself there at start), and packets read from
      the TUN go through the downlink Pipe, SLIP-framed, to the DTE.
      Without --netns the line is a loopback: data comes back paced.

CONTROL SOCKET
    JSON lines over the unix socket --control; one request, one reply
    ({"ok": true, ...} or {"ok": false, "error": "..."}):
      {"cmd": "status"}                         state, dte, number, speed, faults, counters
      {"cmd": "faults", <Faults fields>}        change faults (a busy field re-arms the BUSY count)
      {"cmd": "clear"}                          no faults (connect_delay/speed kept)
      {"cmd": "drop", "mode": "soft"|"hard"|"cut"}   carrier loss now (cut: close, no text)
      {"cmd": "garbage", "n": 32}               line noise now
      {"cmd": "link", "down_bps":, "up_bps":, "delay_ms":, "buffer":}
      {"cmd": "events"}                         the last 200 driver events (dials, hangups ...)

DIAGNOSTICS
    One line per event on stderr.  Exit 0 on SIGTERM/SIGINT, 1 on a setup
    error (no such namespace, cannot create the TUN).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import select
import signal
import sys
import termios
import time
import tty
from dataclasses import asdict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ctlsock  # noqa: E402
import netns  # noqa: E402
from linkframe import Pipe, SlipDecoder, slip_encode  # noqa: E402
from modemcore import (  # noqa: E402,F401  (ModemCore re-exported: modemsim.ModemCore)
    DROP_MODES, Connected, DataFromDte, DialFailed, DialStarted, Escaped, Faults, HardHangup, HungUp,
    ModemCore, Output, State, faults_from,
)

TICK_S = 0.01
HARD_HANGUP_GRACE_S = 0.2


class LinkConfig:
    def __init__(self, down_bps=56000, up_bps=33600, delay_ms=50.0, buffer=8192):
        self.down_bps, self.up_bps, self.delay_ms, self.buffer = down_bps, up_bps, delay_ms, buffer

    def as_dict(self) -> dict:
        return dict(down_bps=self.down_bps, up_bps=self.up_bps, delay_ms=self.delay_ms, buffer=self.buffer)


class Pty:
    """The pty master and the stable symlink to its slave."""

    def __init__(self, link_path: str):
        self.link_path = link_path
        self.master, slave = os.openpty()
        tty.setraw(self.master)
        self.slave_path = os.ttyname(slave)
        os.close(slave)  # from now on POLLHUP on the master means "no DTE"
        os.set_blocking(self.master, False)
        tmp = link_path + ".new"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(self.slave_path, tmp)
        os.replace(tmp, link_path)

    def hup(self) -> bool:
        p = select.poll()
        p.register(self.master, select.POLLIN)
        return any(ev & select.POLLHUP for _, ev in p.poll(0))

    def dtr_low(self) -> bool:
        try:
            return termios.tcgetattr(self.master)[5] == termios.B0
        except termios.error:
            return False

    def write(self, data: bytes) -> None:
        try:
            os.write(self.master, data)
        except (BlockingIOError, OSError):
            pass  # DTE not reading: bytes are lost, as on a real line

    def close(self) -> None:
        os.close(self.master)


class ModemDriver:
    """Runs ModemCore against a pty, a line (TUN or loopback) and the control socket."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.loop = asyncio.get_running_loop()
        self.core = ModemCore(faults_from_args(args))
        self.link = LinkConfig(args.down_bps, args.up_bps, args.delay_ms, args.buffer)
        self.pty = Pty(args.tty)
        self.attached = False
        self.reading = False
        self.dtr_was_low = False
        self.rebuilding = False
        self.call = 0              # generation: packets of an old call never reach a new one
        self.tun: int | None = None
        self.slip = SlipDecoder()
        self.counters = dict(up_bytes=0, down_bytes=0, up_packets=0, down_packets=0)
        self.events: list[dict] = []
        self._make_pipes()

    # -- setup ---------------------------------------------------------------

    def open_tun(self) -> None:
        a = self.args
        self.tun = netns.open_tun(a.ifname)
        netns.ip("addr", "add", a.isp_addr, "peer", f"{a.peer_addr}/32", "dev", a.ifname)
        netns.ip("link", "set", a.ifname, "up")
        self.loop.add_reader(self.tun, self._on_tun)

    def _make_pipes(self) -> None:
        L = self.link
        self.down = Pipe(self._deliver_down, L.down_bps, L.delay_ms / 1000, L.buffer, self.loop)
        self.up = Pipe(self._deliver_up, L.up_bps, L.delay_ms / 1000, L.buffer, self.loop)

    # -- event log -------------------------------------------------------------

    def log(self, what: str, **kw) -> None:
        entry = dict(t=round(time.time(), 3), event=what, **kw)
        self.events = (self.events + [entry])[-200:]
        print(f"modemsim: {what} " + " ".join(f"{k}={v!r}" for k, v in kw.items()), file=sys.stderr, flush=True)

    # -- the pty ----------------------------------------------------------------

    async def watch(self) -> None:
        """Every 10 ms: DTE attach/detach, DTR (B0), core timers."""
        while True:
            now = self.loop.time()
            if not self.rebuilding:
                self._check_dte(now)
                deadline = self.core.deadline()
                if deadline is not None and now >= deadline:
                    self.perform(self.core.timer(now))
            await asyncio.sleep(TICK_S)

    def _check_dte(self, now: float) -> None:
        attached = not self.pty.hup()
        if attached and not self.attached:
            self.attached = True
            self.log("dte-open")
            self.loop.add_reader(self.pty.master, self._on_pty)
            self.reading = True
        elif not attached and self.attached:
            self._detach(now)
        low = self.attached and self.pty.dtr_low()
        if low and not self.dtr_was_low:
            self.log("dtr-drop")
            self.perform(self.core.dtr_dropped(now))
        self.dtr_was_low = low

    def _detach(self, now: float) -> None:
        self.attached = False
        self._stop_reading()
        self.log("dte-close")
        self.perform(self.core.dte_closed(now))

    def _stop_reading(self) -> None:
        if self.reading:
            self.loop.remove_reader(self.pty.master)
            self.reading = False

    def _on_pty(self) -> None:
        try:
            data = os.read(self.pty.master, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # EIO: the DTE closed (it may reopen before the next tick)
            self._detach(self.loop.time())
            return
        self.perform(self.core.receive(data, self.loop.time()))

    # -- performing core events -----------------------------------------------

    def perform(self, events: list) -> None:
        for ev in events:
            if isinstance(ev, Output):
                if self.attached:
                    self.pty.write(ev.data)
            elif isinstance(ev, DataFromDte):
                self._uplink(ev.data)
            elif isinstance(ev, DialStarted):
                self.log("dial", number=ev.number)
            elif isinstance(ev, Connected):
                self.call += 1
                self.slip = SlipDecoder()
                self.log("connect", number=ev.number, speed=ev.speed)
            elif isinstance(ev, DialFailed):
                self.log("dial-failed", result=ev.result)
            elif isinstance(ev, Escaped):
                self.log("escape")
            elif isinstance(ev, HungUp):
                self.call += 1
                self.log("hangup", cause=ev.cause)
            elif isinstance(ev, HardHangup):
                self.log("hard-hangup", cause=ev.cause, warned=ev.warned)
                self.loop.create_task(self._hard_hangup(HARD_HANGUP_GRACE_S if ev.warned else 0.0))

    async def _hard_hangup(self, grace_s: float) -> None:
        self.rebuilding = True
        self._stop_reading()
        await asyncio.sleep(grace_s)  # let the DTE read NO CARRIER first
        self.pty.close()
        self.attached = False
        self.dtr_was_low = False
        self.pty = Pty(self.args.tty)
        self.log("pty-new", slave=self.pty.slave_path)
        self.rebuilding = False

    # -- the line ------------------------------------------------------------------

    def _uplink(self, data: bytes) -> None:
        now = self.loop.time()
        self.perform(self.core.line_bytes(len(data), now))
        if self.tun is None:
            self.up.push(data, self.call)
            return
        for item in self.slip.feed(data):
            if isinstance(item, bytes):
                self.up.push(item, self.call)

    def _deliver_up(self, packet: bytes, call: int) -> None:
        if call != self.call:
            return
        self.counters["up_bytes"] += len(packet)
        self.counters["up_packets"] += 1
        if self.tun is None:
            self.down.push(packet, call)  # loopback line
        else:
            os.write(self.tun, packet)

    def _on_tun(self) -> None:
        try:
            packet = os.read(self.tun, 65536)
        except (BlockingIOError, OSError):
            return
        if self.core.state is State.DATA and self.attached:
            self.down.push(slip_encode(packet), self.call)

    def _deliver_down(self, data: bytes, call: int) -> None:
        if call != self.call or self.core.state is not State.DATA or not self.attached:
            return
        self.counters["down_bytes"] += len(data)
        self.counters["down_packets"] += 1
        self.pty.write(data)
        self.perform(self.core.line_bytes(len(data), self.loop.time()))

    # -- control socket ---------------------------------------------------------

    async def serve_control(self, path: str) -> asyncio.AbstractServer:
        return await ctlsock.serve(path, self.command)

    def command(self, req: dict) -> dict:
        cmd = req.pop("cmd")
        if cmd == "status":
            return self.status()
        if cmd == "faults":
            self.core.set_faults(faults_from(self.core.faults, req), rearm_busy="busy" in req)
            self.log("faults", **req)
            return {"faults": asdict(self.core.faults)}
        if cmd == "clear":
            f = self.core.faults
            self.core.set_faults(Faults(connect_delay=f.connect_delay, speed=f.speed))
            return {"faults": asdict(self.core.faults)}
        if cmd == "drop":
            mode = req.get("mode", "soft")
            if mode not in DROP_MODES:
                raise ValueError(f"mode must be one of {DROP_MODES}")
            events = self.core.carrier_lost("control", mode)
            if mode != "soft" and not events:
                events = [HardHangup("control", warned=False)]  # closing the pty works in any state
            self.perform(events)
            return {"dropped": bool(events)}
        if cmd == "garbage":
            self.perform([Output(self.core.garbage(int(req.get("n", 16))))])
            return {}
        if cmd == "link":
            for k in ("down_bps", "up_bps", "delay_ms", "buffer"):
                if k in req:
                    setattr(self.link, k, float(req[k]) if k != "buffer" else int(req[k]))
            self._make_pipes()
            return {"link": self.link.as_dict()}
        if cmd == "events":
            return {"events": self.events}
        raise ValueError(f"unknown command {cmd!r}")

    def status(self) -> dict:
        return dict(state=self.core.state.value, dte=self.attached, number=self.core.number,
                    dials=self.core.dials, faults=asdict(self.core.faults), link=self.link.as_dict(),
                    counters=self.counters, drops=dict(up=self.up.dropped, down=self.down.dropped),
                    tty=self.args.tty, slave=self.pty.slave_path, tun=self.args.ifname if self.tun else None)


def faults_from_args(a: argparse.Namespace) -> Faults:
    return Faults(silent=a.silent, result=a.result, busy=a.busy, garbage=a.garbage,
                  connect_delay=a.connect_delay, speed=a.speed, drop_after_s=a.drop_after_s,
                  drop_after_bytes=a.drop_after_bytes, drop_mode=a.drop_mode)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="modemsim.py", description="Hayes modem emulator on a pty")
    p.add_argument("--tty", required=True, help="stable symlink the DTE opens")
    p.add_argument("--control", help="unix socket for JSON-line control commands")
    p.add_argument("--netns", help="ISP network namespace for the TUN end of the line")
    p.add_argument("--ifname", default="isp0")
    p.add_argument("--isp-addr", default="10.64.0.1")
    p.add_argument("--peer-addr", default="10.64.0.2")
    p.add_argument("--down-bps", type=float, default=56000)
    p.add_argument("--up-bps", type=float, default=33600)
    p.add_argument("--delay-ms", type=float, default=50.0)
    p.add_argument("--buffer", type=int, default=8192)
    p.add_argument("--busy", type=int, default=0)
    p.add_argument("--result", choices=["BUSY", "NO CARRIER", "NO DIALTONE", "NO ANSWER"])
    p.add_argument("--silent", action="store_true")
    p.add_argument("--garbage", type=int, default=0)
    p.add_argument("--connect-delay", type=float, default=0.3)
    p.add_argument("--speed", type=int, default=56000)
    p.add_argument("--drop-after-s", type=float)
    p.add_argument("--drop-after-bytes", type=int)
    p.add_argument("--drop-mode", choices=DROP_MODES, default="soft")
    return p.parse_args(argv)


async def amain(args: argparse.Namespace) -> int:
    driver = ModemDriver(args)
    if args.netns:
        driver.open_tun()
    server = await driver.serve_control(args.control) if args.control else None
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        driver.loop.add_signal_handler(sig, stop.set)
    watcher = driver.loop.create_task(driver.watch())
    driver.log("ready", tty=args.tty, slave=driver.pty.slave_path, netns=args.netns)
    await stop.wait()
    watcher.cancel()
    if server:
        server.close()
    for path in (args.tty, args.control):
        if path and os.path.lexists(path):
            os.unlink(path)
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.netns and not netns.enter_or_complain(args.netns, "modemsim"):  # before any thread exists
        return 1
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
