"""smtpd/reader.py - a session's input, sans I/O: bytes in, command lines
and DATA out.

Owns: the bytes the client sent that no command has taken yet, cutting them
into command lines (a line ends at LF; the caller strips CR LF), dropping a
line longer than ``line_length_limit`` as it arrives (``next_line()`` then
returns ``TOO_LONG`` once, at its end), and handing the bytes after ``354``
to a DataCollector until the end of DATA (what follows the end stays here
for the next command).  Knows nothing of verbs or replies: core.py asks it
for the next line only when it is ready to answer one.

Why a buffer of our own and not aiosmtpd's stream loop: that loop cost a
future, a task step and a reader wake-up per line, about a third of the
event loop's time per message (tests/bench/README.md).  Here a line is a
``find`` and a slice.

Invariants:
  * Held bytes are bounded by what the driver lets in: a line over the
    limit is never held whole (at most ``line_length_limit`` of it).
  * Nothing is lost or reordered: every byte received is a line handed
    out, data fed to the collector, or still ``held``.
  * ``discard()`` drops what is held (STARTTLS: the plaintext read before
    the handshake must not be taken as commands after it).
"""

from __future__ import annotations

import enum
from typing import Literal

from edgemail.smtpd.data import DataCollector


class Overlong(enum.Enum):
    #: a command line over ``line_length_limit`` ended (it was not kept)
    TOO_LONG = "too long"


TOO_LONG = Overlong.TOO_LONG


class LineReader:
    """The input buffer of one session."""

    #: the longest command line read before "500 Command line too long"
    #: (commands stay limited by their own, smaller limits in core.py)
    line_length_limit = 64 * 1024

    def __init__(self) -> None:
        self._buf = bytearray()
        #: inside a command line over line_length_limit (its start was dropped)
        self._skipping = False
        #: the client has sent all it will
        self.eof = False

    def receive_data(self, data: bytes | memoryview) -> None:
        """Bytes read from the client; ``b""`` means the end of its input."""
        if data:
            self._buf += data
        else:
            self.eof = True

    @property
    def held(self) -> int:
        """Bytes received and not yet taken."""
        return len(self._buf)

    def take(self) -> bytes:
        """Every byte held, handed out and dropped (ATRN: they belong to the
        reversed connection)."""
        out = bytes(self._buf)
        self.discard()
        return out

    def discard(self) -> None:
        """Drop every byte held (and any over-long line in progress)."""
        self._buf.clear()
        self._skipping = False

    def next_line(self) -> bytes | Literal[Overlong.TOO_LONG] | None:
        """The next command line with its line end, TOO_LONG, or None (no
        whole line yet)."""
        buf = self._buf
        end = buf.find(b"\n")
        if self._skipping:
            if end < 0:
                buf.clear()
                return None
            del buf[:end + 1]
            self._skipping = False
            return TOO_LONG
        if end < 0:
            if len(buf) > self.line_length_limit:
                buf.clear()
                self._skipping = True
            return None
        line = bytes(buf[:end + 1])
        del buf[:end + 1]
        return line

    def feed(self, collector: DataCollector) -> bool:
        """Give the held bytes to COLLECTOR; True once it saw the end of DATA
        (the bytes after the end are held again)."""
        buf = self._buf
        if not buf or not collector.feed(bytes(buf)):
            buf.clear()
            return False
        buf[:] = collector.leftover
        return True
