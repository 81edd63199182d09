"""at.py - the Hayes AT dialogue, sans-IO (CORE).

NAME
    at - turn bytes from a modem into ModemEvents, and commands into bytes

SYNOPSIS
    core = AtCore()
    tty.write(core.command("ATZ"))
    for event in core.feed(tty.read()): ...        # Echo, Info, Result, Garbage, Data
    for action in core.escape(guard=1.0): ...      # Sleep, Send, Sleep: the +++ escape

DESCRIPTION
    Owns the parsing of the modem's command-mode output: result codes in
    verbal (ATV1, ``\\r\\nOK\\r\\n``) and numeric (ATV0, ``0\\r``) form, the echo
    of our own command lines (ATE1), information lines (ATI) and CONNECT
    speeds (``CONNECT 56000/ARQ``; numeric 1, 5, 10..19 per the usual ATX
    table).  After a CONNECT the core is ONLINE and every further byte is
    Data: the line belongs to pppd then.  ``escape()`` returns the +++ escape
    with guard times as actions; the driver performs them.

    It never reads or writes a tty, sleeps or logs: the driver (modem.py) does.

INVARIANTS
    Chunking invariance: the events do not depend on how the input is split.
    Bytes never make feed() raise: undecodable or overlong input becomes a
    Garbage event (at most MAX_LINE bytes each).  Numeric result codes are
    recognised only while numeric mode is known to be on (a command with V0),
    so an information line such as "56000" is never taken for a result.

FAILURES
    command() raises ValueError for a command we refuse to send (not AT...,
    control characters).  feed() raises RemoteProtocolError only for input no
    state allows: nothing reaches that today except a CONNECT for which no
    dial or answer was outstanding while the core was told to be strict.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from link.errors import RemoteProtocolError

#: longest line kept before it is reported as Garbage
MAX_LINE = 256


class Code(enum.Enum):
    """Hayes result codes (the value is the numeric form, ATV0)."""

    OK = 0
    CONNECT = 1
    RING = 2
    NO_CARRIER = 3
    ERROR = 4
    NO_DIALTONE = 6
    BUSY = 7
    NO_ANSWER = 8

    @property
    def verbal(self) -> str:
        return self.name.replace("_", " ")


VERBAL = {c.verbal: c for c in Code} | {"NO DIAL TONE": Code.NO_DIALTONE}
#: numeric CONNECT codes with a speed (Hayes/USR ATX table)
NUMERIC_CONNECT = {5: 1200, 9: 600, 10: 2400, 11: 4800, 12: 9600, 13: 7200, 14: 12000,
                   15: 14400, 16: 19200, 17: 38400, 18: 57600, 19: 115200}
_CONNECT_RE = re.compile(r"CONNECT(?:\s+(\d+))?(?:\s*[/ ].*)?$")


class Mode(enum.Enum):
    COMMAND = "command"      #: the modem interprets what we send
    ONLINE = "online"        #: carrier up; bytes are data (pppd's)


# --- events (facts) ---------------------------------------------------------

@dataclass(frozen=True)
class Result:
    """A final result code.  ``speed`` is set for CONNECT when known."""

    code: Code
    text: str
    speed: int | None = None
    command: str | None = None       #: the command it answers, if one was outstanding

    @property
    def connected(self) -> bool:
        return self.code is Code.CONNECT


@dataclass(frozen=True)
class Echo:
    """The modem echoing a command line (ATE1)."""

    line: str


@dataclass(frozen=True)
class Info:
    """Any other printable line (ATI output, S-register values, banners)."""

    line: str


@dataclass(frozen=True)
class Garbage:
    """Bytes that are not a printable line (line noise, a wrong baud rate)."""

    data: bytes


@dataclass(frozen=True)
class Data:
    """Bytes received while ONLINE."""

    data: bytes


ModemEvent = Result | Echo | Info | Garbage | Data


# --- actions for the driver (the +++ escape) ---------------------------------

@dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclass(frozen=True)
class Send:
    data: bytes


# --- the core ----------------------------------------------------------------

_COMMAND_RE = re.compile(r"^(AT|A/)[\x20-\x7e]*$", re.IGNORECASE)


class AtCore:
    """One modem dialogue.  Not thread-safe; feed it in order."""

    def __init__(self, *, numeric: bool = False, strict: bool = False) -> None:
        self.mode = Mode.COMMAND
        self.numeric = numeric          #: ATV0 in effect
        self.strict = strict            #: unsolicited CONNECT is an error
        self.pending: str | None = None  #: command awaiting its result code
        self._buf = b""
        self._eat_lf = False

    # commands ---------------------------------------------------------------

    def command(self, cmd: str) -> bytes:
        """Bytes for one command line; remembers it to match echo and result."""
        if not _COMMAND_RE.match(cmd):
            raise ValueError(f"refusing to send {cmd!r}: not an AT command of printable ASCII")
        upper = cmd.upper()
        if not upper.startswith("ATD"):          # a number may not set V
            for value in re.findall(r"(?<!&)V([01])", upper[2:]):
                self.numeric = value == "0"
        self.pending = cmd
        return cmd.encode("ascii") + b"\r"

    def dial(self, number: str, *, pulse: bool = False) -> bytes:
        """ATDT/ATDP with a number of dial characters only (digits, * # , W @ ! P T)."""
        if not number or not re.fullmatch(r"[0-9*#,W@!PTwpt ]+", number):
            raise ValueError(f"refusing to dial {number!r}: only digits and * # , W @ ! P T are allowed")
        return self.command(("ATDP" if pulse else "ATDT") + number)

    def escape(self, guard: float = 1.0) -> list[Sleep | Send]:
        """The +++ escape to online command mode: silence, +++, silence."""
        self.pending = "+++"
        self.mode = Mode.COMMAND
        return [Sleep(guard), Send(b"+++"), Sleep(guard)]

    def hung_up(self) -> None:
        """The driver dropped DTR / closed the line: back to command mode."""
        self.mode = Mode.COMMAND
        self.pending = None
        self._buf = b""

    # input ------------------------------------------------------------------

    def feed(self, data: bytes) -> list[ModemEvent]:
        """Events for the bytes received; partial lines wait for more input."""
        if self.mode is Mode.ONLINE:
            if self._eat_lf and data:
                # the LF of the CONNECT line's CR LF, however the input was split
                self._eat_lf = False
                data = data[1:] if data[:1] == b"\n" else data
            return [Data(data)] if data else []
        self._buf += data
        events: list[ModemEvent] = []
        while self.mode is Mode.COMMAND and self._buf:
            line, rest = self._next_line(self._buf)
            if line is None:
                break
            cr = self._buf[len(line):len(line) + 1] == b"\r"
            self._buf = rest
            event = self._classify(line)
            if event is not None:
                events.append(event)
            if self.mode is Mode.ONLINE:
                self._eat_lf = cr          # the LF of CONNECT's CR LF is not data
        if self.mode is Mode.ONLINE and self._buf:
            rest, self._buf = self._buf, b""
            events += self.feed(rest)
        return events

    @staticmethod
    def _next_line(buf: bytes) -> tuple[bytes | None, bytes]:
        # Only look within MAX_LINE+1 bytes so that an overlong line is cut at
        # the same place however the input was chunked.
        window = buf[:MAX_LINE + 1]
        ends = [i for i in (window.find(b"\r"), window.find(b"\n")) if i >= 0]
        if ends:
            i = min(ends)
            return buf[:i], buf[i + 1:]
        if len(buf) >= MAX_LINE:
            return buf[:MAX_LINE], buf[MAX_LINE:]
        return None, buf

    def _classify(self, raw: bytes) -> ModemEvent | None:
        if not raw.strip(b" \t"):
            return None
        if len(raw) >= MAX_LINE or any(b < 0x20 and b != 0x09 or b > 0x7e for b in raw):
            return Garbage(raw)
        line = raw.decode("ascii").strip()
        if line.upper().startswith(("AT", "A/")) or line == "+++":
            return Echo(line)
        result = self._result(line)
        if result is None:
            return Info(line)
        return self._settle(result)

    def _result(self, line: str) -> Result | None:
        upper = line.upper()
        if upper in VERBAL:
            return Result(VERBAL[upper], line)
        m = _CONNECT_RE.match(upper)
        if m:
            return Result(Code.CONNECT, line, int(m.group(1)) if m.group(1) else None)
        if self.numeric and line.isdigit():
            n = int(line)
            if n in NUMERIC_CONNECT:
                return Result(Code.CONNECT, line, NUMERIC_CONNECT[n])
            if n in {c.value for c in Code}:
                return Result(Code(n), line)
        return None

    def _settle(self, result: Result) -> Result:
        if result.code is Code.RING:
            return result                       # unsolicited; answers nothing
        command, self.pending = self.pending, None
        if result.code is Code.CONNECT:
            if command is None and self.strict:
                raise RemoteProtocolError(f"CONNECT without a dial or answer outstanding: {result.text!r}")
            self.mode = Mode.ONLINE
        return Result(result.code, result.text, result.speed, command)
