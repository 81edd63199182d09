"""core.py - the SMTP/LMTP client dialogue, sans I/O (h11 style).

Owns: what we say to a server and what its replies mean.  ``send(command)``
returns the bytes to write; ``receive_data(bytes)`` takes what the server
sent; ``next_event()`` returns ``Response(command, reply)`` events in the
order the commands were sent (RFC 2920: replies come back in order, so a
pipelined group is just several ``send`` calls before the first read), or
``NEED_DATA``.  Pure helpers build MAIL/RCPT commands from what the server
offers (SIZE, 8BITMIME, SMTPUTF8, DSN) and turn replies into
``TempFail``/``PermFail`` with a scope.

Never does: sockets, timeouts, TLS, clocks, logging (session.py does).

Invariants:
  * no envelope address or parameter containing CR, LF, NUL or any other
    control character is ever encoded: ``send`` raises LocalProtocolError
    before returning a single byte;
  * message data goes out normalised, then dot-stuffed (``encode_data``):
    CRLF stays, every bare CR and bare LF becomes CRLF, NUL bytes are
    removed (RFC 5321 forbids them; a mail is not bounced for carrying one),
    every line that starts with "." gets a second one, and the data ends
    with CRLF "." CRLF.  Nothing sent can end DATA early at a lenient
    receiver;
  * no line on the wire is longer than 998 octets, counting the
    transparency dot (stricter than RFC 5321 4.5.3.1.6).  A longer line
    cannot be folded without changing the message, and re-encoding it
    (quoted-printable) would break signatures and MIME structure: the
    message fails permanently, "5.6.0 line too long", before MAIL is sent;
  * an 8-bit body is never sent to a server that does not offer 8BITMIME
    (PermFail 5.6.3, rather than corrupting it); a message larger than the
    server's SIZE fails for that server (PermFail 5.3.4) before MAIL;
  * DSN parameters (RET, ENVID, NOTIFY, ORCPT) are passed on only when the
    server offers DSN;
  * LMTP (``lmtp=True``): LHLO instead of EHLO, and after the final dot one
    reply per accepted recipient, in RCPT order (RFC 2033).

Failures: a peer that sends nonsense -> RemoteProtocolError (from
reply.py); a command sent out of turn -> LocalProtocolError.
"""

from __future__ import annotations

import collections
import enum
from dataclasses import dataclass, field

from edgemail.envelope import Recipient
from edgemail.errors import (DeliveryFailure, LocalProtocolError, PermFail,
                             RemoteProtocolError, Scope, TempFail)
from edgemail.smtpc.reply import Reply, ReplyParser

#: RFC 5321 4.5.3.1.6: 1000 octets with CRLF
MAX_LINE = 998


class _Need(enum.Enum):
    NEED_DATA = "NEED_DATA"


NEED_DATA = _Need.NEED_DATA


# ------------------------------------------------------------------ commands
# ``phase`` names the sendmail Timeout.* option that bounds the wait for the reply.

@dataclass(frozen=True)
class Banner:
    phase = "initial"


@dataclass(frozen=True)
class Ehlo:
    name: str
    phase = "helo"


@dataclass(frozen=True)
class Helo:
    name: str
    phase = "helo"


@dataclass(frozen=True)
class Lhlo:
    name: str
    phase = "helo"


@dataclass(frozen=True)
class StartTls:
    phase = "misc"


@dataclass(frozen=True)
class Auth:
    """AUTH MECH [initial-response]; ``initial`` is base64 text.  Never logged."""

    mechanism: str
    initial: str | None = field(default=None, repr=False)
    phase = "misc"


@dataclass(frozen=True)
class AuthLine:
    """A base64 line answering a 334 challenge.  Never logged."""

    data: str = field(repr=False)
    phase = "misc"


@dataclass(frozen=True)
class Mail:
    sender: str
    params: tuple[str, ...] = ()
    phase = "mail"


@dataclass(frozen=True)
class Rcpt:
    address: str
    params: tuple[str, ...] = ()
    phase = "rcpt"


@dataclass(frozen=True)
class Data:
    phase = "datainit"


@dataclass(frozen=True)
class Message:
    """The message after 354; ``data`` as queued (CRLF), encoded by ``send``."""

    data: bytes = field(repr=False)
    phase = "datafinal"


@dataclass(frozen=True)
class Rset:
    phase = "rset"


@dataclass(frozen=True)
class Noop:
    phase = "misc"


@dataclass(frozen=True)
class Quit:
    phase = "quit"


Command = (Banner | Ehlo | Helo | Lhlo | StartTls | Auth | AuthLine | Mail | Rcpt | Data
           | Message | Rset | Noop | Quit)


@dataclass(frozen=True)
class Response:
    """The server's reply to ``command``.  For LMTP's final dot, one per
    accepted recipient with ``recipient`` set."""

    command: Command
    reply: Reply
    recipient: str | None = None


# -------------------------------------------------------------- capabilities

