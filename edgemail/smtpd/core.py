"""smtpd/core.py - the SMTP server dialogue, sans I/O (smtpc/core.py's mirror).

Owns what the server says and when: the session's state (``State``), the
command table (``Dialogue._commands``: verb -> handler, with the HELO
precondition in ``NEEDS_HELO``), EHLO/HELO, MAIL/RCPT (transaction.py),
DATA (data.py's collector), RSET, NOOP, QUIT, VRFY (252), EXPN/AUTH
(refused), STARTTLS (454: not offered), HELP, ETRN and ATRN (turn.py;
an ODMR listener takes no mail), the count of 5xx
replies, and every reply's wording (replies.py).  Logs each refusal in
sendmail's form (maillog.reject) and internal errors with their traceback.

Use (session.py is the one driver)::

    core = Dialogue(settings, ip=..., relay=..., trusted=..., decide_rcpt=..., has_room=...)
    core.greet()                  # or core.close_with(refusal) at a full house
    core.receive_data(data)       # b"" = the client's end of input
    event = core.next_event()     # NEED_DATA, FLUSH, Commit, Etrn, Atrn or Close
    core.data_to_send()           # the replies' bytes, in order
    core.answer(reply)            # the outcome of a Commit, Etrn or Atrn
    core.close_with(reply)        # ATRN's 250: our side ends, the push takes the connection

States: GREETING (no 220 yet) -> COMMAND <-> DATA (after 354) ;
COMMAND/DATA -> WAITING (a Commit or Etrn is out) -> COMMAND ; any -> CLOSED.

Invariants:
  * One command at a time, in order: input is taken only in COMMAND/DATA,
    so replies keep the commands' order (RFC 2920 PIPELINING).
  * The dialogue knows what it has read and what it has answered: the
    reader holds exactly the bytes no reply covers yet.
  * The transaction is reset by RSET, EHLO/HELO and the end of DATA.
  * ``max_bad_commands`` 5xx replies end the dialogue with ``421 4.7.0``.
  * An exception from a decision (routing's check_rcpt, ...) answers
    ``451 4.3.0``, is logged once with its traceback, and the dialogue
    goes on.
  * Nothing here blocks: the decisions it is handed answer at once.

Coming features fit the table (issues 11 and 16):
  * STARTTLS: a handler that answers 220, ``reader.discard()``s the
    plaintext read after the command, resets the EHLO state (``helo``,
    ``extended``, the transaction) and returns a StartTls event (the driver
    runs the handshake, then carries on).
  * AUTH PLAIN/LOGIN: a state that takes the next line(s) as the 334
    continuation instead of a command (never logged: ``arg`` is None).
  * ATRN (RFC 2645): turn.atrn's event; after the hook's 250 the driver
    hands the socket to the push (delivery/flush.py, on smtpc).
  * Synchronisation on strict listeners: the dialogue knows what it has
    answered and what it has read, so "the client sent more after DATA,
    EHLO or HELO before our reply" is ``reader.held > 0`` when that command
    is taken, and "before the greeting" is bytes received in GREETING: 554
    5.5.0 and Close; PIPELINING (RFC 2920) is untouched for the rest.
  * A bare LF ending a command line: ``next_line()`` returns the line with
    its ending, so ``_split`` can refuse it (500 5.5.2).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from functools import partial
from typing import Callable

from edgemail import maillog
from edgemail.config.model import Config, Listener
from edgemail.smtpd import replies, turn
from edgemail.smtpd.data import DataCollector, summarise
from edgemail.smtpd.events import CLOSE, FLUSH, NEED_DATA, Atrn, Commit, Etrn, Event
from edgemail.smtpd.reader import TOO_LONG, LineReader
from edgemail.smtpd.transaction import RcptDecision, Transaction

log = logging.getLogger("edgemail.smtpd")

#: sendmail's MaxHopCount default
MAX_HOPS = 25
#: command line limits (without CR LF): MAIL/RCPT after EHLO, everything else
COMMAND_LIMITS = {"MAIL": 1024, "RCPT": 1024}
COMMAND_LIMIT = 512
#: replies held before next_event() returns FLUSH (so that a client that
#: pipelines without reading cannot make us buffer without bound)
OUTPUT_REPLIES = 256
NEEDS_HELO = frozenset({"MAIL", "RCPT", "DATA"})

Handler = Callable[[str | None], "str | Event | None"]


class State(enum.Enum):
    GREETING = "greeting"   #: connected, no 220 sent yet
    COMMAND = "command"     #: waiting for a command line
    DATA = "data"           #: after 354: the message, until CRLF "." CRLF
    WAITING = "waiting"     #: a Commit or Etrn is out: input waits for answer()
    CLOSED = "closed"       #: QUIT answered, 421 said, or the input ended


@dataclass(frozen=True)
class Settings:
    """What one listener's dialogues share (from the configuration)."""
    hostname: str
    max_size: int
    max_rcpts: int
    max_bad_commands: int
    #: an ISP/Internet-facing listener: bare CR/LF and NUL refused in DATA
    strict: bool
    #: ETRN offered (the daemon gave a hook; PrivacyOptions without noetrn)
    etrn: bool
    #: an ODMR listener (RFC 2645): ATRN offered, no mail taken (turn.py)
    odmr: bool = False

    @classmethod
    def of(cls, cfg: Config, listener: Listener, *, etrn: bool, atrn: bool = False) -> "Settings":
        odmr = listener.odmr and atrn
        return cls(hostname=cfg.hostname, max_size=cfg.MaxMessageSize,
                   max_rcpts=cfg.smtpd.MaxRecipientsPerMessage,
                   max_bad_commands=cfg.smtpd.max_bad_commands, strict=listener.strict,
                   etrn=etrn and not odmr and "noetrn" not in cfg.PrivacyOptions, odmr=odmr)


