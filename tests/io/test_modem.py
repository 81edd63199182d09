"""Modem driver: real pyserial (+ pyserial-asyncio-fast) on a real pty.

The other side of the pty is a small scripted responder (the edge of the unit
test): echo, result codes, silence, garbage, +++ escape, and DTR drop seen as
B0 through termios.tcgetattr(master).  hardware-sim's modemsim replaces it in
system tests."""

from __future__ import annotations

import asyncio
import logging
import os
import termios
import tty

import pytest

from link.errors import DialFailed, LinkLost
from link.modem import Call, Modem

pytestmark = pytest.mark.timeout(30)


class Responder:
    """A scripted Hayes modem on the pty master."""

    def __init__(self, master: int, *, dial_results=(), echo=True, honor_dtr=True, prefix=b""):
        self.master = master
        self.dial_results = list(dial_results)   # bytes to answer, None = silence, "close" = hard loss
        self.echo = echo
        self.honor_dtr = honor_dtr
        self.prefix = prefix                     # garbage before every reply
        self.commands: list[str] = []
        self.dtr_drops = 0
        self.data_mode = False
        self._buf = b""
        loop = asyncio.get_running_loop()
        loop.add_reader(master, self._readable)
        self._watch = loop.create_task(self._watch_b0())

    def stop(self):
        asyncio.get_running_loop().remove_reader(self.master)
        self._watch.cancel()

    def _send(self, data: bytes):
        os.write(self.master, data)

    async def _watch_b0(self):
        was_b0 = False
        while True:
            is_b0 = termios.tcgetattr(self.master)[5] == termios.B0
            if is_b0 and not was_b0:
                self.dtr_drops += 1
                if self.honor_dtr:
                    self.data_mode = False
            was_b0 = is_b0
            await asyncio.sleep(0.005)

    def _readable(self):
        try:
            data = os.read(self.master, 1024)
        except OSError:
            return
        if self.data_mode:
            if data == b"+++":
                self.data_mode = False
                asyncio.get_running_loop().call_later(0.05, self._send, b"\r\nOK\r\n")
            return
        self._buf += data
        while b"\r" in self._buf:
            line, self._buf = self._buf.split(b"\r", 1)
            if line.strip():
                self._command(line.decode().strip())

    def _command(self, cmd: str):
        self.commands.append(cmd)
        if self.echo:
            self._send(cmd.encode() + b"\r")
        if "E0" in cmd.upper():
            self.echo = False
        if cmd.upper().startswith("ATD"):
            reply = self.dial_results.pop(0) if self.dial_results else b"\r\nCONNECT 56000\r\n"
            if reply == "close":
                self.stop()
                os.close(self.master)
                return
            if reply is None:
                return                             # silence
            if b"CONNECT" in reply:
                self.data_mode = True
            self._send(self.prefix + reply)
        else:
            self._send(self.prefix + b"\r\nOK\r\n")


@pytest.fixture
async def pty_pair():
    master, slave = os.openpty()
    tty.setraw(master)
    path = os.ttyname(slave)
    yield master, path
    for fd in (slave, master):
        try:
            os.close(fd)
        except OSError:
            pass


def make_modem(path, **kw):
    sleeps: list[float] = []

    async def record(s):
        sleeps.append(s)
    kw.setdefault("command_timeout", 1.0)
    kw.setdefault("dtr_drop_s", 0.1)
    kw.setdefault("guard_s", 0.1)
    m = Modem(path, speed=57600, numbers=("5551234",), sleep=record, **kw)
    return m, sleeps


async def test_init_strings_and_health_check_then_connect(pty_pair):
    master, path = pty_pair
    r = Responder(master)
    m, _ = make_modem(path, init=("ATZ", "ATE0V1Q0"))
    await m.open()
    call = await m.dial()
    assert call == Call("5551234", 56000, path, 1)
    assert r.commands == ["ATZ", "ATE0V1Q0", "AT", "ATDT5551234"]
    assert m.online
    r.stop()
    await m.close()


async def test_busy_then_second_number_connects(pty_pair):
    master, path = pty_pair
    r = Responder(master, dial_results=[b"\r\nBUSY\r\n", b"\r\nCONNECT 33600/ARQ\r\n"])
    m, sleeps = make_modem(path)
    await m.open()
    call = await m.dial(("111", "222"))
    assert (call.number, call.speed, call.attempt) == ("222", 33600, 1)
    assert [c for c in r.commands if c.startswith("ATD")] == ["ATDT111", "ATDT222"]
    assert sleeps == []
    r.stop()
    await m.close()


