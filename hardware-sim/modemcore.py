"""modemcore.py - sans-IO Hayes modem: bytes and time in, events out.

SYNOPSIS
    core = ModemCore(Faults(busy=2), speed=56000)
    events = core.receive(b"ATDT5551234\\r", now)   # [Output(b"ATDT5551234\\r"), DialStarted("5551234")]
    events = core.timer(now + 0.5)                   # [Output(b"\\r\\nBUSY\\r\\n"), DialFailed("BUSY")]
    core.deadline()                                  # when to call timer() next, or None

DESCRIPTION
    ModemCore owns the Hayes dialogue and nothing else: no pty, no clock,
    no sockets.  The driver (modemsim.py) feeds it DTE bytes with the
    current monotonic time, calls timer() at deadline(), tells it about
    DTR drops, DTE close and carrier loss, and performs the events it
    returns:

      Output(data)          bytes for the DTE (echo, result codes, garbage)
      DialStarted(number)   the modem went off-hook and dials
      Connected(number, speed)   carrier: data mode begins (also after ATO)
      DialFailed(result)    BUSY / NO CARRIER / NO DIALTONE / NO ANSWER
      DataFromDte(data)     data-mode bytes for the line (after +++ filtering)
      Escaped()             +++ with guard time: online command mode
      HungUp(cause)         carrier gone: ath, dtr-drop, dte-closed, carrier-lost, ...
      HardHangup(cause)     the driver must close the pty master (hard carrier loss)

    Commands: AT, A/ (repeat), Z, &F, En, Vn, Qn, Xn, Ln, Mn, In, Hn, On, A,
    Dx (T/P, digits, , W @ ! ; are accepted), Sn=v, Sn?, &Cn, &Dn, &Kn, &Wn,
    &V.  Several commands may share one line (ATE0V1Q0&C1&D2S7=60).
    Result codes follow V (verbal "\\r\\nOK\\r\\n", numeric "0\\r") and Q
    (Q1: none), and X for what dial failures are reported as:
      X0: CONNECT without speed; BUSY and NO DIALTONE reported as NO CARRIER
      X1: CONNECT <speed>; BUSY and NO DIALTONE as NO CARRIER
      X2: + NO DIALTONE     X3: + BUSY (NO DIALTONE as NO CARRIER)     X4: all
    Numeric codes: OK 0, CONNECT 1, RING 2, NO CARRIER 3, ERROR 4,
    NO DIALTONE 6, BUSY 7, NO ANSWER 8; CONNECT <speed> is 1 (extended
    speed codes are vendor specific and not emulated).

    S registers: S2 escape char (43 '+'), S3 CR, S4 LF, S5 BS, S7 seconds
    to wait for carrier (a connect slower than S7 ends in NO CARRIER),
    S12 escape guard time in 1/50 s (default 50 = 1 s).  &D0 ignores DTR,
    &D1 goes to online command mode on DTR drop, &D2 (default) hangs up,
    &D3 hangs up and resets.  Closing the tty drops DTR as well: it hangs up
    unless &D0.

    Faults (class Faults) are data the driver may replace at any time:
    silent (no reply at all, no echo), result (every dial fails with it),
    busy (BUSY that many times, then answer), garbage (bytes of line noise
    before each result code), connect_delay (slow connect), speed,
    drop_after_s / drop_after_bytes with drop_mode soft|hard|cut.

INVARIANTS
    Only DATA state passes bytes to the line; result codes are never sent
    in DATA state except NO CARRIER on carrier loss.  Feeding bytes whole,
    or byte by byte with the same `now`, gives the same events.
"""
from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field, replace

VERBAL_RESULTS = {
    "OK": 0, "CONNECT": 1, "RING": 2, "NO CARRIER": 3, "ERROR": 4,
    "NO DIALTONE": 6, "BUSY": 7, "NO ANSWER": 8,
}
DIAL_FAILURES = ("BUSY", "NO CARRIER", "NO DIALTONE", "NO ANSWER")
DROP_MODES = ("soft", "hard", "cut")
DEFAULT_S = {0: 0, 1: 0, 2: 43, 3: 13, 4: 10, 5: 8, 6: 2, 7: 50, 8: 2, 10: 14, 12: 50}
DIAL_CHARS = set("0123456789*#ABCDabcd,W!@;wPTpt+ ")


class State(enum.Enum):
    COMMAND = "command"                 #: on-hook, AT commands
    DIALING = "dialing"                 #: off-hook, waiting for the dial outcome
    DATA = "data"                       #: carrier, bytes go to the line
    ONLINE_COMMAND = "online-command"   #: carrier kept, AT commands after +++


@dataclass(frozen=True)
class Output:
    data: bytes


@dataclass(frozen=True)
class DialStarted:
    number: str


