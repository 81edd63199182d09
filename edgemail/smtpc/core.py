"""core.py - the SMTP/LMTP client dialogue, sans I/O (h11 style).

Owns: what we say to a server and what its replies mean.  ``send(command)``
returns the bytes to write; ``receive_data(bytes)`` takes what the server
sent; ``next_event()`` returns ``Response(command, reply)`` events in the
order the commands were sent (RFC 2920: replies come back in order, so a
pipelined group is just several ``send`` calls before the first read), or
``NEED_DATA``.  Pure helpers (params.py's, re-exported here) build MAIL/RCPT
commands from what the server offers (SIZE, 8BITMIME, SMTPUTF8, DSN), turn replies into
``TempFail``/``PermFail`` with a scope, and read RFC 1985's replies to
ETRN (``etrn_outcome``).

Ending the dialogue on a reply (ODMR, RFC 2645): after a 250 to ATRN the
connection is turned around and we are its server.  The core then parses
nothing more; ``handover()`` returns the bytes that came after the 250,
unparsed, for the server side that takes the connection over.

The words of the dialogue (commands, ``Response``, ``Capabilities``,
``NEED_DATA``) are events.py's; the bytes (command lines, dot-stuffed
data, the 998-octet limit) are wire.py's.  Both sets of names are
re-exported here: ``from edgemail.smtpc.core import Mail, encode_data``
keeps working.

Never does: sockets, timeouts, TLS, clocks, logging (session.py does).

Invariants:
  * nothing goes out that wire.py refuses: a command with CR, LF, NUL or
    another control character raises LocalProtocolError from ``send``
    before a single byte is returned; message data is normalised,
    dot-stuffed and ends with CRLF "." CRLF; a line longer than 998
    octets on the wire fails the message permanently ("5.6.0 line too
    long");
  * message data is sent only after a 354 reply to DATA, and any other
    command only outside it;
  * MAIL and RCPT carry only the parameters the server offered (params.py:
    SIZE, BODY=8BITMIME, SMTPUTF8, DSN; a message it cannot take unchanged
    fails before MAIL);
  * LMTP (``lmtp=True``): LHLO instead of EHLO, and after the final dot one
    reply per accepted recipient, in RCPT order (RFC 2033);
  * bytes are parsed as replies only when ``next_event`` asks for the next
    one, so nothing after a reply that ends the dialogue is ever read as
    a reply;
  * nothing the server sent before the TLS handshake finished becomes a
    reply (issue 16 §3, response injection): a byte received with or
    after the 220 to STARTTLS raises RemoteProtocolError (the driver drops
    the session); until the driver says ``tls_established()`` nothing may
    be sent, and then EHLO (LHLO, HELO) or QUIT must come first;
  * nothing is sent while the reply to a command that changes the
    dialogue's state is outstanding (RFC 2920 3.1: the greeting, EHLO,
    HELO, LHLO, STARTTLS, AUTH, DATA, NOOP, QUIT, ETRN, ATRN).

Failures: a peer that sends nonsense -> RemoteProtocolError (from
reply.py); a command sent out of turn -> LocalProtocolError.
"""

from __future__ import annotations

import collections

from edgemail.errors import (
    DeliveryFailure,
    LocalProtocolError,
    PermFail,
    RemoteProtocolError,
    Scope,
    TempFail,
)
from edgemail.smtpc.events import (
    NEED_DATA,
    Atrn,
    Auth,
    AuthLine,
    Banner,
    Capabilities,
    Command,
    Data,
    Ehlo,
    Etrn,
    Helo,
    Lhlo,
    Mail,
    Message,
    Noop,
    Quit,
    Rcpt,
    Response,
    Rset,
    StartTls,
    _Need,
)
from edgemail.smtpc.params import MessageParams, mail_command, rcpt_command
from edgemail.smtpc.reply import Reply, ReplyParser
from edgemail.smtpc.wire import (
    MAX_LINE,
    check_text,
    command_line,
    encode_data,
    has_8bit,
    normalise_lines,
    xtext,
)

