"""room.py - MinFreeBlocks: whether the spool has room, counting the commits
being written.

NAME
    room - answer has_room() cheaply; reserve a commit's bytes before it is
    written, release them when it is settled

DESCRIPTION
    has_room(size) answers from a statvfs at most ROOM_CACHE_S old (the
    final dot asks so: a statvfs is ~35 us on gVisor); has_room(size,
    fresh=True) reads one now (MAIL asks so: issue 16 section 13).  reserve() checks afresh, for every commit on every path
    (commit helpers, threads, the maildrop import), before any byte of it
    is written: the bytes of the commits already handed over and not yet
    settled count against the room too, since statvfs does not see them
    until they are written.  release() gives them back when the commit is
    settled (jobs.py InFlight).

FAILURES
    reserve() raises SpoolFull when the commit would leave fewer than
    min_free_blocks 1 KiB blocks free, SpoolError when statvfs fails.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from edgemail.errors import SpoolFull
from edgemail.spool.layout import spool_error

#: how long has_room() may answer from the last statvfs
ROOM_CACHE_S = 1.0


class Room:
    """The free space of DIRECTORY's file system, less MIN_FREE_BLOCKS KiB."""

    def __init__(self, directory: str, min_free_blocks: int = 0, *,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.directory = directory
        self.min_free_blocks = min_free_blocks
        self._monotonic = monotonic
        self._cached: tuple[float, int] | None = None   # (monotonic time, free bytes)
        self._lock = threading.Lock()
        self.reserved = 0                # bytes of commits handed over, not yet settled

    def has_room(self, size: int = 0, *, fresh: bool = False) -> bool:
        """MinFreeBlocks would still be free after SIZE more bytes (cached;
        FRESH: from a statvfs now, as MAIL asks, so that a MAIL answered 250
        is not followed by a 452 at the dot from a reading older than it)."""
        now = self._monotonic()
        if fresh or self._cached is None or now - self._cached[0] > ROOM_CACHE_S:
            self._cached = (now, self._free())
        return self._cached[1] - size >= self.min_free_blocks * 1024

    def reserve(self, qid: str, need: int) -> None:
        """Count NEED bytes of QID's commit as taken, if they fit.
        Raises SpoolFull or SpoolError."""
        with self._lock:
            try:
                free = self._free()
            except OSError as exc:
                raise spool_error(exc, f"statvfs {self.directory}") from None
            if need > free - self.min_free_blocks * 1024 - self.reserved:
                raise SpoolFull(f"{qid}: spool below MinFreeBlocks"
                                f" ({self.min_free_blocks} KiB must stay free)")
            self.reserved += need

    def release(self, need: int) -> None:
        with self._lock:
            self.reserved -= need

    def _free(self) -> int:
        st = os.statvfs(self.directory)
        return st.f_bavail * st.f_frsize
