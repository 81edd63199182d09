"""smtpc/events.py - the words of the client dialogue: commands, replies, offers.

Owns: the frozen dataclasses the dialogue (core.py) and its driver
(session.py) pass between them, as h11's _events.py does:
  * the commands, one class a verb (``Banner`` stands for the greeting we
    wait for, ``Message`` for the data after 354; ``Etrn`` and ``Atrn``
    for the ISP's queue, RFC 1985 and RFC 2645), and ``Command``, their
    union;
  * ``Response(command, reply, recipient)``, the event ``next_event``
    returns, and ``NEED_DATA``, what it returns when no reply is complete;
  * ``Capabilities``, what a server offered in its EHLO/LHLO reply.

Never does: encoding (wire.py), deciding what comes next or what a reply
means (core.py), I/O of any kind.

Invariants:
  * every command class names in ``phase`` the sendmail Timeout.* option
    that bounds the wait for its reply (the driver reads it, core.py maps
    it to a failure's scope);
  * AUTH data (``Auth.initial``, ``AuthLine.data``) never appears in a
    repr, so it cannot reach a log line through one;
  * ``Capabilities()`` (nothing offered) is what HELO and a completed
    STARTTLS leave; ``Capabilities.from_reply`` reads unknown keywords as
    nothing and a SIZE without a number as "no limit".

Failures: none of their own; a reply that is not SMTP never gets here
(reply.py raises RemoteProtocolError first).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from edgemail.smtpc.reply import Reply

__all__ = ["NEED_DATA", "Banner", "Ehlo", "Helo", "Lhlo", "StartTls", "Auth", "AuthLine", "Mail",
           "Rcpt", "Data", "Message", "Rset", "Noop", "Quit", "Etrn", "Atrn", "Command",
           "Response", "Capabilities"]


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


@dataclass(frozen=True)
class Etrn:
    """RFC 1985: ask the server to start a queue run for ``argument``
    (``domain``, ``@domain`` or ``#queue``)."""

    argument: str
    phase = "misc"


@dataclass(frozen=True)
class Atrn:
    """RFC 2645 (ODMR): after its 250 the connection is turned around and
    the server's mail for ``domains`` (all of ours when empty) comes to us."""

    domains: tuple[str, ...] = ()
    phase = "misc"


Command = (Banner | Ehlo | Helo | Lhlo | StartTls | Auth | AuthLine | Mail | Rcpt | Data
           | Message | Rset | Noop | Quit | Etrn | Atrn)


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
    etrn: bool = False
    atrn: bool = False

    @classmethod
    def from_reply(cls, reply: Reply) -> "Capabilities":
        kw: dict = {"esmtp": True}
        for line in reply.lines[1:]:
            words = line.split()
            if not words:
                continue
            key, args = words[0].upper(), words[1:]
            if key == "SIZE":
                # isdigit() alone passes "²", which int() refuses: ASCII digits only
                kw["size"] = int(args[0]) if args and args[0].isascii() and args[0].isdigit() else 0
            elif key == "AUTH" or key.startswith("AUTH="):
                kw["auth"] = kw.get("auth", frozenset()) | {a.upper() for a in args}
            elif key in _FLAGS:
                kw[_FLAGS[key]] = True
        return cls(**kw)


_FLAGS = {"PIPELINING": "pipelining", "8BITMIME": "eightbitmime", "STARTTLS": "starttls",
          "DSN": "dsn", "ENHANCEDSTATUSCODES": "enhancedstatuscodes", "SMTPUTF8": "smtputf8",
          "ETRN": "etrn", "ATRN": "atrn"}
