"""cli/message.py - the message ``sendmail`` submits: stdin's bytes made
into a queueable message and its recipients.

Owns: ``prepare(raw, args, sender=, domain=, hostname=, now=) ->
Prepared`` (data with CRLF line ends, recipients, Message-ID, precedence
class) and its parts: ``read_lines`` (input hygiene), ``split_header``,
``qualify`` (one address), ``header_recipients`` (``-t``), and
``strip_unix_from`` (a first line ``From addr date``, an mbox separator:
removed as sendmail removes it; root's message without -f takes its
sender from it, sendmail.py decides).

Input hygiene (DESIGN.md): LF and CRLF line ends become CRLF, a bare CR
becomes a space, NUL bytes are dropped.  Without ``-i`` a line holding only
``.`` ends the input and a leading ``..`` becomes ``.`` (sendmail's
collect()).  Missing Date:, Message-ID: and From: headers are added (From:
from ``-F``/``-f`` or the login name); unqualified addresses get the first
local domain, in the envelope and in the address header fields alike
(address.py ``parse_address(domain=)`` and headers.py ``qualify_header``: one rule).  The trace line (``Received: (from USER@localhost) by
HOSTNAME (edgemail); DATE``) is not made here: the daemon's submit op
prepends it with the user the kernel names (daemon/ops.py
``received_local``), and sendmail.py does the same for a message it
leaves in the maildrop.  Under ``-t`` the recipients are the To:/Cc:/Bcc: addresses
(Resent-* when present) minus those on the command line (sendmail's
semantics), and Bcc: lines are removed.

Never: reads stdin, a config file or the clock, or talks to the daemon: the
caller passes the bytes, the domain, the host name and ``now`` (only a new
Message-ID draws on the pid and os.urandom).  Header lines are kept as they
came (folded lines stay folded); the body is not looked into.

Under ``-t`` a recipient field (To:, Cc:, Bcc:, Resent-*) holding a bare CR,
or a bare LF in a header with CRLF line ends elsewhere, is refused
(``bare_line_end``; DataError, EX_DATAERR 65: the data is malformed, not
the command line), rather than letting hygiene turn the rest of that
header's text into recipients or new fields.

Fails: ``DataError`` for an address that does not parse or a recipient
field with a bare CR/LF (EX_DATAERR), ``UsageError`` when no recipient is
left (EX_USAGE).
"""

from __future__ import annotations

import os
import re
import time

from edgemail.cli.base import DataError, UsageError
from edgemail.cli.flags import SendmailArgs


class Prepared:
    """What ``prepare`` makes: the message (CRLF line ends, headers added),
    its recipients, its Message-ID without the <>, its precedence class
    (from the Precedence: value, asked only for the maildrop: the daemon
    derives it itself).  Not a dataclass: dataclasses and envelope.py's cost
    every sendmail call milliseconds."""

    __slots__ = ("data", "recipients", "msgid", "precedence_value")

    def __init__(self, data: bytes, recipients: tuple[str, ...], msgid: str,
                 precedence_value: str | None) -> None:
        self.data, self.recipients, self.msgid = data, recipients, msgid
        self.precedence_value = precedence_value

    @property
    def precedence(self) -> int:
        from edgemail.envelope import precedence_class
        return precedence_class(self.precedence_value)


def read_lines(raw: bytes, *, ignore_dots: bool) -> list[bytes]:
    """stdin bytes -> lines without line ends (CR/LF hygiene, the lone-dot end)."""
    raw = raw.replace(b"\0", b"")
    lines = raw.replace(b"\r\n", b"\n").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for line in lines:
        line = line.replace(b"\r", b" ")
        if not ignore_dots and line[:1] == b".":
            if line == b".":
                break
            if line[:2] == b"..":
                line = line[1:]
        out.append(line)
    return out


HEADER_NAME = re.compile(rb"[!-9;-~]+:")


def strip_unix_from(raw: bytes) -> tuple[bytes, str | None]:
    """An mbox separator as the first line (``From addr date``), as a
    message saved from a mailbox has: removed (sendmail's collect() does);
    its address, or None when there is no such line."""
    if not raw.startswith(b"From "):
        return raw, None
    first, nl, rest = raw.partition(b"\n")
    words = first[5:].decode("utf-8", "replace").split()
    return rest if nl else b"", (words[0] if words else None)