class Dialogue:
    """One session's dialogue; see the module docstring."""

    def __init__(self, settings: Settings, *, ip: str, relay: str, trusted: bool,
                 decide_rcpt: RcptDecision, has_room: Callable[[int], bool]) -> None:
        self.settings = settings
        self.ip, self.relay, self.trusted = ip, relay, trusted
        self._decide_rcpt, self._has_room = decide_rcpt, has_room
        self.state = State.GREETING
        self.reader = LineReader()
        #: bytes read from the client (``b""``: it has sent all it will); the
        #: reader's own method, called once per read
        self.receive_data = self.reader.receive_data
        #: the last command taken, and its argument (for log lines; AUTH's never kept)
        self.verb = "CONNECT"
        self.arg: str | None = None
        #: the user AUTH authenticated (None: not authenticated; ETRN and ATRN ask)
        self.auth_user: str | None = None
        #: the client's EHLO/HELO name, and whether it was EHLO
        self.helo: str | None = None
        self.extended = False
        self.txn = Transaction()
        #: 5xx replies so far
        self.errors = 0
        #: the dialogue ended by our word (221 to QUIT, 421 too many errors)
        self.ended = False
        self._collector: DataCollector | None = None
        self._out: list[str] = []
        self._commands: dict[str, Handler] = {
            "EHLO": self._ehlo, "HELO": self._helo, "MAIL": self._mail, "RCPT": self._rcpt,
            "DATA": self._data, "RSET": self._rset, "NOOP": self._noop, "QUIT": self._quit,
            "VRFY": self._vrfy, "EXPN": self._expn, "AUTH": self._auth, "HELP": self._help,
            "STARTTLS": self._starttls, "ETRN": partial(turn.etrn, self),
            "ATRN": partial(turn.atrn, self),
        }
        if settings.odmr:
            self._commands.update(dict.fromkeys(turn.ODMR_REFUSED, turn.odmr_only))

    # ---------------------------------------------------------------- the driver's calls

    def greet(self) -> None:
        """Say 220: commands are taken from now on."""
        self._send(replies.greeting(self.settings.hostname))
        self.state = State.COMMAND

    def close_with(self, reply: str) -> None:
        """Say REPLY (a 421: full house, timeout, shutdown) and end the dialogue."""
        self._send(reply)
        self.state = State.CLOSED

    @property
    def held(self) -> int:
        """Bytes read that no reply covers yet."""
        return self.reader.held

    def next_event(self) -> Event:
        """Take input until something is to be done; see events.py."""
        reader, out = self.reader, self._out
        while True:
            state = self.state
            if state is State.COMMAND:
                line = reader.next_line()
                if line is None:
                    break
                if line is TOO_LONG:
                    self._reply("500 Command line too long")
                    event = None
                else:
                    event = self._command(line)
            elif state is State.DATA:
                assert self._collector is not None
                if not reader.feed(self._collector):
                    break
                event = self._data_end()
            else:
                break
            if event is not None:
                return event
            if len(out) >= OUTPUT_REPLIES:
                return FLUSH
        if state is State.CLOSED:
            return CLOSE
        if reader.eof and state is not State.WAITING and state is not State.GREETING:
            self.state = State.CLOSED       # all answered: the input's end ends the session
            return CLOSE
        return NEED_DATA

    def answer(self, reply: str) -> None:
        """The reply to the Commit or Etrn that next_event returned."""
        if self.state is State.WAITING:
            self.state = State.COMMAND
            self._reply(reply)

    def internal_error(self, error: BaseException) -> str:
        """Log ERROR once, with its traceback; the reply that says so."""
        log.error(maillog.internal_error(self.relay, self.verb), exc_info=error)
        return "451 4.3.0 Error: internal error, try again later"

    def data_to_send(self) -> bytes:
        """The replies queued since the last call, as bytes for the wire."""
        out = self._out
        if not out:
            return b""
        text = out[0] + "\r\n" if len(out) == 1 else "\r\n".join(out) + "\r\n"
        out.clear()
        return text.encode("utf-8", "surrogateescape")

    # ---------------------------------------------------------------- replies

    def _send(self, text: str) -> None:
        self._out.append(text)

    def _reply(self, status: str) -> None:
        """One reply: the enhanced code added, a refusal logged, the session
        ended after max_bad_commands 5xx replies."""
        status = replies.with_enhanced(status)
        self._out.append(status)
        if status[0] in "45" and status[:3] != "421" and self.verb != "CONNECT":
            log.warning(maillog.reject(status, cmd=self.verb, arg=self.arg, relay=self.relay))
        if status[0] == "5":
            self.errors += 1
            if self.errors >= self.settings.max_bad_commands and self.state is not State.CLOSED:
                log.warning(maillog.too_many_errors(self.relay, self.verb))
                self._send(f"421 4.7.0 {self.settings.hostname} Error: too many errors")
                self.state, self.ended = State.CLOSED, True

    # ---------------------------------------------------------------- commands

    def _command(self, line: bytes) -> Event | None:
        """One command line: answered here, or an event for the driver."""
        parsed = self._split(line)
        if isinstance(parsed, str):
            self._reply(parsed)
            return None
        verb, arg = parsed
        self.verb, self.arg = verb, (None if verb == "AUTH" else arg)   # never log AUTH data
        handler = self._commands.get(verb)
        if handler is None:
            result: str | Event | None = f"500 Error: command {verb[:20]!r} not recognised"
        elif verb in NEEDS_HELO and self.helo is None:
            result = "503 Error: send HELO first"
        else:
            try:
                result = handler(arg)
            except Exception as exc:
                result = self.internal_error(exc)
        if isinstance(result, str):
            self._reply(result)
            return None
        if isinstance(result, (Etrn, Atrn)):
            self.state = State.WAITING          # the hook's reply comes through answer()
        return result

    def _split(self, line: bytes) -> tuple[str, str | None] | str:
        """(VERB, argument) of a command line, or the 500 that refuses it."""
        line = line.rstrip(b"\r\n")
        verb_bytes, _, arg_bytes = line.partition(b" ")
        try:
            verb = verb_bytes.upper().decode("ascii")
        except UnicodeDecodeError:
            line = b""
        if not line:
            return "500 Error: bad syntax"
        limit = COMMAND_LIMITS.get(verb, COMMAND_LIMIT) if self.extended else COMMAND_LIMIT
        if len(line) > limit:
            return "500 Command line too long"
        return verb, (str(arg_bytes.strip(), "utf-8", "surrogateescape") if arg_bytes else None)

    def _ehlo(self, arg: str | None) -> str | None:
        if not arg:
            return "501 5.5.4 Syntax: EHLO hostname"
        self._hello(arg, extended=True)
        s = self.settings
        self._send(replies.ehlo_reply(replies.hello(s.hostname, arg, self.ip),
                                      max_size=s.max_size, etrn=s.etrn, atrn=s.odmr))
        return None

    def _helo(self, arg: str | None) -> str | None:
        if not arg:
            return "501 5.5.4 Syntax: HELO hostname"
        self._hello(arg, extended=False)
        self._send("250 " + replies.hello(self.settings.hostname, arg, self.ip))
        return None

    def _hello(self, name: str, *, extended: bool) -> None:
        self.txn = Transaction()
        self.helo, self.extended = name, extended

    def _mail(self, arg: str | None) -> str:
        return self.txn.mail_cmd(arg, extended=self.extended, max_size=self.settings.max_size,
                                 has_room=self._has_room)

    def _rcpt(self, arg: str | None) -> str:
        return self.txn.rcpt_cmd(arg, extended=self.extended, max_rcpts=self.settings.max_rcpts,
                                 decide=self._decide_rcpt)

    def _data(self, arg: str | None) -> str | None:
        """DATA: 354, then next_event feeds the collector until the end."""
        if not self.txn.rcpts:
            return "503 5.5.1 Error: need RCPT command"
        if arg:
            return "501 5.5.4 Syntax: DATA"
        self._reply("354 End data with <CR><LF>.<CR><LF>")
        self._collector = DataCollector(strict=self.settings.strict, limit=self.settings.max_size)
        self.state = State.DATA
        return None

    def _data_end(self) -> Event | None:
        """The end of DATA was read: the refusal, or a Commit."""
        collector, self._collector = self._collector, None
        txn, self.txn = self.txn, Transaction()
        self.state = State.COMMAND
        assert collector is not None
        if collector.refusal:
            self._reply(collector.refusal)
            return None
        message = collector.message()
        facts = summarise(message)
        if facts.hops > MAX_HOPS:
            self._reply(f"554 5.4.6 Too many hops ({facts.hops}): mail loop?")
            return None
        self.state = State.WAITING
        return Commit(txn=txn, message=message, facts=facts, helo=self.helo or "",
                      proto="ESMTP" if self.extended else "SMTP")

    def _rset(self, arg: str | None) -> str:
        if arg:
            return "501 Syntax: RSET"
        self.txn = Transaction()
        return "250 OK"

    def _noop(self, arg: str | None) -> str:
        return "250 OK"

    def _quit(self, arg: str | None) -> str | None:
        if arg:
            return "501 Syntax: QUIT"
        self._reply("221 Bye")
        self.state, self.ended = State.CLOSED, True
        return None

    def _vrfy(self, arg: str | None) -> str:
        return "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery"

    def _expn(self, arg: str | None) -> str:
        return "502 5.5.1 EXPN not available"

    def _auth(self, arg: str | None) -> str:
        return "502 5.5.1 AUTH not available"

    def _starttls(self, arg: str | None) -> str:
        return "501 Syntax: STARTTLS" if arg else "454 TLS not available"

    def _help(self, arg: str | None) -> str:
        return replies.help_reply(arg, extended=self.extended)

