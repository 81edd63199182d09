"""reply.py - SMTP/LMTP reply parser (RFC 5321 4.2, RFC 2034 enhanced codes).

Owns: turning the bytes a server sends into ``Reply`` values.
Never does: I/O, timeouts, deciding what a reply means for delivery (core.py
and session.py do that).

Invariants:
  * chunking-invariant: the same bytes yield the same replies whether fed
    whole, byte by byte or split anywhere (a reply is emitted only when its
    last line is complete);
  * a line ends at LF; one CR before it is dropped (lenient about bare LF,
    as every deployed client is);
  * every line of a multiline reply carries the same three-digit code.

Failures: anything that is not a reply (no code, code outside 2xx-5xx,
mixed codes, a line longer than MAX_LINE, too many lines) raises
``RemoteProtocolError``, and so does every later ``feed`` (the stream is
out of step; the driver must drop the connection).  ``push`` stores
bytes and ``next`` parses them, one reply a call: what follows a reply
that ends the dialogue (ATRN's 250) stays bytes, for ``rest``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgemail.errors import RemoteProtocolError

#: longest reply line we accept (RFC 5321 allows 512; be generous, not unbounded)
MAX_LINE = 4096
#: most lines in one multiline reply (EHLO answers run to ~20)
MAX_LINES = 256

_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")


@dataclass(frozen=True)
class Reply:
    """One complete server reply."""

    code: int
    #: the text of each line, after "NNN-" / "NNN " (enhanced code included)
    lines: tuple[str, ...]
    #: RFC 3463 enhanced status code from the first line ("5.1.1"), or None
    enhanced: str | None = None

    @property
    def positive(self) -> bool:
        """2xx or 3xx."""
        return 200 <= self.code < 400

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        return 500 <= self.code < 600

    @property
    def text(self) -> str:
        """All lines joined by a space (for log lines and DSNs)."""
        return " ".join(line for line in self.lines if line)

    def dsn(self) -> str:
        """The enhanced code, or the basic one derived from the reply class."""
        return self.enhanced or f"{self.code // 100}.0.0"

    def __str__(self) -> str:
        return f"{self.code} {self.text}".rstrip()


def parse_enhanced(code: int, text: str) -> str | None:
    """The enhanced status code at the start of ``text`` if its class agrees with ``code``."""
    m = _ENHANCED.match(text)
    if m and int(m.group(1)) == code // 100:
        return m.group(0)
    return None


def _split_line(raw: bytes) -> tuple[int, bool, str]:
    """-> (code, is_last, text) for one reply line without its line ending."""
    if len(raw) < 3 or not raw[:3].isdigit():
        raise RemoteProtocolError(f"not an SMTP reply line: {raw[:80]!r}")
    code = int(raw[:3])
    if not 200 <= code <= 599:
        raise RemoteProtocolError(f"reply code out of range: {raw[:80]!r}")
    sep = raw[3:4]
    if sep not in (b"", b" ", b"-"):
        raise RemoteProtocolError(f"bad separator after reply code: {raw[:80]!r}")
    text = raw[4:].decode("utf-8", errors="replace")
    return code, sep != b"-", text


class ReplyParser:
    """Incremental parser: ``feed(bytes) -> list[Reply]``, or ``push`` and
    ``next`` one reply at a time, so that the bytes after a given reply can
    be left unparsed (``rest``): after a 250 to ATRN they are not replies."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._lines: list[str] = []
        self._code: int | None = None
        self._broken: str | None = None

    @property
    def pending(self) -> bool:
        """True when bytes have been received that no returned reply holds."""
        return bool(self._buf or self._lines)

    def feed(self, data: bytes) -> list[Reply]:
        self.push(data)
        out = []
        while (reply := self.next()) is not None:
            out.append(reply)
        return out

    def push(self, data: bytes) -> None:
        """Take bytes without parsing them yet."""
        if self._broken:
            raise RemoteProtocolError(self._broken)
        self._buf += data

    def next(self) -> Reply | None:
        """The next complete reply, or None until more bytes come."""
        if self._broken:
            raise RemoteProtocolError(self._broken)
        try:
            return self._next()
        except RemoteProtocolError as exc:
            self._broken = str(exc)
            raise

    def rest(self) -> bytes:
        """The bytes after the last reply returned, unparsed; the buffer is emptied."""
        if self._lines:
            raise RemoteProtocolError("a reply was cut off where the dialogue ended")
        out, self._buf = bytes(self._buf), bytearray()
        return out

    def _next(self) -> Reply | None:
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > MAX_LINE:
                    raise RemoteProtocolError(f"reply line longer than {MAX_LINE} bytes")
                return None
            if nl > MAX_LINE:
                raise RemoteProtocolError(f"reply line longer than {MAX_LINE} bytes")
            raw = bytes(self._buf[:nl])
            del self._buf[:nl + 1]
            reply = self._line(raw[:-1] if raw.endswith(b"\r") else raw)
            if reply is not None:
                return reply

    def _line(self, raw: bytes) -> Reply | None:
        code, last, text = _split_line(raw)
        if self._code is not None and code != self._code:
            raise RemoteProtocolError(f"multiline reply changed code {self._code} -> {code}")
        self._code = code
        self._lines.append(text)
        if len(self._lines) > MAX_LINES:
            raise RemoteProtocolError(f"reply of more than {MAX_LINES} lines")
        if not last:
            return None
        lines, self._lines, self._code = tuple(self._lines), [], None
        return Reply(code, lines, parse_enhanced(code, lines[0]))