def split_header(lines: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """Header lines (continuations folded into their field) and body lines."""
    fields: list[bytes] = []
    for n, line in enumerate(lines):
        if line == b"":
            return fields, lines[n + 1:]
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b"\r\n" + line
        elif HEADER_NAME.match(line):
            fields.append(line)
        else:
            return fields, lines[n:]
    return fields, []


def _name(field_: bytes) -> str:
    return field_.split(b":", 1)[0].decode("ascii", "replace").strip().lower()


def _value(field_: bytes) -> str:
    return field_.split(b":", 1)[1].decode("utf-8", "replace").replace("\r\n", "").strip()


def qualify(addr: str, domain: str) -> str:
    """Parse one address; a bare local part gets `domain`.  Raises DataError."""
    from edgemail.address import (  # lazily: mailq does not need it
        AddressError,
        parse_address,
    )
    addr = addr.strip()
    if addr.endswith(">") and "<" in addr:       # "<a@x>", "Name <a@x>" (sendmail takes both)
        addr = addr[addr.rindex("<") + 1:-1]
    try:
        return str(parse_address(addr, domain=domain))
    except AddressError as exc:
        raise DataError(f"bad address {addr!r}: {exc}") from None


def header_recipients(fields: list[bytes]) -> list[str]:
    """To/Cc/Bcc addresses (Resent-To/Cc/Bcc instead when any Resent- header exists)."""
    names = {_name(f) for f in fields}
    resent = any(n.startswith("resent-") for n in names)
    want = {"resent-to", "resent-cc", "resent-bcc"} if resent else {"to", "cc", "bcc"}
    values = [_value(f) for f in fields if _name(f) in want]
    from edgemail.cli.headers import header_addresses
    return [addr for _, addr in header_addresses(values) if addr]


#: the fields ``-t`` takes recipients from
RECIPIENT_FIELDS = frozenset({"to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc"})


def bare_line_end(raw: bytes) -> tuple[str, str] | None:
    """(field name, "bare CR" or "bare LF") for the first recipient field of
    the header that held a bare CR, or a bare LF when other lines of the
    header end in CRLF (there a bare LF is no line end: hygiene would make it one
    and turn the rest of the field into a new line, or a new field after
    it); None if there is none.  The field a bare-LF line ends and the field
    its next line starts are both tainted."""
    pieces = raw.replace(b"\0", b"").split(b"\n")
    end = next((n for n, p in enumerate(pieces) if p in (b"", b"\r")), len(pieces))
    crlf = any(p.endswith(b"\r") for p in pieces[:min(end, len(pieces) - 1)])
    name, carried = "", ""
    for n, piece in enumerate(pieces):
        ended = n < len(pieces) - 1                 # this piece ended in LF
        line = piece[:-1] if ended and piece.endswith(b"\r") else piece
        if line == b"":
            return None
        if line[:1] not in (b" ", b"\t"):
            if not HEADER_NAME.match(line):
                return None
            name = _name(line)
        taint = carried or ("bare CR" if b"\r" in line else "")
        carried = "bare LF" if crlf and ended and not piece.endswith(b"\r") else ""
        taint = taint or carried
        if taint and name in RECIPIENT_FIELDS:
            return name, taint
    return None


def prepare(raw: bytes, a: SendmailArgs, *, sender: str, domain: str, hostname: str,
            now: float) -> Prepared:
    """Build the message to queue and its recipients.  Raises DataError/UsageError."""
    from edgemail.cli.headers import qualify_header   # lazily: mailq does not need it
    if a.extract and (bad := bare_line_end(raw)):
        raise DataError(f"{bad[0].title()}: header holds a {bad[1]}: not taking recipients from it "
                        "(-t); fix the line ends (CRLF or LF throughout)")
    fields, body = split_header(read_lines(raw, ignore_dots=a.ignore_dots))
    fields = [qualify_header(f, domain) for f in fields]
    rcpts, fields = _recipients(fields, a, domain)
    added, msgid = _missing_headers(fields, a, sender=sender, hostname=hostname, now=now)
    precedence = next((_value(f) for f in fields if _name(f) == "precedence"), None)
    data = b"\r\n".join(fields + added + [b""] + body) + b"\r\n"
    return Prepared(data, tuple(rcpts), msgid.strip("<>"), precedence)


def _recipients(fields: list[bytes], a: SendmailArgs, domain: str) -> tuple[list[str], list[bytes]]:
    """The recipients, and the header fields to keep (under -t without Bcc:)."""
    cmdline = [qualify(r, domain) for arg in a.recipients for r in _split_list(arg)]
    if a.extract:
        drop = {r.lower() for r in cmdline}
        found = [qualify(r, domain) for r in header_recipients(fields)]
        rcpts = [r for r in dict.fromkeys(found) if r.lower() not in drop]
        fields = [f for f in fields if _name(f) not in ("bcc", "resent-bcc")]
    else:
        rcpts = list(dict.fromkeys(cmdline))
    if not rcpts:
        raise UsageError("no recipients: give addresses or use -t with To:/Cc:/Bcc: headers")
    return rcpts, fields


def _missing_headers(fields: list[bytes], a: SendmailArgs, *, sender: str, hostname: str,
                     now: float) -> tuple[list[bytes], str]:
    """From:, Date: and Message-ID: lines for those FIELDS lack; and the Message-ID."""
    from edgemail.cli.headers import format_address, rfc5322_date
    names = {_name(f) for f in fields}
    added = []
    if "from" not in names:
        added.append(b"From: " + (format_address(a.full_name, sender) if a.full_name else sender).encode())
    if "date" not in names:
        added.append(b"Date: " + rfc5322_date(now).encode())
    msgid = next((_value(f) for f in fields if _name(f) == "message-id"), "")
    if not msgid:
        msgid = f"<{time.strftime('%Y%m%d%H%M%S', time.gmtime(now))}.{os.getpid()}.{os.urandom(4).hex()}@{hostname}>"
        added.append(b"Message-ID: " + msgid.encode())
    return added, msgid


#: a comma outside "quotes" and <angle brackets> separates two addresses
_LIST_ITEM = re.compile(r'(?:"(?:[^"\\]|\\.)*"|<[^>]*>|[^,"<])+')


def _split_list(arg: str) -> list[str]:
    """sendmail accepts "a@x, b@y" as one argument ('"Smith, J" <j@x>' is one address)."""
    return [x for x in (m.group().strip() for m in _LIST_ITEM.finditer(arg)) if x]
