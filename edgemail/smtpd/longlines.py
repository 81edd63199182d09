"""smtpd/longlines.py - a message with lines over 998 octets made sendable at accept time.

NAME
    longlines - re-encode what SMTP could not carry (pure core)

DESCRIPTION
    RFC 5321 4.5.3.1.6 and RFC 5322 2.1.1: no line may be longer than 998
    octets (without CRLF).  Cron jobs and scripts write such lines; a
    message holding one used to be accepted and then bounced 5.6.0 at the
    next call.  ``make_sendable(message)`` is applied to every message
    before it is queued (the SMTP listeners: smtpd/data.py; ``sendmail``
    and any local submission: daemon/ops.py, cli/sendmail.py's maildrop),
    as sendmail and Postfix convert at their end.  Accept time rather than
    delivery: the queued file is then what every route (Maildir, LAN relay,
    smart host) gets, its size is what is sent, and a message that cannot
    be made sendable is refused while the client is still there, so nothing
    accepted bounces for a reason known when it was accepted.

    * A message with no line over 998 octets is returned as it is, the same
      object, byte for byte (DKIM signatures stay valid).
    * A header line over 998 octets is folded (RFC 5322 3.2.2: CRLF before a
      space or tab), into lines of at most 78 where it has spaces enough.
    * A body with a long line: the MIME leaf holding it is re-encoded.
      Text (7bit, 8bit, binary or no Content-Transfer-Encoding) becomes
      quoted-printable (RFC 2045 6.7: lines of at most 76, the text
      decodes to the very same bytes); base64 on one long line is wrapped
      into 76-column lines; quoted-printable with long lines is encoded
      again.  The leaf's Content-Transfer-Encoding is set; a message that
      was not MIME gets ``MIME-Version: 1.0`` (and, for 8-bit text with no
      Content-Type, ``text/plain; charset=utf-8``, or ``unknown-8bit``
      (RFC 1428) when it is not UTF-8).
    * A multipart: only the parts with long lines are touched (each part
      on its own, recursively); the other parts, the boundaries and the
      headers stay byte for byte.  A long line in a preamble or epilogue
      (which no reader shows) is broken into 998-octet pieces.
    * message/rfc822 (whose encoding may not be quoted-printable, RFC 2046
      5.2.1): the enclosed message is made sendable the same way.

FAILURES
    ``Unsendable`` (ValueError) for a header line over 998 octets with no
    space or tab to fold at: refused at accept (``554 5.6.0``), never
    accepted to bounce later.

NEVER
    Does I/O, or changes a message that is within the limits.
"""

from __future__ import annotations

import binascii
import re

TYPE_CHECKING = False     # the email package only for a message that has a line too long:
if TYPE_CHECKING:         # every sendmail call runs make_sendable (issue 15 §2)
    from email.message import Message

#: RFC 5321 4.5.3.1.6: 1000 octets with CRLF
MAX_LINE = 998
#: RFC 5322 2.1.1: what a folded header line should stay within
FOLD_AT = 78
_CRLF = b"\r\n"
_WSP = re.compile(rb"[ \t]")


class Unsendable(ValueError):
    """A line no re-encoding can shorten (a header line without a space)."""


def too_long(data: bytes) -> bool:
    """Does DATA hold a line over 998 octets?  (One split: ~1 ms a megabyte.)"""
    if len(data) <= MAX_LINE:
        return False
    lines = data.split(b"\n")
    if max(map(len, lines)) <= MAX_LINE:      # the usual message: no line near the limit
        return False
    return any(len(line) > MAX_LINE and len(line.rstrip(b"\r")) > MAX_LINE
               for line in lines)


def make_sendable(message: bytes) -> bytes:
    """MESSAGE (CRLF line endings) with every line within 998 octets; the
    same object when it already is.  Raises Unsendable."""
    if not too_long(message):
        return message
    head, body = split_entity(message)
    return _entity(head, body, top=True)


def split_entity(entity: bytes) -> tuple[bytes, bytes | None]:
    """(header block with its last CRLF, body after the empty line), or
    (everything, None) when there is no empty line."""
    if entity.startswith(_CRLF):
        return b"", entity[2:]
    end = entity.find(b"\r\n\r\n")
    if end < 0:
        return entity, None
    return entity[:end + 2], entity[end + 4:]


def _join(head: bytes, body: bytes | None) -> bytes:
    return head if body is None else head + _CRLF + body


def _entity(head: bytes, body: bytes | None, *, top: bool) -> bytes:
    if too_long(head):
        head = fold_header(head)
    if body is None or not too_long(body):
        return _join(head, body)
    fields = _parse(head)
    ctype = fields.get_content_type()
    boundary = fields.get_param("boundary") if fields.get_content_maintype() == "multipart" else None
    if isinstance(boundary, str) and boundary:
        new = _multipart(body, boundary.encode("ascii", "replace"))
        if new is not None:
            return _join(head, new)
    if ctype in ("message/rfc822", "message/global"):
        inner_head, inner_body = split_entity(body)
        return _join(head, _entity(inner_head, inner_body, top=False))
    return _leaf(head, body, fields, top=top)


