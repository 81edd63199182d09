"""smtpc/wire.py - what goes on the wire: command lines and message data as bytes.

Owns: encoding for the dialogue (core.py): ``command_line`` (a command ->
its line, without CRLF), ``encode_data`` (message data -> the DATA bytes
up to and including the final dot), the checks both make
(``check_text``), and the small encodings the MAIL/RCPT builders use
(``xtext`` for ENVID/ORCPT, ``has_8bit`` for BODY=8BITMIME), and the
grammar of ETRN and ATRN arguments (``is_etrn_argument``, ``is_domain``).

Never does: decide when a command may be sent (core.py), I/O, logging.

Invariants:
  * no envelope address or parameter containing CR, LF, NUL or any other
    control character is ever encoded: ``command_line`` raises
    LocalProtocolError instead (so does an address with '<' or '>', or
    over the parser's length limits - address.check_lengths: a queue file
    that no submission checked - a parameter with a space, an empty
    recipient);
  * message data goes out normalised, then dot-stuffed (``encode_data``):
    CRLF stays, every bare CR and bare LF becomes CRLF, NUL bytes are
    removed (RFC 5321 forbids them; a mail is not bounced for carrying one),
    every line that starts with "." gets a second one, and the data ends
    with CRLF "." CRLF.  Nothing sent can end DATA early at a lenient
    receiver;
  * ETRN goes out only with an RFC 1985 argument (``domain``, ``@domain``,
    ``#queue``), ATRN only with domains (RFC 2645), so no argument can
    carry a second command;
  * no line on the wire is longer than 998 octets (MAX_LINE), counting the
    transparency dot (stricter than RFC 5321 4.5.3.1.6).  A longer line
    cannot be folded without changing the message, and re-encoding it
    (quoted-printable) would break signatures and MIME structure: the
    message fails permanently, "5.6.0 line too long".

Failures: LocalProtocolError (a value we must not send; nothing is
encoded), PermFail 5.6.0 scope MESSAGE (a line too long).
"""

from __future__ import annotations

import re

from edgemail.address import AddressError, check_lengths
from edgemail.errors import LocalProtocolError, PermFail, Scope
from edgemail.smtpc.events import (
    Atrn,
    Auth,
    AuthLine,
    Command,
    Data,
    Ehlo,
    Etrn,
    Helo,
    Lhlo,
    Mail,
    Noop,
    Quit,
    Rcpt,
    Rset,
    StartTls,
)

__all__ = ["MAX_LINE", "check_text", "normalise_lines", "encode_data", "has_8bit", "xtext",
           "command_line", "is_domain", "is_etrn_argument"]

#: RFC 5321 4.5.3.1.6: 1000 octets with CRLF
MAX_LINE = 998

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_QUEUE = re.compile(r"#[\x21-\x7e]{1,64}")


def check_text(what: str, value: str) -> None:
    """Refuse CR, LF, NUL and every other control character (LocalProtocolError)."""
    for ch in value:
        if ord(ch) < 32 or ord(ch) == 127:
            raise LocalProtocolError(f"{what} contains control character {ch!r}: {value!r}")
    if not what.endswith("address"):
        return
    if any(c in value for c in "<>"):
        raise LocalProtocolError(f"{what} contains '<' or '>': {value!r}")
    try:
        check_lengths(value)        # a queue file no submission checked (written by hand, an old version)
    except AddressError as exc:
        raise LocalProtocolError(f"{what} not sent: {exc}: {value[:60]!r}...") from None


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


def is_domain(name: str) -> bool:
    """A host name of LDH labels (a trailing dot allowed), at most 253 octets."""
    return len(name) <= 253 and _DOMAIN.fullmatch(name) is not None


def is_etrn_argument(arg: str) -> bool:
    """One of RFC 1985's forms: ``domain``, ``@domain`` (and subdomains), ``#queue``."""
    if _QUEUE.fullmatch(arg):
        return True
    return is_domain(arg[1:] if arg.startswith("@") else arg)


def command_line(cmd: Command) -> str:
    """The command's line, without CRLF; LocalProtocolError for what must not be sent."""
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
        case Etrn(arg):
            if not is_etrn_argument(arg):
                raise LocalProtocolError(f"ETRN argument {arg!r}: want domain, @domain or #queue")
            return f"ETRN {arg}"
        case Atrn(domains):
            bad = [d for d in domains if not is_domain(d)]
            if bad:
                raise LocalProtocolError(f"ATRN domain {bad[0]!r}: not a domain name")
            return " ".join(["ATRN", ",".join(domains)]) if domains else "ATRN"
    return {Data: "DATA", Rset: "RSET", Noop: "NOOP", Quit: "QUIT"}[type(cmd)]


def _checked(params: tuple[str, ...]) -> tuple[str, ...]:
    for p in params:
        check_text("parameter", p)
        if " " in p:
            raise LocalProtocolError(f"parameter contains a space: {p!r}")
    return params