__all__ = [
    # the dialogue and its helpers (this module)
    "ClientConnection", "MessageParams", "mail_command", "rcpt_command", "failure",
    "etrn_outcome", "ETRN_OK", "ETRN_DEFERRED", "ETRN_UNSUPPORTED",
    # events.py
    "NEED_DATA", "Banner", "Ehlo", "Helo", "Lhlo", "StartTls", "Auth", "AuthLine", "Mail",
    "Rcpt", "Data", "Message", "Rset", "Noop", "Quit", "Etrn", "Atrn", "Command", "Response",
    "Capabilities",
    # wire.py
    "MAX_LINE", "check_text", "normalise_lines", "encode_data", "has_8bit", "xtext",
]


# -------------------------------------------------------------- the dialogue

class ClientConnection:
    """One client side of one SMTP/LMTP connection, without the socket."""

    def __init__(self, *, lmtp: bool = False) -> None:
        self.lmtp = lmtp
        self.capabilities = Capabilities()
        self.closed = False
        #: a 250 to ATRN came: the bytes after it are the server side's (``handover``)
        self.turned = False
        self._tls_pending = False   # 220 to STARTTLS seen, handshake not finished
        self._hello_due = False     # TLS is up: EHLO (LHLO, HELO) must come first
        self._parser = ReplyParser()
        #: (command, recipient) whose replies are still to come, in order
        self._expect: collections.deque[tuple[Command, str | None]] = collections.deque([(Banner(), None)])
        self._in_data = False       # 354 seen, message not yet sent
        self._accepted: list[str] = []

    # -- what the driver asks
    @property
    def awaiting(self) -> Command | None:
        """The command whose reply comes next (its ``phase`` picks the timeout)."""
        return self._expect[0][0] if self._expect else None

    @property
    def accepted_recipients(self) -> tuple[str, ...]:
        return tuple(self._accepted)

    @property
    def in_data(self) -> bool:
        """The server said 354 and the message has not been sent."""
        return self._in_data

    # -- sending
    def send(self, cmd: Command) -> bytes:
        if self.closed or self.turned:
            raise LocalProtocolError("connection is closed" if self.closed else
                                     "connection was turned around (ATRN)")
        if isinstance(cmd, Message):
            return self._send_message(cmd)
        self._check_turn(cmd)
        wire = (command_line(cmd) + "\r\n").encode("utf-8")
        if isinstance(cmd, (Mail, Rset, Ehlo, Helo, Lhlo)):
            self._accepted = []
        self._hello_due = self._hello_due and not isinstance(cmd, _HELLOS)
        self._expect.append((cmd, None))
        return wire

    def _check_turn(self, cmd: Command) -> None:
        """LocalProtocolError unless ``cmd`` may be sent now."""
        name = type(cmd).__name__.upper()
        if self._in_data or isinstance(cmd, Banner):
            raise LocalProtocolError(f"cannot send {name} now")
        if self._tls_pending:
            raise LocalProtocolError(f"cannot send {name}: the TLS handshake has not finished")
        if self._hello_due and not isinstance(cmd, (*_HELLOS, Quit)):
            raise LocalProtocolError(f"cannot send {name}: EHLO comes first after STARTTLS")
        waiting = next((c for c, _ in self._expect if isinstance(c, _WAIT_FOR_REPLY)), None)
        if waiting is not None:
            what = "the greeting" if isinstance(waiting, Banner) else type(waiting).__name__.upper()
            raise LocalProtocolError(f"cannot send {name} before {what} is answered")

    def _send_message(self, cmd: Message) -> bytes:
        if not self._in_data:
            raise LocalProtocolError("message data sent before a 354 reply to DATA")
        wire = encode_data(cmd.data)
        self._in_data = False
        if self.lmtp:
            self._expect.extend((cmd, rcpt) for rcpt in self._accepted)
        else:
            self._expect.append((cmd, None))
        return wire

    # -- receiving
    def receive_data(self, data: bytes) -> None:
        """What the server sent (b"": it closed).  Parsed by ``next_event``."""
        if self.turned:
            raise LocalProtocolError("connection was turned around (ATRN): bytes go to the server side")
        if not data:
            self.closed = True
            return
        if self._tls_pending:
            raise RemoteProtocolError(_INJECTED)
        self._parser.push(data)

    def next_event(self) -> Response | _Need:
        if self.turned:
            return NEED_DATA
        reply = self._parser.next()
        if reply is None:
            return NEED_DATA
        if not self._expect:
            if reply.code == 421:      # unsolicited "closing" notice
                self.closed = True
                return Response(Quit(), reply)
            raise RemoteProtocolError(f"reply to no command: {reply}")
        cmd, rcpt = self._expect.popleft()
        self._account(cmd, reply)
        if self._tls_pending and self._parser.pending:
            raise RemoteProtocolError(_INJECTED)
        return Response(cmd, reply, rcpt)

    def tls_established(self) -> None:
        """The driver finished the TLS handshake: EHLO must come next (RFC 3207 4.2)."""
        if not self._tls_pending:
            raise LocalProtocolError("TLS established without a 220 reply to STARTTLS")
        self._tls_pending = False
        self._hello_due = True

    def handover(self) -> bytes:
        """After a 250 to ATRN: the bytes that came after it, for the server side."""
        if not self.turned:
            raise LocalProtocolError("handover before a 250 reply to ATRN")
        return self._parser.rest()

    def _account(self, cmd: Command, reply: Reply) -> None:
        if isinstance(cmd, (Ehlo, Lhlo)) and reply.code == 250:
            self.capabilities = Capabilities.from_reply(reply)
        elif isinstance(cmd, Helo) and reply.code == 250:
            self.capabilities = Capabilities()
        elif isinstance(cmd, StartTls) and reply.code == 220:
            self.capabilities = Capabilities()   # forget pre-TLS offers (RFC 3207 4.2)
            self._tls_pending = True
        elif isinstance(cmd, Rcpt) and reply.positive:
            self._accepted.append(cmd.address)
        elif isinstance(cmd, Data):
            self._in_data = reply.code == 354
        elif isinstance(cmd, Atrn) and reply.code == 250:
            self.turned = True
        if reply.code == 421 or isinstance(cmd, Quit):
            self.closed = True


