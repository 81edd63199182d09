"""modem.py - the modem on its serial line (DRIVER around at.py).

NAME
    modem - open, initialise, health-check, dial, hang up, hand the tty to pppd

SYNOPSIS
    modem = Modem("/dev/ttyS0", init=("ATZ", "ATE0V1Q0"), numbers=("5551234",))
    await modem.open()
    call = await modem.dial()           # Call(number, speed, device); raises DialFailed
    device = await modem.hand_over()    # the tty is closed, DTR left up: pppd opens it
    ...
    await modem.hangup()                # DTR drop (B0), then +++ / ATH0 if still online

DESCRIPTION
    Owns the tty while in command mode.  The serial layer (pyserial with
    pyserial-asyncio-fast) is hidden here: nothing else imports it.  Every
    Hayes result maps to a link error: BUSY, NO CARRIER, NO DIALTONE,
    NO ANSWER and ERROR to DialFailed(result), silence to
    DialFailed("TIMEOUT").  Before dialing, `AT` must answer `OK` (health
    check).  dial() tries each number in turn and repeats the round up to
    `retries` times with doubling backoff; NO DIALTONE ends a round at once
    (every number needs the same line).  Garbage from the modem is logged
    (logger "link", repr-quoted) and otherwise ignored.

    Hang-up drops DTR by setting the line speed to 0 (B0, POSIX's "hang up";
    on a pty, which has no modem-control lines, it is the only DTR signal),
    waits `dtr_drop_s`, restores the speed, and checks `AT` -> `OK`; a modem
    that ignores DTR (AT&D0) gets the +++ escape and ATH0.

    hand_over() clears HUPCL before closing so the close does not drop DTR
    and hang up the call pppd is about to use.

NEVER
    Runs pppd, decides whether to dial (policy) or retries forever.

FAILURES (Raises:)
    DialFailed(result)  a call did not connect (after all retries), or a
                        command answered ERROR / nothing (health check, init)
    LinkLost            the tty reported EOF/EIO (hard carrier loss, unplugged)
    ValueError          a number or init string we refuse to send
"""

from __future__ import annotations

import asyncio
import logging
import termios
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import serial
import serial_asyncio_fast

from link import linklog
from link.at import AtCore, Code, Garbage, Info, Mode, Result, Send, Sleep
from link.errors import DialFailed, LinkError, LinkLost

log = logging.getLogger("link")

FAILURES = {Code.BUSY: "BUSY", Code.NO_CARRIER: "NO CARRIER", Code.NO_DIALTONE: "NO DIALTONE",
            Code.NO_ANSWER: "NO ANSWER", Code.ERROR: "ERROR"}


@dataclass(frozen=True)
class Call:
    number: str
    speed: int | None
    device: str
    attempt: int