@dataclass(frozen=True)
class Capabilities:
    """What the server offered in its EHLO/LHLO reply (nothing after HELO)."""

    esmtp: bool = False
    #: SIZE limit in bytes; 0 = offered without a limit; None = not offered
    size: int | None = None
    pipelining: bool = False
    eightbitmime: bool = False
    starttls: bool = False
    auth: frozenset[str] = frozenset()
    dsn: bool = False
    enhancedstatuscodes: bool = False
    smtputf8: bool = False

    @classmethod
    def from_reply(cls, reply: Reply) -> "Capabilities":
        kw: dict = {"esmtp": True}
        for line in reply.lines[1:]:
            words = line.split()
            if not words:
                continue
            key, args = words[0].upper(), words[1:]
            if key == "SIZE":
                kw["size"] = int(args[0]) if args and args[0].isdigit() else 0
            elif key == "AUTH" or key.startswith("AUTH="):
                kw["auth"] = kw.get("auth", frozenset()) | {a.upper() for a in args}
            elif key in _FLAGS:
                kw[_FLAGS[key]] = True
        return cls(**kw)


_FLAGS = {"PIPELINING": "pipelining", "8BITMIME": "eightbitmime", "STARTTLS": "starttls",
          "DSN": "dsn", "ENHANCEDSTATUSCODES": "enhancedstatuscodes", "SMTPUTF8": "smtputf8"}


# -------------------------------------------------------------- wire encoding

def check_text(what: str, value: str) -> None:
    """Refuse CR, LF, NUL and every other control character (LocalProtocolError)."""
    for ch in value:
        if ord(ch) < 32 or ord(ch) == 127:
            raise LocalProtocolError(f"{what} contains control character {ch!r}: {value!r}")
    if what.endswith("address") and any(c in value for c in "<>"):
        raise LocalProtocolError(f"{what} contains '<' or '>': {value!r}")


def normalise_lines(data: bytes) -> list[bytes]:
    """Split into lines: CRLF, bare CR and bare LF all end a line; NUL removed."""
    text = data.replace(b"\0", b"").replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    lines = text.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()          # data ended with a line ending
    return lines


def encode_data(data: bytes) -> bytes:
    """Message data -> DATA wire bytes (normalised, dot-stuffed, CRLF.CRLF).

    Raises PermFail 5.6.0 when a line would exceed 998 octets on the wire.
    """
    out = []
    for n, line in enumerate(normalise_lines(data), 1):
        if line.startswith(b"."):
            line = b"." + line
        if len(line) > MAX_LINE:
            raise PermFail(f"message line {n} is {len(line)} octets on the wire; "
                           f"SMTP allows {MAX_LINE}: line too long",
                           scope=Scope.MESSAGE, dsn="5.6.0")
        out.append(line)
    out.append(b".")
    return b"\r\n".join(out) + b"\r\n"


def has_8bit(data: bytes) -> bool:
    return any(b >= 0x80 for b in data)


def xtext(value: str) -> str:
    """RFC 3461 xtext: keep '!'..'~' except '+' and '='; hex-encode the rest."""
    return "".join(c if 33 <= ord(c) <= 126 and c not in "+=" else
                   "".join(f"+{b:02X}" for b in c.encode("utf-8")) for c in value)


def _command_line(cmd: Command) -> str:
    match cmd:
        case Ehlo(name) | Helo(name) | Lhlo(name):
            check_text("host name", name)
            return f"{type(cmd).__name__.upper()} {name}"
        case Mail(sender, params):
            check_text("sender address", sender)
            return " ".join([f"MAIL FROM:<{sender}>", *_checked(params)])
        case Rcpt(address, params):
            if not address:
                raise LocalProtocolError("empty recipient address")
            check_text("recipient address", address)
            return " ".join([f"RCPT TO:<{address}>", *_checked(params)])
        case Auth(mechanism, initial):
            check_text("AUTH mechanism", mechanism)
            check_text("AUTH data", initial or "")
            return f"AUTH {mechanism} {initial}" if initial is not None else f"AUTH {mechanism}"
        case AuthLine(data):
            check_text("AUTH data", data)
            return data
        case StartTls():
            return "STARTTLS"
    return {Data: "DATA", Rset: "RSET", Noop: "NOOP", Quit: "QUIT"}[type(cmd)]


def _checked(params: tuple[str, ...]) -> tuple[str, ...]:
    for p in params:
        check_text("parameter", p)
        if " " in p:
            raise LocalProtocolError(f"parameter contains a space: {p!r}")
    return params


# -------------------------------------------------------------- the dialogue