def _parse(head: bytes) -> Message:
    from email.parser import BytesHeaderParser
    from email.policy import compat32
    return BytesHeaderParser(policy=compat32).parsebytes(head + _CRLF)


# ---------------------------------------------------------------- headers

def fold_header(head: bytes) -> bytes:
    """Each header line over 998 octets folded before spaces and tabs."""
    lines = head.split(_CRLF)
    return _CRLF.join(fold_line(line) if len(line) > MAX_LINE else line for line in lines)


def fold_line(line: bytes) -> bytes:
    """One long header line as folded lines (each at most 78 where a space
    allows, never over 998).  Raises Unsendable."""
    pieces, whole = [], len(line)
    while len(line) > FOLD_AT:
        cut = _fold_point(line)
        if cut is None:
            break
        pieces.append(line[:cut])
        line = line[cut:]
    pieces.append(line)
    if any(len(p) > MAX_LINE for p in pieces):
        name = pieces[0].partition(b":")[0][:40].decode("ascii", "replace")
        raise Unsendable(f"header {name}: a line of {whole} octets with no space "
                         f"or tab to fold it at (RFC 5322 allows {MAX_LINE})")
    return _CRLF.join(pieces)


def _fold_point(line: bytes) -> int | None:
    """Where to put CRLF: before the last blank within 78 octets that has
    something other than blanks before it, else the first such blank after."""
    best = None
    for m in _WSP.finditer(line, 1):
        i = m.start()
        if not line[:i].strip():
            continue
        if i > FOLD_AT and best is not None:
            break
        best = i
        if i > FOLD_AT:
            break
    return best


def _set_field(head: bytes, name: str, value: str) -> bytes:
    """HEAD with every NAME field (and its continuation lines) replaced by
    one ``NAME: VALUE`` at the end."""
    out, skipping = [], False
    key = name.lower().encode("ascii") + b":"
    for line in head.split(_CRLF)[:-1] if head.endswith(_CRLF) else head.split(_CRLF):
        if not line or line[:1] in (b" ", b"\t") and skipping:
            continue
        skipping = line.lower().replace(b" ", b"").startswith(key) and b":" in line
        if not skipping:
            out.append(line + _CRLF)
    return b"".join(out) + f"{name}: {value}".encode("ascii") + _CRLF


# ---------------------------------------------------------------- bodies

def _leaf(head: bytes, body: bytes, fields: Message, *, top: bool) -> bytes:
    cte = str(fields.get("content-transfer-encoding", "")).strip().lower()
    if cte == "base64":
        import base64   # here: sendmail imports this module on every call, a long line is rare
        raw = base64.b64decode(re.sub(rb"[^A-Za-z0-9+/=]", b"", body) + b"===")
        return _join(head, base64.encodebytes(raw).replace(b"\n", _CRLF))
    raw = binascii.a2b_qp(body) if cte == "quoted-printable" else body
    encoded = binascii.b2a_qp(raw, quotetabs=False, istext=True, header=False)
    # soft breaks are "=\n" when RAW has no CRLF for b2a_qp to copy
    encoded = encoded.replace(_CRLF, b"\n").replace(b"\n", _CRLF)
    if top and "mime-version" not in fields:
        head = _set_field(head, "MIME-Version", "1.0")
        if "content-type" not in fields and any(b >= 0x80 for b in raw):
            head = _set_field(head, "Content-Type", f"text/plain; charset={_charset(raw)}")
    return _join(_set_field(head, "Content-Transfer-Encoding", "quoted-printable"), encoded)


def _charset(raw: bytes) -> str:
    try:
        raw.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        return "unknown-8bit"


def _multipart(body: bytes, boundary: bytes) -> bytes | None:
    """The multipart BODY with only its long-lined parts re-encoded; None
    when no delimiter line is found (then it is encoded as one leaf)."""
    delim = re.compile(rb"(?:^|(?<=\r\n))--" + re.escape(boundary) + rb"(--)?[ \t]*(?=\r\n|\Z)")
    marks = list(delim.finditer(body))
    if not marks:
        return None
    out = [_hard_wrap(body[:marks[0].start()])]           # the preamble
    for this, after in zip(marks, marks[1:] + [None]):
        out.append(body[this.start():this.end()])
        if this.group(1):                                 # the close delimiter: the epilogue follows
            out.append(_hard_wrap(body[this.end():]))
            break
        start = this.end() + 2
        stop = after.start() - 2 if after is not None else len(body)
        if start > stop:
            out.append(body[this.end():after.start() if after is not None else len(body)])
            continue
        part = body[start:stop]
        if too_long(part):
            part_head, part_body = split_entity(part)
            part = _entity(part_head, part_body, top=False)
        out.append(_CRLF + part + (_CRLF if after is not None else b""))
    return b"".join(out)


def _hard_wrap(text: bytes) -> bytes:
    """A preamble or epilogue (no reader shows them): long lines broken at 998."""
    if not too_long(text):
        return text
    lines = []
    for line in text.split(_CRLF):
        while len(line) > MAX_LINE:
            lines.append(line[:MAX_LINE])
            line = line[MAX_LINE:]
        lines.append(line)
    return _CRLF.join(lines)