@dataclass(frozen=True)
class Connected:
    number: str
    speed: int


@dataclass(frozen=True)
class DialFailed:
    result: str


@dataclass(frozen=True)
class DataFromDte:
    data: bytes


@dataclass(frozen=True)
class Escaped:
    pass


@dataclass(frozen=True)
class HungUp:
    cause: str


@dataclass(frozen=True)
class HardHangup:
    cause: str
    warned: bool = True     # NO CARRIER was written first: give the DTE time to read it


@dataclass(frozen=True)
class Faults:
    silent: bool = False
    result: str | None = None           # one of DIAL_FAILURES: every dial fails so
    busy: int = 0                       # BUSY this many times, then answer
    garbage: int = 0                    # noise bytes before each result code
    connect_delay: float = 0.3          # seconds from ATD to the dial outcome
    speed: int = 56000                  # the number in CONNECT <speed>
    drop_after_s: float | None = None   # carrier loss this long after CONNECT
    drop_after_bytes: int | None = None  # ... or after this many line bytes
    drop_mode: str = "soft"             # soft: NO CARRIER; hard: NO CARRIER + close; cut: close

    def __post_init__(self):
        if self.result is not None and self.result not in DIAL_FAILURES:
            raise ValueError(f"result must be one of {DIAL_FAILURES}, not {self.result!r}")
        if self.drop_mode not in DROP_MODES:
            raise ValueError(f"drop_mode must be one of {DROP_MODES}, not {self.drop_mode!r}")


@dataclass
class _Settings:
    echo: bool = True
    verbal: bool = True
    quiet: bool = False
    x: int = 4
    dtr_mode: int = 2
    s: dict = field(default_factory=lambda: dict(DEFAULT_S))


