"""smtpd/data.py - the DATA phase without I/O: end of data, transparency,
line-ending hygiene, size; and the header facts smtpd needs.

Owns:
  * ``DataCollector``: fed the bytes read after ``354`` in any chunking, it
    finds the end of DATA, removes dot-stuffing, enforces the size limit and
    the line-ending rules below, and returns the message to queue.
  * ``summarise()``: Precedence, Message-ID and the number of Received
    headers of a message; ``received_header()``: the line we prepend.

Rules (DESIGN.md "Input hygiene"; table tests in tests/core/test_smtpd_data.py):
  * A *strict* collector (Internet/ISP-facing listener): DATA ends only at
    CRLF "." CRLF; ``\\n.\\n``, ``\\r.\\r``, ``\\n.\\r\\n`` and ``\\r\\n.\\n`` do
    not end it (no SMTP smuggling through us), and a message holding a
    bare CR, a bare LF or a NUL anywhere is refused: ``550 5.6.0``
    (Postfix ``smtpd_forbid_bare_newline = reject``), naming the first
    offence.  Dot-stuffing is removed at the start of every CRLF line.
  * A lenient collector (LAN listener, where a bare LF already ends a
    command line) takes a bare LF as a line end everywhere, as sendmail
    does outside its strict mode: every bare LF is read as CRLF before
    anything else, so ``\\n.\\n``, ``\\r\\n.\\n`` and ``\\n.\\r\\n`` end DATA (a
    client that writes LF line ends is answered instead of hanging, QA-4),
    and dot-stuffing is removed at the start of every line.  The cost: an
    unnormalising relay on the LAN could pass a ``\\n.\\n`` smuggled by its
    own sender; what follows it is read as that trusted client's commands.
    A bare CR becomes a space and a NUL is removed (as ``sendmail -t``
    input is normalised).
  * Either way the queued message has CRLF line endings only and no NUL.
  * A line over 998 octets is made sendable at the end of DATA
    (smtpd/longlines.py: the part re-encoded quoted-printable, a header
    folded); a message within the limits is queued byte for byte.  A header
    line that cannot be folded: ``554 5.6.0``.
  * Size counts the bytes after dot-removal; past ``limit`` the data is
    dropped as it arrives and the reply is ``552 5.3.4`` once the end of
    DATA is seen (RFC 5321 4.2.5: the reply waits for the end).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from email.utils import formatdate

from edgemail.smtpd.longlines import Unsendable, make_sendable

_BAD = re.compile(rb"[\r\n\x00]")
_BARE_LF = re.compile(rb"(?<!\r)\n")
_HEADER_NAME = re.compile(rb"([!-9;-~]+)[ \t]*:")


class DataCollector:
    """Collects one message.  ``feed()`` until it returns True; then read
    ``refusal`` (a reply, or None) and ``message()``.

    Complete lines are handled a block at a time (C-speed searches and
    replaces over the whole block); a block holding a bare CR, bare LF or
    NUL, and the pieces of an over-long line, go line by line."""

    def __init__(self, *, strict: bool, limit: int) -> None:
        self.strict = strict
        self.limit = limit
        self.size = 0
        self.refusal: str | None = None
        self.leftover = b""
        #: the message so far: CRLF-terminated lines (a too-long line's pieces without)
        self._parts: list[bytes] = []
        self._buf = bytearray()
        #: the buffered bytes continue a line begun earlier (too long to hold)
        self._continued = False
        #: lenient: the last byte fed was a CR (a LF starting the next chunk is no bare LF)
        self._cr_last = False

    def feed(self, chunk: bytes) -> bool:
        """Take bytes read from the client; True once the end of DATA was seen.
        Bytes after the end (pipelined commands) are kept in ``leftover``."""
        buf = self._buf
        if not self.strict:
            chunk = self._bare_lf_as_crlf(chunk)
        buf += chunk
        if self._continued and (first := buf.find(b"\r\n")) >= 0:
            self._line(bytes(buf[:first]), True)
            self._continued = False
            del buf[:first + 2]
        if not self._continued:
            if buf.startswith(b".\r\n"):
                end = 0
            elif (end := buf.find(b"\r\n.\r\n")) >= 0:
                end += 2
            if end >= 0:
                self._block(bytes(buf[:end]))
                self.leftover = bytes(buf[end + 3:])
                buf.clear()
                self._finish()
                return True
            if (last := buf.rfind(b"\r\n")) >= 0:
                self._block(bytes(buf[:last + 2]))
                del buf[:last + 2]
        if len(buf) > self.limit:   # a line longer than any message we take
            keep = 1 if buf.endswith(b"\r") else 0
            self._line(bytes(buf[:len(buf) - keep]), self._continued, partial=True)
            del buf[:len(buf) - keep]
            self._continued = True
        return False

    def _bare_lf_as_crlf(self, chunk: bytes) -> bytes:
        """Lenient: every bare LF read as CRLF (a CR ending the previous chunk counts)."""
        if chunk.count(b"\n") != chunk.count(b"\r\n"):
            head = b"\n" if chunk[:1] == b"\n" and self._cr_last else b""
            chunk = head + _BARE_LF.sub(b"\r\n", chunk[len(head):])
        self._cr_last = chunk[-1:] == b"\r"
        return chunk

    def _block(self, block: bytes) -> None:
        """Complete lines, CRLF-terminated, the first starting a line."""
        text = block[1:] if block[:1] == b"." else block
        text = text.replace(b"\r\n.", b"\r\n")          # dot-stuffing, at CRLF line starts only
        if b"\x00" in text or not self._crlf_only(text):
            for line in block.split(b"\r\n")[:-1]:     # a bare CR/LF or NUL: the careful way
                self._line(line, False)
            return
        self.size += len(text)
        if self.refusal:
            return
        if self.size > self.limit:
            self._refuse(f"552 5.3.4 Message size exceeds fixed maximum message size ({self.limit})")
            return
        self._parts.append(text)

    def _crlf_only(self, text: bytes) -> bool:
        """No bare CR or bare LF in TEXT.  Lenient: every LF fed was already
        made a CRLF (_bare_lf_as_crlf), so equal counts of CR and LF suffice
        (one pass fewer over the message, and the slow two-byte one)."""
        crs, lfs = text.count(b"\r"), text.count(b"\n")
        return crs == lfs and (not self.strict or lfs == text.count(b"\r\n"))

    def _line(self, line: bytes, continued: bool, *, partial: bool = False) -> None:
        if not continued and line.startswith(b"."):
            line = line[1:]
        self.size += len(line) + (0 if partial else 2)
        if self.refusal:
            return
        if self.size > self.limit:
            self._refuse(f"552 5.3.4 Message size exceeds fixed maximum message size ({self.limit})")
            return
        if _BAD.search(line):
            if self.strict:
                self._refuse(f"550 5.6.0 Message contains {offence(line)}; lines must end with CRLF")
                return
            line = normalise(line)
        self._parts.append(line if partial else line + b"\r\n")

    def _finish(self) -> None:
        """The whole message: lines over 998 octets re-encoded (smtpd/longlines.py),
        or refused now when that cannot be done (never accepted to bounce later)."""
        if self.refusal:
            return
        try:
            self._parts = [make_sendable(b"".join(self._parts))]
        except Unsendable as exc:
            self._refuse(f"554 5.6.0 Message not sendable: {exc}")

    def _refuse(self, reply: str) -> None:
        self.refusal = reply
        self._parts.clear()

    def message(self) -> bytes:
        """The message as it will be queued (CRLF line endings only)."""
        return b"".join(self._parts)


def offence(line: bytes) -> str:
    """Name the first bare CR, bare LF or NUL in a line (which holds no CRLF)."""
    m = _BAD.search(line)
    assert m
    return {b"\r": "bare CR", b"\n": "bare LF", b"\x00": "NUL"}[m.group()]


def normalise(line: bytes) -> bytes:
    """LAN rule: bare LF -> CRLF, bare CR -> space, NUL removed (no CRLF in `line`)."""
    return line.replace(b"\x00", b"").replace(b"\r", b" ").replace(b"\n", b"\r\n")


@dataclass(frozen=True)
class HeaderFacts:
    precedence: str | None = None
    msgid: str = ""
    hops: int = 0


def summarise(message: bytes) -> HeaderFacts:
    """Precedence, Message-ID (without <>) and Received count of a message."""
    precedence, msgid, hops = None, "", 0
    for name, value in _headers(message):
        if name == b"received":
            hops += 1
        elif name == b"precedence" and precedence is None:
            precedence = value.decode("ascii", "replace").strip()
        elif name == b"message-id" and not msgid:
            msgid = _msgid(value)
    return HeaderFacts(precedence, msgid, hops)


def _headers(message: bytes):
    """Yield (lower-case name, unfolded value) up to the first empty line."""
    name, value = None, b""
    end = message.find(b"\r\n\r\n")          # the header ends there (or the message does)
    for line in message[:end + 2 if end >= 0 else len(message)].split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and name is not None:
            value += b" " + line.strip()
            continue
        if name is not None:
            yield name, value
            name = None
        m = _HEADER_NAME.match(line)
        if not m:
            return
        name, value = m.group(1).lower(), line[m.end():].strip()


def _msgid(value: bytes) -> str:
    text = value.decode("utf-8", "replace").strip()
    if text.startswith("<") and ">" in text:
        text = text[1:text.index(">")]
    if text.isprintable():          # the usual case: only spaces to drop
        return text.replace(" ", "")[:250]
    return "".join(c for c in text if c.isprintable() and not c.isspace())[:250]


_HELO_SAFE = re.compile(r"[^A-Za-z0-9.\-_:\[\]]")


def received_header(*, helo: str, ip: str, hostname: str, proto: str,
                    rcpt: str | None, when: float) -> bytes:
    """Our trace line (sendmail's form, without ``id``: the queue id exists
    only after the commit; the log line ties the two together)."""
    helo = _HELO_SAFE.sub("_", helo)[:64] or "unknown"
    tail = f"\r\n\tfor <{rcpt}>" if rcpt else ""
    text = (f"Received: from {helo} ([{ip}])\r\n\tby {hostname} (edgemail) with {proto}{tail};"
            f"\r\n\t{_date(int(when))}\r\n")
    return text.encode("utf-8", "surrogateescape")


@functools.lru_cache(maxsize=4)
def _date(second: int) -> str:
    """RFC 5322 date of a whole second (formatdate is slow; many messages share a second)."""
    return formatdate(second)