@pytest.mark.parametrize("wire,result", [
    (b"\r\nBUSY\r\n", "BUSY"), (b"\r\nNO CARRIER\r\n", "NO CARRIER"),
    (b"\r\nNO ANSWER\r\n", "NO ANSWER"), (b"\r\nERROR\r\n", "ERROR"),
])
async def test_failures_retry_with_backoff_then_raise(pty_pair, wire, result):
    master, path = pty_pair
    r = Responder(master, dial_results=[wire] * 6)
    m, sleeps = make_modem(path, retries=3, backoff_s=5.0)
    await m.open()
    with pytest.raises(DialFailed) as info:
        await m.dial(("111", "222"))
    assert info.value.result == result and info.value.number == "222"
    assert [c for c in r.commands if c.startswith("ATD")] == ["ATDT111", "ATDT222"] * 3
    assert sleeps == [5.0, 10.0]
    r.stop()
    await m.close()


async def test_no_dialtone_skips_other_numbers(pty_pair):
    master, path = pty_pair
    r = Responder(master, dial_results=[b"\r\nNO DIALTONE\r\n"] * 2)
    m, sleeps = make_modem(path, retries=2)
    await m.open()
    with pytest.raises(DialFailed) as info:
        await m.dial(("111", "222"))
    assert info.value.result == "NO DIALTONE"
    assert [c for c in r.commands if c.startswith("ATD")] == ["ATDT111", "ATDT111"]
    r.stop()
    await m.close()


async def test_silent_modem_times_out_and_is_hung_up_by_dtr(pty_pair):
    master, path = pty_pair
    r = Responder(master, dial_results=[None])
    m, _ = make_modem(path, retries=1, dial_timeout=0.3)
    await m.open()
    with pytest.raises(DialFailed) as info:
        await m.dial()
    assert info.value.result == "TIMEOUT"
    assert r.dtr_drops == 1
    assert r.commands[-1] == "AT"            # health check after the DTR drop
    r.stop()
    await m.close()


async def test_health_check_fails_on_silence(pty_pair):
    master, path = pty_pair
    m, _ = make_modem(path, init=(), command_timeout=0.2)
    await m.open()                           # nobody answers on the master
    with pytest.raises(DialFailed) as info:
        await m.check()
    assert info.value.result == "TIMEOUT"
    await m.close()


async def test_garbage_is_tolerated_and_logged(pty_pair, caplog):
    master, path = pty_pair
    r = Responder(master, prefix=b"\xff\xfe\x00\r\n")
    m, _ = make_modem(path)
    with caplog.at_level(logging.WARNING, logger="link"):
        await m.open()
        await m.check()
    assert any("garbage=b'\\xff\\xfe\\x00'" in rec.getMessage() for rec in caplog.records), caplog.text
    r.stop()
    await m.close()


async def test_hangup_by_dtr_drop(pty_pair):
    master, path = pty_pair
    r = Responder(master)
    m, _ = make_modem(path)
    await m.open()
    await m.dial()
    assert r.data_mode
    assert await m.hangup() == "dtr"
    assert r.dtr_drops == 1 and not r.data_mode
    r.stop()
    await m.close()


async def test_hangup_falls_back_to_escape_and_ath0(pty_pair):
    master, path = pty_pair
    r = Responder(master, honor_dtr=False)
    m, _ = make_modem(path, command_timeout=0.3)
    await m.open()
    await m.dial()
    assert await m.hangup() == "ath"
    assert r.dtr_drops == 1 and r.commands[-1] == "ATH0"
    r.stop()
    await m.close()


async def test_hard_carrier_loss_is_link_lost(pty_pair):
    master, path = pty_pair
    Responder(master, dial_results=["close"])
    m, _ = make_modem(path)
    await m.open()
    with pytest.raises(LinkLost):
        await m.dial()
    assert not m.is_open


async def test_hand_over_keeps_dtr_and_returns_path(pty_pair):
    master, path = pty_pair
    r = Responder(master)
    m, _ = make_modem(path)
    await m.open()
    await m.dial()
    r.stop()
    assert await m.hand_over() == path
    assert not m.is_open
    assert termios.tcgetattr(master)[2] & termios.HUPCL == 0
    assert r.dtr_drops == 0


async def test_open_missing_device_is_link_lost(tmp_path):
    m = Modem(str(tmp_path / "ttyNONE"))
    with pytest.raises(LinkLost):
        await m.open()