class ClientConnection:
    """One client side of one SMTP/LMTP connection, without the socket."""

    def __init__(self, *, lmtp: bool = False) -> None:
        self.lmtp = lmtp
        self.capabilities = Capabilities()
        self.closed = False
        self._parser = ReplyParser()
        self._replies: collections.deque[Reply] = collections.deque()
        #: (command, recipient) whose replies are still to come, in order
        self._expect: collections.deque[tuple[Command, str | None]] = collections.deque([(Banner(), None)])
        self._in_data = False       # 354 seen, message not yet sent
        self._data_pending = False  # DATA sent, reply not yet seen
        self._accepted: list[str] = []

    # -- what the driver asks
    @property
    def awaiting(self) -> Command | None:
        """The command whose reply comes next (its ``phase`` picks the timeout)."""
        return self._expect[0][0] if self._expect else None

    @property
    def accepted_recipients(self) -> tuple[str, ...]:
        return tuple(self._accepted)

    # -- sending
    def send(self, cmd: Command) -> bytes:
        if self.closed:
            raise LocalProtocolError("connection is closed")
        if isinstance(cmd, Message):
            return self._send_message(cmd)
        if self._in_data or isinstance(cmd, Banner):
            raise LocalProtocolError(f"cannot send {type(cmd).__name__} now")
        wire = (_command_line(cmd) + "\r\n").encode("utf-8")
        if isinstance(cmd, (Mail, Rset, Ehlo, Helo, Lhlo)):
            self._accepted = []
        if isinstance(cmd, Data):
            self._data_pending = True
        self._expect.append((cmd, None))
        return wire

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
        if not data:
            self.closed = True
            return
        self._replies.extend(self._parser.feed(data))

    def next_event(self) -> Response | _Need:
        if not self._replies:
            return NEED_DATA
        reply = self._replies.popleft()
        if not self._expect:
            if reply.code == 421:      # unsolicited "closing" notice
                self.closed = True
                return Response(Quit(), reply)
            raise RemoteProtocolError(f"reply to no command: {reply}")
        cmd, rcpt = self._expect.popleft()
        self._account(cmd, reply)
        return Response(cmd, reply, rcpt)

    def _account(self, cmd: Command, reply: Reply) -> None:
        if isinstance(cmd, (Ehlo, Lhlo)) and reply.code == 250:
            self.capabilities = Capabilities.from_reply(reply)
        elif isinstance(cmd, (Helo, StartTls)) and reply.code in (220, 250):
            self.capabilities = Capabilities()   # forget pre-TLS offers (RFC 3207 4.2)
        elif isinstance(cmd, Rcpt) and reply.positive:
            self._accepted.append(cmd.address)
        elif isinstance(cmd, Data):
            self._data_pending = False
            self._in_data = reply.code == 354
        if reply.code == 421 or isinstance(cmd, Quit):
            self.closed = True


# ---------------------------------------------------------- building commands

@dataclass(frozen=True)
class MessageParams:
    """The envelope's per-message ESMTP parameters (from Envelope)."""

    ret: str | None = None
    envid: str | None = None
    body: str | None = None
    smtputf8: bool = False

    @classmethod
    def from_envelope(cls, env) -> "MessageParams":
        return cls(ret=env.ret, envid=env.envid, body=env.body, smtputf8=env.smtputf8)


def mail_command(caps: Capabilities, sender: str, data: bytes, params: MessageParams,
                 recipients: tuple[Recipient, ...] = ()) -> Mail:
    """MAIL FROM with the parameters this server understands.

    Raises PermFail (scope MESSAGE) when the message cannot go to this server
    unchanged: too big for its SIZE, 8-bit body without 8BITMIME, non-ASCII
    addresses without SMTPUTF8.
    """
    out: list[str] = []
    size = len(data)
    if caps.size is not None:
        if caps.size and size > caps.size:
            raise PermFail(f"message size {size} exceeds the server's SIZE limit {caps.size}",
                           scope=Scope.MESSAGE, dsn="5.3.4")
        out.append(f"SIZE={size}")
    if has_8bit(data) or params.body == "8BITMIME":
        if caps.eightbitmime:
            out.append("BODY=8BITMIME")
        elif has_8bit(data):
            raise PermFail("message has an 8-bit body and the server does not offer 8BITMIME; "
                           "not sent rather than corrupted", scope=Scope.MESSAGE, dsn="5.6.3")
    addresses = [sender, *(r.address for r in recipients)]
    if params.smtputf8 or not all(a.isascii() for a in addresses):
        if caps.smtputf8:
            out.append("SMTPUTF8")
        elif not all(a.isascii() for a in addresses):
            raise PermFail("non-ASCII address and the server does not offer SMTPUTF8",
                           scope=Scope.MESSAGE, dsn="5.6.7")
    if caps.dsn:
        if params.ret:
            out.append(f"RET={params.ret.upper()}")
        if params.envid:
            out.append(f"ENVID={xtext(params.envid)}")
    return Mail(sender, tuple(out))


def rcpt_command(caps: Capabilities, rcpt: Recipient | str) -> Rcpt:
    if isinstance(rcpt, str):
        return Rcpt(rcpt)
    params: list[str] = []
    if caps.dsn:
        if rcpt.notify:
            params.append("NOTIFY=" + ",".join(sorted(n.upper() for n in rcpt.notify)))
        if rcpt.orcpt:
            kind, _, addr = rcpt.orcpt.partition(";")
            params.append(f"ORCPT={kind};{xtext(addr)}" if addr else f"ORCPT={xtext(kind)}")
    return Rcpt(rcpt.address, tuple(params))


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
