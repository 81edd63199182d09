"""recovery.py - start-up: the spool as the last crash left it, put right.

NAME
    recovery - clean tmp/, load queue/ and hold/, rebuild the index

DESCRIPTION
    recover() takes the spool from any of store.py's CRASH STATES to a
    state the index describes, in this order:
      1. create the directories (maildrop/ 1733: see maildrop.py);
      2. empty tmp/ and fsync it: S2, never acknowledged;
      3. list queue/ and hold/ both, then load each file (a load may move
         a file from one to the other):
           a bad name, a duplicate qid, a file that does not decode or
           names another qid: moved to corrupt/, never deleted;
           a torn last U record (S5): cut off, the file fsynced; that
           update was never acknowledged, so the runner repeats it;
           every recipient final (S6): unlinked;
           held flag and directory disagree (a crash between the U
           record and the rename of hold/release): the move is finished;
      4. fsync queue/, hold/ and corrupt/: step 3's changes are durable;
      5. import maildrop/ (maildrop.py: M1-M4).
    It returns a RecoveryReport of what it did.

INVARIANTS
    recover() runs before any other call and while nothing else commits:
    it clears and rebuilds the index from the files alone.  A damaged
    file is kept, renamed in corrupt/ (NAME, NAME.1, ...), and logged to
    "edgemail.spool" (layout.py quarantine()).

FAILURES
    A file that cannot be read is quarantined like a damaged one.  Any
    other OSError (making a directory, listing, truncating, renaming,
    fsyncing) and a maildrop commit's SpoolError propagate: the daemon
    does not start on a spool it cannot put right.

Recovery works on the Layout, the Index and the maildrop import (a
callable: maildrop.py Maildrop.import_all with the store's commit) it is
given; it keeps nothing between runs.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from link.fileio import fsync_dir, fsync_file, read_file

from edgemail import maillog
from edgemail.envelope import is_queue_id
from edgemail.errors import CorruptQueueFile
from edgemail.spool import record
from edgemail.spool.index import Index
from edgemail.spool.layout import Layout

log = logging.getLogger("edgemail.spool")

#: import maildrop/ (the names moved to corrupt/ are appended to the list); the new qids
ImportMaildrop = Callable[[list[str]], list[str]]


@dataclass(frozen=True)
class RecoveryReport:
    loaded: int                       # entries in the index afterwards
    stale_tmp: tuple[str, ...]        # removed from tmp/
    corrupt: tuple[str, ...]          # moved to corrupt/ (their new names)
    truncated: tuple[str, ...]        # qids whose torn last state record was cut off
    finished: tuple[str, ...]         # qids whose recipients were all final: unlinked
    imported: tuple[str, ...]         # qids committed from maildrop/
    seconds: float


class Recovery:
    """Start-up: the spool's files into the index."""

    def __init__(self, layout: Layout, index: Index, import_maildrop: ImportMaildrop, *,
                 retry_factor: int) -> None:
        self.layout, self.index = layout, index
        self.import_maildrop = import_maildrop
        self.retry_factor = retry_factor

    def run(self) -> RecoveryReport:
        """Create the directories, empty tmp/, load queue/ and hold/ (damaged
        files to corrupt/, torn tails cut, finished entries unlinked,
        misplaced held files moved), then import maildrop/."""
        t0 = time.monotonic()
        self.layout.ensure()
        stale = self._clean_tmp()
        self.index.clear()
        report: dict[str, list[str]] = {"corrupt": [], "truncated": [], "finished": []}
        # list both first: _load may move a file from queue/ to hold/ or back
        path = self.layout.path
        listing = [(sub, name) for sub in ("queue", "hold") for name in os.listdir(path(sub))]
        for sub, name in listing:
            self._load(sub, name, report)
        for sub in ("queue", "hold", "corrupt"):
            fsync_dir(path(sub))
        imported = self.import_maildrop(report["corrupt"])
        return RecoveryReport(len(self.index), tuple(stale), tuple(report["corrupt"]),
                              tuple(report["truncated"]), tuple(report["finished"]),
                              tuple(imported), time.monotonic() - t0)

    def _clean_tmp(self) -> list[str]:
        tmp = self.layout.path("tmp")
        names = os.listdir(tmp)
        for name in names:
            os.unlink(os.path.join(tmp, name))
        if names:
            fsync_dir(tmp)
            log.info(maillog.stale_tmp(len(names)))
        return names

    def _load(self, sub: str, name: str, report: dict[str, list[str]]) -> None:
        path = self.layout.path(sub, name)
        try:
            qf = self._decode(name, path)
        except (CorruptQueueFile, OSError) as exc:
            report["corrupt"].append(self.layout.quarantine(path, exc))
            return
        if qf.torn:
            os.truncate(path, qf.length)
            fsync_file(path)
            report["truncated"].append(name)
        entry = record.entry_from(qf, retry_factor=self.retry_factor)
        if entry.done:
            os.unlink(path)
            report["finished"].append(name)
            return
        want = "hold" if entry.held else "queue"
        if want != sub:
            os.rename(path, self.layout.path(want, name))
        self.index.put(entry)

    def _decode(self, name: str, path: str) -> record.QueueFile:
        """The queue file NAME at PATH.  Raises CorruptQueueFile or OSError."""
        if not is_queue_id(name):
            raise CorruptQueueFile("not a queue file name")
        if name in self.index:
            raise CorruptQueueFile("duplicate queue id")
        qf = record.decode(read_file(path), kind=record.KIND_QUEUE)
        if qf.qid != name:
            raise CorruptQueueFile(f"file says queue id {qf.qid!r}")
        return qf