class Modem:
    def __init__(self, device: str, *, speed: int = 115200, init: tuple[str, ...] = ("ATZ", "ATE0V1Q0"),
                 numbers: tuple[str, ...] = (), retries: int = 3, dial_timeout: float = 60.0,
                 command_timeout: float = 3.0, backoff_s: float = 5.0, guard_s: float = 1.0,
                 dtr_drop_s: float = 0.5, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        """`sleep` waits between dial rounds (tests inject a recorder)."""
        self.device = device
        self.speed = speed
        self.init = init
        self.numbers = numbers
        self.retries = max(retries, 1)
        self.dial_timeout = dial_timeout
        self.command_timeout = command_timeout
        self.backoff_s = backoff_s
        self.guard_s = guard_s
        self.dtr_drop_s = dtr_drop_s
        self._sleep = sleep
        self._core = AtCore()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    # --- life cycle ------------------------------------------------------------

    async def open(self) -> None:
        """Open the tty and run the init strings (each must answer OK)."""
        await self._connect()
        self._core = AtCore()
        for cmd in self.init:
            await self.command(cmd)

    async def _connect(self) -> None:
        try:
            self._reader, self._writer = await serial_asyncio_fast.open_serial_connection(
                url=self.device, baudrate=self.speed)
        except (serial.SerialException, OSError) as e:
            raise LinkLost(f"cannot open {self.device}: {e}") from e

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._reader = self._writer = None

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    def _serial(self) -> serial.Serial:
        assert self._writer is not None, "modem not open"
        ser: serial.Serial = getattr(self._writer.transport, "serial")   # serial_asyncio_fast's SerialTransport
        return ser

    # --- command mode ------------------------------------------------------------

    async def command(self, cmd: str, timeout: float | None = None) -> Result:
        """Send one command and wait for its final result; OK (or CONNECT) only.

        Raises DialFailed("ERROR"/"TIMEOUT"/..., placed=False: the modem's own
        trouble, no call reached the network) for any other result or silence."""
        self._write(self._core.command(cmd))
        try:
            result = await self._result(timeout or self.command_timeout, cmd)
        except DialFailed as e:
            raise DialFailed(e.result, detail=e.detail, placed=False) from e
        if result.code is not Code.OK and not result.connected:
            raise DialFailed(FAILURES.get(result.code, "ERROR"), detail=f"{cmd} answered {result.text}",
                             placed=False)
        return result

    async def check(self) -> None:
        """Health check: `AT` must answer `OK`."""
        await self.command("AT")

    async def _result(self, timeout: float, what: str) -> Result:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self._reader is None:
                raise LinkLost(f"{self.device}: not open")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise DialFailed("TIMEOUT", detail=f"no answer to {what} within {timeout:g}s")
            try:
                data = await asyncio.wait_for(self._reader.read(4096), remaining)
            except asyncio.TimeoutError:
                continue
            except (serial.SerialException, OSError) as e:
                await self._lost()
                raise LinkLost(f"{self.device}: {e}") from e
            if not data:
                await self._lost()
                raise LinkLost(f"{self.device}: end of file")
            for event in self._core.feed(data):
                if isinstance(event, Garbage):
                    log.warning(linklog.modem_garbage(self.device, event.data))
                elif isinstance(event, Info):
                    log.info(linklog.modem_info(self.device, event.line))
                elif isinstance(event, Result) and event.code is not Code.RING:
                    return event

    def _write(self, data: bytes) -> None:
        if self._writer is None:
            raise LinkLost(f"{self.device}: not open")
        self._writer.write(data)

    async def _lost(self) -> None:
        self._core.hung_up()
        if self._writer is not None:
            self._writer.transport.abort()
            self._reader = self._writer = None

    # --- dialing -------------------------------------------------------------------

    async def dial(self, numbers: tuple[str, ...] | None = None) -> Call:
        """Dial until one number connects; Raises DialFailed (the last failure)."""
        numbers = numbers or self.numbers
        if not numbers:
            raise ValueError("no numbers to dial")
        last: DialFailed | None = None
        for attempt in range(1, self.retries + 1):
            if attempt > 1:
                await self._sleep(self.backoff_s * 2 ** (attempt - 2))
            for number in numbers:
                try:
                    return await self._dial_once(number, attempt)
                except DialFailed as e:
                    last = e
                    log.info(linklog.dial_attempt_failed(number, attempt, e.result))
                    if e.result == "NO DIALTONE":
                        break
        assert last is not None
        raise last

    async def _dial_once(self, number: str, attempt: int) -> Call:
        await self.check()
        self._write(self._core.dial(number))
        try:
            result = await self._result(self.dial_timeout, f"dial {number}")
        except DialFailed:
            await self.hangup()                 # the modem may still be dialing
            raise
        if not result.connected:
            raise DialFailed(FAILURES.get(result.code, "ERROR"), number=number)
        log.info(linklog.connected(number, result.speed, attempt))
        return Call(number, result.speed, self.device, attempt)

    async def hand_over(self) -> str:
        """Close the tty without dropping DTR; returns the device path for pppd."""
        ser = self._serial()
        attrs = termios.tcgetattr(ser.fd)
        attrs[2] &= ~termios.HUPCL
        termios.tcsetattr(ser.fd, termios.TCSANOW, attrs)
        await self.close()
        return self.device

    # --- hanging up -------------------------------------------------------------------

    async def hangup(self) -> str:
        """Hang up; returns how: "dtr" or "ath".  Opens the tty if needed."""
        if not self.is_open:
            await self._connect()
        ser = self._serial()
        ser.baudrate = 0                        # B0: drop DTR
        await asyncio.sleep(self.dtr_drop_s)
        ser.baudrate = self.speed
        self._core.hung_up()
        try:
            await self.check()
            return "dtr"
        except LinkLost:
            raise
        except LinkError:
            log.warning(linklog.dtr_ignored(self.device))
        for action in self._core.escape(self.guard_s):
            if isinstance(action, Sleep):
                await asyncio.sleep(action.seconds)
            elif isinstance(action, Send):
                self._write(action.data)
        await self._result(self.command_timeout, "+++")
        await self.command("ATH0")
        return "ath"

    @property
    def online(self) -> bool:
        return self._core.mode is Mode.ONLINE