class ModemCore:
    """The Hayes modem's brain; see the module docstring."""

    def __init__(self, faults: Faults | None = None, seed: int = 0):
        self.faults = faults or Faults()
        self.busy_left = self.faults.busy
        self.state = State.COMMAND
        self.settings = _Settings()
        self.number = ""
        self.last_number = ""
        self._line = bytearray()
        self._last_cmd = b""
        self._dial_at: float | None = None
        self._connected_at: float | None = None
        self._line_bytes = 0
        self._plus = 0
        self._plus_at = 0.0
        self._last_data = 0.0
        self._rng = random.Random(seed)
        self.dials = 0

    # -- public inputs -------------------------------------------------------

    def set_faults(self, faults: Faults, rearm_busy: bool = True) -> None:
        """New faults; the BUSY count starts again unless rearm_busy is False."""
        self.faults = faults
        if rearm_busy:
            self.busy_left = faults.busy

    def receive(self, data: bytes, now: float) -> list:
        """Bytes from the DTE at time `now`."""
        events: list = []
        for b in data:
            if self.state is State.DATA:
                events += self._data_byte(b, now)
            elif self.state is State.DIALING:
                events += self._abort_dial()
            else:
                events += self._command_byte(b, now)
        return events

    def timer(self, now: float) -> list:
        """Call at deadline(): dial outcomes, escape guard, timed carrier loss."""
        events: list = []
        if self.state is State.DIALING and self._dial_at is not None and now >= self._dial_at:
            events += self._dial_outcome(now)
        if self.state is State.DATA:
            events += self._escape_timer(now)
        if self._connected_at is not None and self.faults.drop_after_s is not None:
            if now >= self._connected_at + self.faults.drop_after_s:
                events += self.carrier_lost("drop-after-s", self.faults.drop_mode)
        return events

    def deadline(self) -> float | None:
        times = []
        if self.state is State.DIALING and self._dial_at is not None:
            times.append(self._dial_at)
        if self.state is State.DATA and self._plus:
            times.append(self._plus_at + self._guard())
        if self._connected_at is not None and self.faults.drop_after_s is not None:
            times.append(self._connected_at + self.faults.drop_after_s)
        return min(times) if times else None

    def line_bytes(self, n: int, now: float) -> list:
        """`n` bytes crossed the line (either direction); may trigger drop_after_bytes."""
        if self._connected_at is None:
            return []
        self._line_bytes += n
        limit = self.faults.drop_after_bytes
        if limit is not None and self._line_bytes >= limit:
            return self.carrier_lost("drop-after-bytes", self.faults.drop_mode)
        return []

    def dtr_dropped(self, now: float) -> list:
        """The DTE set B0 (the pty's stand-in for dropping DTR)."""
        mode = self.settings.dtr_mode
        if mode == 0 or self.state is State.COMMAND:
            return []
        if mode == 1:
            if self.state is State.DATA:
                self.state = State.ONLINE_COMMAND
                return [Escaped()] + self._result("OK")
            return []
        events = self._hangup("dtr-drop")
        if mode == 3:
            self._reset()
        return events

    def dte_closed(self, now: float) -> list:
        """Nobody holds the tty any more: DTR drops (HUPCL).  &D0 keeps the call
        (a dialer may close the tty and let pppd open it); any other &D hangs up."""
        self._line.clear()
        if self.state is State.COMMAND or self.settings.dtr_mode == 0:
            return []
        return self._hangup("dte-closed")

    def carrier_lost(self, cause: str, mode: str = "soft") -> list:
        """The far end went away (or a fault says so).  soft: NO CARRIER, back
        to command mode; hard: the same, then the driver closes the pty; cut:
        the pty is closed with no word (power or cable gone)."""
        if self._connected_at is None and self.state is not State.DIALING:
            return []
        events = self._hangup(cause)
        if mode == "cut":
            return events + [HardHangup(cause, warned=False)]
        events.append(Output(b"\xc0"))  # close any SLIP frame: NO CARRIER starts after END
        events += self._result("NO CARRIER")
        if mode == "hard":
            events.append(HardHangup(cause))
        return events

    # -- command mode --------------------------------------------------------

    def _command_byte(self, b: int, now: float) -> list:
        s = self.settings.s
        events: list = []
        if self.settings.echo and not self.faults.silent:
            events.append(Output(bytes([b])))
        if b == s[5] or b == 0x7F:
            del self._line[-1:]
            return events
        if b == s[3]:
            line = bytes(self._line)
            self._line.clear()
            return events + self._command_line(line, now)
        if b == s[4] and not self._line:
            return events
        self._line.append(b)
        if self._line[-2:].upper() == b"A/":
            self._line.clear()
            return events + self._command_line(self._last_cmd, now)
        if len(self._line) > 255:
            self._line.clear()
            return events + self._result("ERROR")
        return events

    def _command_line(self, line: bytes, now: float) -> list:
        text = line.decode("latin-1").strip()
        if not text:
            return []
        if text[:2].upper() != "AT":
            return []  # modems ignore what is not a command
        self._last_cmd = line
        if self.faults.silent:
            return []
        return self._execute(text[2:], now)

    def _execute(self, cmds: str, now: float) -> list:
        i = 0
        while i < len(cmds):
            c = cmds[i].upper()
            i += 1
            if c == " ":
                continue
            if c == "D":
                return self._dial(cmds[i:], now)
            if c == "S":
                i, err, reply = self._s_register(cmds, i)
                if err:
                    return self._result("ERROR")
                if reply is not None:
                    return [Output(self._wrap(reply))] + self._finish_ok()
                continue
            if c == "&":
                if i >= len(cmds):
                    return self._result("ERROR")
                c = "&" + cmds[i].upper()
                i += 1
            i, arg = _number(cmds, i)
            handled = self._simple(c, arg)
            if handled is None:
                return self._result("ERROR")
            if handled:
                return handled
        return self._finish_ok()

    def _simple(self, c: str, arg: int | None) -> list | None:
        """One single-letter command; None = ERROR, [] = OK so far, events = final."""
        st = self.settings
        n = 0 if arg is None else arg
        flags = {"E": "echo", "V": "verbal", "Q": "quiet"}
        if c in flags and n in (0, 1):
            setattr(st, flags[c], bool(n))
            return []
        if c == "X" and 0 <= n <= 4:
            st.x = n
            return []
        if c in ("Z", "&F"):
            self._reset()
            return []
        if c == "&D" and 0 <= n <= 3:
            st.dtr_mode = n
            return []
        if c in ("L", "M", "&C", "&K", "&W", "&S", "&V") and 0 <= n <= 9:
            return []
        if c == "I":
            return [Output(self._wrap("edgemail hardware-sim modem 56k"))] + self._finish_ok()
        if c == "H":
            if self._connected_at is not None:
                return self._hangup("ath") + self._result("OK")
            return []
        if c == "O":
            if self.state is State.ONLINE_COMMAND:
                return self._go_data(self.number, None)
            return self._result("NO CARRIER")
        if c == "A":
            return self._result("NO CARRIER")  # no call is ringing, ever
        return None

    def _s_register(self, cmds: str, i: int) -> tuple[int, bool, str | None]:
        i, reg = _number(cmds, i)
        if reg is None:
            return i, True, None
        if i < len(cmds) and cmds[i] == "?":
            return i + 1, False, f"{self.settings.s.get(reg, 0):03d}"
        if i < len(cmds) and cmds[i] == "=":
            i, val = _number(cmds, i + 1)
            if val is None or not 0 <= val <= 255:
                return i, True, None
            self.settings.s[reg] = val
            return i, False, None
        return i, True, None

    def _reset(self) -> None:
        self.settings = _Settings()

    def _finish_ok(self) -> list:
        return self._result("OK")

    # -- dialing ------------------------------------------------------------

    def _dial(self, rest: str, now: float) -> list:
        if self.state is not State.COMMAND:
            return self._result("ERROR")
        number = rest.strip()
        if number.upper() == "L":
            number = self.last_number
        if number[:1].upper() in ("T", "P"):
            number = number[1:]
        if not number or any(ch not in DIAL_CHARS for ch in number):
            return self._result("ERROR")
        self.number = self.last_number = number.replace(" ", "")
        self.state = State.DIALING
        self.dials += 1
        self._dial_at = now + min(self.faults.connect_delay, float(self.settings.s[7]))
        return [DialStarted(self.number)]

    def _dial_outcome(self, now: float) -> list:
        self._dial_at = None
        if self.faults.silent:
            self.state = State.COMMAND
            return [DialFailed("silent")]
        result = self.faults.result
        if result is None and self.busy_left > 0:
            self.busy_left -= 1
            result = "BUSY"
        if result is None and self.faults.connect_delay > self.settings.s[7]:
            result = "NO CARRIER"  # S7 ran out before the far end answered
        if result is not None:
            self.state = State.COMMAND
            reported = self._x_filter(result)
            return self._result(reported) + [DialFailed(reported)]
        self._connected_at = now
        self._line_bytes = 0
        return self._go_data(self.number, now)

    def _x_filter(self, result: str) -> str:
        x = self.settings.x
        if result == "BUSY" and x not in (3, 4):
            return "NO CARRIER"
        if result == "NO DIALTONE" and x not in (2, 4):
            return "NO CARRIER"
        return result

    def _abort_dial(self) -> list:
        self._dial_at = None
        self.state = State.COMMAND
        return self._result("NO CARRIER") + [DialFailed("aborted")]

    def _go_data(self, number: str, now: float | None) -> list:
        self.state = State.DATA
        self._plus = 0
        if now is not None:
            self._last_data = now
        speed = self.faults.speed
        word = "CONNECT" if self.settings.x == 0 else f"CONNECT {speed}"
        return self._result(word) + [Connected(number, speed)]

    def _hangup(self, cause: str) -> list:
        was = self.state
        self.state = State.COMMAND
        self._dial_at = None
        self._connected_at = None
        self._plus = 0
        if was is State.COMMAND:
            return []
        return [HungUp(cause)]

    # -- data mode ------------------------------------------------------------

    def _guard(self) -> float:
        return self.settings.s[12] / 50.0

    def _data_byte(self, b: int, now: float) -> list:
        esc = self.settings.s[2]
        guard = self._guard()
        if esc <= 127 and b == esc and self._plus < 3 and (self._plus or now - self._last_data >= guard):
            self._plus += 1
            self._plus_at = now
            return []
        events = self._flush_plus()
        self._last_data = now
        events.append(DataFromDte(bytes([b])))
        return events

    def _flush_plus(self) -> list:
        if not self._plus:
            return []
        data = bytes([self.settings.s[2]]) * self._plus
        self._plus = 0
        return [DataFromDte(data)]

    def _escape_timer(self, now: float) -> list:
        if not self._plus or now < self._plus_at + self._guard():
            return []
        if self._plus < 3:
            self._last_data = now
            return self._flush_plus()
        self._plus = 0
        self.state = State.ONLINE_COMMAND
        return [Escaped()] + self._result("OK")

    # -- result codes ----------------------------------------------------------

    def _wrap(self, text: str) -> bytes:
        s = self.settings.s
        crlf = bytes([s[3], s[4]])
        return crlf + text.encode() + crlf

    def _result(self, word: str) -> list:
        if self.faults.silent or self.settings.quiet:
            return []
        events: list = []
        if self.faults.garbage:
            events.append(Output(self.garbage(self.faults.garbage)))
        if self.settings.verbal:
            events.append(Output(self._wrap(word)))
        else:
            code = VERBAL_RESULTS.get(word.split(" ")[0] if word.startswith("CONNECT") else word, 4)
            events.append(Output(f"{code}".encode() + bytes([self.settings.s[3]])))
        return events

    def garbage(self, n: int) -> bytes:
        """Line noise: bytes 0x80-0xFE, never CR/LF or letters a dialer could match."""
        return bytes(self._rng.randrange(0x80, 0xFF) for _ in range(n))


def _number(text: str, i: int) -> tuple[int, int | None]:
    j = i
    while j < len(text) and text[j].isdigit():
        j += 1
    return j, (int(text[i:j]) if j > i else None)


def faults_from(base: Faults, changes: dict) -> Faults:
    """Faults with the given fields changed; unknown fields raise ValueError."""
    known = set(Faults.__dataclass_fields__)
    bad = set(changes) - known
    if bad:
        raise ValueError(f"unknown fault field(s): {', '.join(sorted(bad))}")
    return replace(base, **changes)
