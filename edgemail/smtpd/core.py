"""smtpd/core.py - the SMTP server dialogue, sans I/O (smtpc/core.py's mirror).

Owns what the server says and when: the session's state (``State``), the
command table (``Dialogue._commands``: verb -> handler, with the HELO
precondition in ``NEEDS_HELO``), EHLO/HELO, MAIL/RCPT (transaction.py), DATA
(data.py's collector), RSET, NOOP, QUIT, VRFY (252), EXPN (refused), STARTTLS
and AUTH (secure.py), HELP, ETRN and ATRN (turn.py; an ODMR listener takes no
mail), SMTP synchronisation, the count of 5xx replies, and every reply's
wording (replies.py).  Logs each refusal in sendmail's form (maillog.reject)
and internal errors with their traceback; an HTTP verb ends the session
(syntax.py NON_SMTP).

Use (session.py is the one driver)::

    core = Dialogue(settings, ip=..., relay=..., trusted=..., decide_rcpt=..., has_room=...)
    core.greet()                  # or core.close_with(refusal) at a full house
    core.receive_data(data)       # b"" = the client's end of input
    event = core.next_event()     # NEED_DATA, FLUSH, Commit, Etrn, Atrn, StartTls, Authenticate or Close
    core.data_to_send()           # the replies' bytes, in order
    core.answer(reply)            # the outcome of a Commit, Etrn or Atrn
    core.close_with(reply)        # ATRN's 250: our side ends, the push takes the connection
    core.tls_started() / core.auth_done(event, user, failures)

States: GREETING (no 220 yet) -> COMMAND <-> DATA (after 354), COMMAND <->
AUTH (334 said: the next line is the client's response, never a command) ;
COMMAND/DATA -> WAITING (a Commit, Etrn, Atrn, StartTls or Authenticate is out)
-> COMMAND ; any -> CLOSED.

Invariants:
  * One command at a time, in order: input is taken only in COMMAND/DATA/AUTH,
    so replies keep the commands' order (RFC 2920 PIPELINING).
  * The dialogue knows what it has read and what it has answered: the
    reader holds exactly the bytes no reply covers yet.
  * The transaction is reset by RSET, EHLO/HELO, STARTTLS and the end of DATA.
  * ``max_bad_commands`` 5xx replies end the dialogue with ``421 4.7.0``.
  * An exception from a decision (routing's check_rcpt, ...) answers
    ``451 4.3.0``, is logged once with its traceback, and the dialogue
    goes on.
  * Nothing here blocks: the decisions it is handed answer at once (the
    password check is the driver's, as an event).

SMTP synchronisation (issue 16; sendmail 8.18's transaction-stuffing check,
Postfix's smtpd_forbid_unauth_pipelining): ``554 5.5.0``, the session ends
and what was held is dropped unread, when the client sent anything
  * before the greeting (while a ``greet_pause`` runs: strict listeners
    have one by default), on any listener;
  * after EHLO, HELO or DATA before their reply (RFC 2920 lets these only
    end a group), on strict listeners;
  * after a DATA that is refused (503, 530...), on any listener: a message
    body is never read as commands.
  LAN listeners tolerate the rest: commands pipelined after EHLO/HELO,
  data after an accepted DATA.  RFC 2920 pipelining is untouched (MAIL,
  RCPT..., DATA as one group; the final dot, then the next MAIL or QUIT).
  Bare LF / CR in command lines: syntax.py (strict: a bare LF ends the session).

ETRN and ATRN (turn.py): who may flush what is the daemon's hook's business
(delivery/customers.py); the events carry who asks (address, trust,
``auth_user``).  ATRN's 250 is said with ``close_with``: the driver hands the
socket to the push (delivery/flush.py, on smtpc).
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Callable

from edgemail import maillog
from edgemail.smtpd import replies, turn
from edgemail.smtpd.auth import Exchange
from edgemail.smtpd.data import DataCollector, summarise
from edgemail.smtpd.events import CLOSE, FLUSH, NEED_DATA, Atrn, Commit, Etrn, Event
from edgemail.smtpd.reader import TOO_LONG, LineReader
from edgemail.smtpd.secure import SecureCommands
from edgemail.smtpd.state import Settings, State
from edgemail.smtpd.syntax import BadLine, split_command
from edgemail.smtpd.transaction import RcptDecision, Transaction

__all__ = ["Dialogue", "Settings", "State"]

log = logging.getLogger("edgemail.smtpd")

#: sendmail's MaxHopCount default
MAX_HOPS = 25
#: replies held before next_event() returns FLUSH (so that a client that
#: pipelines without reading cannot make us buffer without bound)
OUTPUT_REPLIES = 256
NEEDS_HELO = frozenset({"MAIL", "RCPT", "DATA"})
#: commands RFC 2920 lets only end a pipelined group (checked on strict listeners)
SYNC_VERBS = frozenset({"EHLO", "HELO", "DATA"})

Handler = Callable[[str | None], "str | Event | None"]
#: (user, sender) -> may the authenticated user send as that sender
SenderCheck = Callable[[str, str], bool]


class Dialogue(SecureCommands):
    """One session's dialogue; see the module docstring."""

    def __init__(self, settings: Settings, *, ip: str, relay: str, trusted: bool,
                 decide_rcpt: RcptDecision, has_room: Callable[[int], bool],
                 auth_failures: Callable[[], int] = lambda: 0,
                 sender_ok: SenderCheck = lambda user, sender: True) -> None:
        self.settings = settings
        self.ip, self.relay, self.trusted = ip, relay, trusted
        self._decide_rcpt, self._has_room = decide_rcpt, has_room
        self._auth_failures, self._sender_ok = auth_failures, sender_ok
        self.state = State.GREETING
        self.reader = LineReader()
        #: bytes read from the client (``b""``: it has sent all it will); the
        #: reader's own method, called once per read
        self.receive_data = self.reader.receive_data
        #: the last command taken, and its argument (for log lines; AUTH's never kept);
        #: "DATA content" while the body is read, "END-OF-MESSAGE" after its dot
        self.verb = "CONNECT"
        self.arg: str | None = None
        #: the client's EHLO/HELO name, and whether it was EHLO
        self.helo: str | None = None
        self.extended = False
        self.tls = False
        self.auth_user: str | None = None
        self._exchange: Exchange | None = None
        self.txn = Transaction()
        #: 5xx replies so far
        self.errors = 0
        #: the dialogue ended by our word (221 to QUIT, 421 too many errors, 554)
        self.ended = False
        self._collector: DataCollector | None = None
        self._out: list[str] = []
        self._commands: dict[str, Handler] = {
            "EHLO": self._ehlo, "HELO": self._helo, "MAIL": self._mail, "RCPT": self._rcpt,
            "DATA": self._data, "RSET": self._rset, "NOOP": self._noop, "QUIT": self._quit,
            "VRFY": self._vrfy, "EXPN": self._expn, "AUTH": self._auth, "HELP": self._help,
            "STARTTLS": self._starttls, "ETRN": partial(turn.etrn, self), "ATRN": partial(turn.atrn, self),
        }
        if settings.odmr:
            self._commands.update(dict.fromkeys(turn.ODMR_REFUSED, turn.odmr_only))

    # ---------------------------------------------------------------- the driver's calls

    def greet(self) -> None:
        """Say 220: commands are taken from now on (unless the dialogue has
        ended already: a client that talked first)."""
        if self.state is State.GREETING:
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
                    self.verb, self.arg = "(line too long)", None
                    self._reply("500 Command line too long")
                    event = None
                else:
                    event = self._command(line)
            elif state is State.DATA:
                assert self._collector is not None
                if not reader.feed(self._collector):
                    break
                event = self._data_end()
            elif state is State.AUTH:
                line = reader.next_line()
                if line is None:
                    break
                event = self._auth_line(line)
            else:
                if state is State.GREETING and reader.held:
                    self._desync("CONNECT")     # it talked before our 220 (greet_pause)
                    continue
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
        """The reply to the Commit, Etrn or Atrn that next_event returned."""
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

    def _reply(self, status: str, *, logged: bool = True) -> None:
        """One reply: the enhanced code added, a refusal logged (unless not
        LOGGED: it has a line of its own), the session ended after
        max_bad_commands 5xx replies."""
        status = replies.with_enhanced(status)
        self._out.append(status)
        if logged and status[0] in "45" and status[:3] != "421" and self.verb != "CONNECT":
            log.warning(maillog.reject(status, cmd=self.verb, arg=self.arg, relay=self.relay))
        if status[0] == "5":
            self.errors += 1
            if self.errors >= self.settings.max_bad_commands and self.state is not State.CLOSED:
                log.warning(maillog.too_many_errors(self.relay, self.verb))
                self._send(f"421 4.7.0 {self.settings.hostname} Error: too many errors")
                self.state, self.ended = State.CLOSED, True

    def _close_unread(self) -> None:        # nothing held is read; the session ends
        self.reader.discard()
        self.state, self.ended = State.CLOSED, True

    def _desync(self, after: str) -> None:
        """The client did not wait for our reply where it must: 554, nothing
        it sent after that point is read, the session ends."""
        self._close_unread()
        if after == "CONNECT":
            log.warning(maillog.pregreet(self.relay))
            self._send("554 5.5.0 Error: SMTP protocol synchronization: talked before the greeting")
            return
        self._reply(f"554 5.5.0 Error: SMTP protocol synchronization: command pipelining after {after}")

    # ---------------------------------------------------------------- commands

    def _command(self, line: bytes) -> Event | None:
        """One command line: answered here, or an event for the driver."""
        parsed = split_command(line, strict=self.settings.strict, extended=self.extended)
        if isinstance(parsed, BadLine):
            self.verb, self.arg = parsed.verb, parsed.arg     # the bad line, in the log
            self._reply(parsed.reply)
            if parsed.close or (self.settings.strict and not line.endswith(b"\r\n")):
                self._close_unread()        # an HTTP verb, or a bare LF on strict: what follows is no command
            return None
        verb, arg = parsed
        handler = self._commands.get(verb)
        if handler is None and self.verb == "AUTH":     # a response sent after a refused AUTH:
            self.verb, self.arg = "(after AUTH)", None  # it may be a password: never logged
        else:
            self.verb, self.arg = verb, (None if verb == "AUTH" else arg)   # never log AUTH data
        if self.settings.strict and verb in SYNC_VERBS and self.reader.held:
            self._desync(verb)
            return None
        result = self._refusal(verb, handler) or self._run(handler, arg)
        if isinstance(result, str):
            if verb == "DATA" and self.reader.held:     # a refused DATA: its body is no command
                self._desync(verb)
                return None
            self._reply(result)
            return None
        if isinstance(result, (Etrn, Atrn)):
            self.state = State.WAITING          # the hook's reply comes through answer()
        return result

    def _refusal(self, verb: str, handler: Handler | None) -> str | None:
        """Why VERB is not run now (unknown, TLS first, HELO first), or None."""
        if handler is None:
            return f"500 Error: command {verb[:20]!r} not recognised"
        if refusal := self.tls_refusal(verb):
            return refusal
        if verb in NEEDS_HELO and self.helo is None:
            return "503 Error: send HELO first"
        return None

    def _run(self, handler: Handler | None, arg: str | None) -> str | Event | None:
        """The command's handler; an exception from it is a 451 (logged once)."""
        assert handler is not None
        try:
            return handler(arg)
        except Exception as exc:
            return self.internal_error(exc)

    def _ehlo(self, arg: str | None) -> str | None:
        if not arg:
            return "501 5.5.4 Syntax: EHLO hostname"
        self._hello(arg, extended=True)
        s = self.settings
        self._send(replies.ehlo_reply(replies.hello(s.hostname, arg, self.ip), max_size=s.max_size,
                                      etrn=s.etrn, starttls=s.tls and not self.tls,
                                      auth=self.auth_offered(), atrn=s.odmr))
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
        if self.settings.submission and self.auth_user is None:
            return "530 5.7.0 Authentication required"
        return self.txn.mail_cmd(arg, extended=self.extended, max_size=self.settings.max_size,
                                 has_room=self._has_room, auth=bool(self.settings.auth),
                                 authenticated=self.auth_user is not None,
                                 check_sender=self._check_sender, domain=self.qualify_with)

    def _check_sender(self, sender: str) -> str | None:
        """An authenticated user's sender: the 553 that refuses it, or None."""
        user = self.auth_user
        if user is None or self._sender_ok(user, sender):
            return None
        return f"553 5.7.1 <{sender}>... Sender address rejected: not owned by user {user[:64]}"

    def _rcpt(self, arg: str | None) -> str:
        return self.txn.rcpt_cmd(arg, extended=self.extended, max_rcpts=self.settings.max_rcpts,
                                 decide=self._decide_rcpt, domain=self.qualify_with)

    def _data(self, arg: str | None) -> str | None:
        """DATA: 354, then next_event feeds the collector until the end."""
        if not self.txn.rcpts:
            return "503 5.5.1 Error: need RCPT command"
        if arg:
            return "501 5.5.4 Syntax: DATA"
        self._reply("354 End data with <CR><LF>.<CR><LF>")
        self._collector = DataCollector(strict=self.settings.strict, limit=self.settings.max_size)
        self.state, self.verb = State.DATA, "DATA content"     # Postfix's stage names, for the log
        return None

    def _data_end(self) -> Event | None:
        """The end of DATA was read: the refusal, or a Commit."""
        collector, self._collector = self._collector, None
        proto, txn, self.txn = self.proto, self.txn, Transaction()     # proto: of this transaction
        self.state, self.verb = State.COMMAND, "END-OF-MESSAGE"    # its reply says what became of it
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
        return Commit(txn=txn, message=message, facts=facts, helo=self.helo or "", proto=proto)

    @property
    def proto(self) -> str:
        """What Received: and the log say (RFC 3848: ESMTPS, ESMTPA, ESMTPSA; RFC 6531: UTF8SMTP...)."""
        if not self.extended:
            return "SMTP"
        base = "UTF8SMTP" if self.txn.mail.smtputf8 else "ESMTP"
        return base + ("S" if self.tls else "") + ("A" if self.auth_user else "")

    def _rset(self, arg: str | None) -> str:
        if arg:
            return "501 Syntax: RSET"
        self.txn = Transaction()
        return "250 OK"

    def _noop(self, arg: str | None) -> str:
        return "250 OK"

    def _quit(self, arg: str | None) -> str | None:    # an argument is ignored, as sendmail and Postfix do
        self._reply("221 Bye")
        self._close_unread()
        return None

    def _vrfy(self, arg: str | None) -> str:
        return "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery"

    def _expn(self, arg: str | None) -> str:
        return "502 5.5.1 EXPN not available"

    def _help(self, arg: str | None) -> str:
        return replies.help_reply(arg, extended=self.extended)