#: commands whose reply must come before anything else is sent (RFC 2920 3.1:
#: they change the dialogue's state; so do the greeting, STARTTLS, AUTH, ETRN, ATRN)
_WAIT_FOR_REPLY = (Banner, Ehlo, Helo, Lhlo, StartTls, Auth, AuthLine, Data, Noop, Quit, Etrn, Atrn)
_HELLOS = (Ehlo, Helo, Lhlo)
_INJECTED = ("sent data after its 220 to STARTTLS, before the TLS handshake "
             "(response injection?): session dropped")


# ------------------------------------------------------------ reading replies

#: where in the dialogue a reply came, for its scope
_STAGE_SCOPE = {"initial": Scope.SITE, "helo": Scope.SITE, "misc": Scope.SITE,
                "mail": Scope.MESSAGE, "rcpt": Scope.RECIPIENT, "datainit": Scope.MESSAGE,
                "datafinal": Scope.MESSAGE, "rset": Scope.SITE, "quit": Scope.SITE}


def failure(cmd: Command, reply: Reply, *, host: str = "") -> DeliveryFailure | None:
    """None for a positive reply; else TempFail/PermFail with the scope of the stage.

    421 always means the site (the server is closing).  A 5xx at the greeting
    or EHLO is treated as temporary for the site, never a bounce: the next
    MX, or the next run, may do better.
    """
    if reply.positive:
        return None
    scope = Scope.SITE if reply.code == 421 else _STAGE_SCOPE[cmd.phase]
    said = f"{host} said: {reply}" if host else str(reply)
    what = f"{type(cmd).__name__.upper()}: {said}"
    if reply.permanent and scope is not Scope.SITE:
        return PermFail(what, scope=scope, dsn=reply.dsn(), reply=str(reply))
    dsn = reply.dsn()
    if reply.permanent:
        dsn = "4" + dsn[1:]
    return TempFail(what, scope=scope, dsn=dsn, reply=str(reply))


#: RFC 1985's replies to ETRN, by what they mean to us
ETRN_OK = frozenset({250, 251, 252, 253})       # a queue run started (251: nothing waiting)
ETRN_DEFERRED = frozenset({458, 459})          # cannot flush now; node not allowed
ETRN_UNSUPPORTED = frozenset({500, 501, 502})  # no ETRN there, or it refused the syntax


def etrn_outcome(code: int) -> str:
    """"ok", "deferred", "unsupported" or "error" (any other code; 0: no reply)."""
    if code in ETRN_OK:
        return "ok"
    if code in ETRN_DEFERRED:
        return "deferred"
    if code in ETRN_UNSUPPORTED:
        return "unsupported"
    return "error"
