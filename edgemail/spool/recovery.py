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
    It returns a RecoveryReport of what it did.  _quarantine() also serves
    read_data() and the maildrop import while the daemon runs.

INVARIANTS
    recover() runs before any other call and while nothing else commits:
    it clears and rebuilds the index from the files alone.  A damaged
    file is kept, renamed in corrupt/ (NAME, NAME.1, ...), and logged to
    "edgemail.spool" (maillog.corrupt_file).

FAILURES
    A file that cannot be read is quarantined like a damaged one.  Any
    other OSError (making a directory, listing, truncating, renaming,
    fsyncing) and a maildrop commit's SpoolError propagate: the daemon
    does not start on a spool it cannot put right.

The store supplies: maildrop_dir, retry_factor, _index, _path() and
_import_maildrop() (maildrop.py).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

from edgemail import maillog
from edgemail.envelope import is_queue_id
from edgemail.errors import CorruptQueueFile
from edgemail.spool import record
from edgemail.spool.fileio import fsync_dir, fsync_file, read_file

log = logging.getLogger("edgemail.spool")

SUBDIRS = ("tmp", "queue", "hold", "corrupt", "maildrop")


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
    """Mixin for Store: start-up, and moving damaged files to corrupt/."""

    def recover(self) -> RecoveryReport:
        """Start-up: create the directories, empty tmp/, load queue/ and hold/
        (damaged files to corrupt/, torn tails cut, finished entries unlinked,
        misplaced held files moved), then import maildrop/."""
        t0 = time.monotonic()
        self._ensure_dirs()
        stale = self._clean_tmp()
        self._index.clear()
        report: dict[str, list[str]] = {"corrupt": [], "truncated": [], "finished": []}
        # list both first: _load may move a file from queue/ to hold/ or back
        listing = [(sub, name) for sub in ("queue", "hold") for name in os.listdir(self._path(sub))]
        for sub, name in listing:
            self._load(sub, name, report)
        for sub in ("queue", "hold", "corrupt"):
            fsync_dir(self._path(sub))
        imported = self._import_maildrop(report["corrupt"])
        return RecoveryReport(len(self._index), tuple(stale), tuple(report["corrupt"]),
                              tuple(report["truncated"]), tuple(report["finished"]),
                              tuple(imported), time.monotonic() - t0)

    def _ensure_dirs(self) -> None:
        for sub in SUBDIRS:
            path = self._path(sub)
            os.makedirs(path, mode=0o700, exist_ok=True)
        # any local user's `sendmail` may drop files; nobody may list them
        os.chmod(self.maildrop_dir, 0o1733)

    def _clean_tmp(self) -> list[str]:
        names = os.listdir(self._path("tmp"))
        for name in names:
            os.unlink(self._path("tmp", name))
        if names:
            fsync_dir(self._path("tmp"))
            log.info(maillog.stale_tmp(len(names)))
        return names

    def _load(self, sub: str, name: str, report: dict[str, list[str]]) -> None:
        path = self._path(sub, name)
        try:
            if not is_queue_id(name) or name in self._index:
                raise CorruptQueueFile("not a queue file name" if name not in self._index
                                       else "duplicate queue id")
            qf = record.decode(read_file(path), kind=record.KIND_QUEUE)
            if qf.qid != name:
                raise CorruptQueueFile(f"file says queue id {qf.qid!r}")
        except (CorruptQueueFile, OSError) as exc:
            report["corrupt"].append(self._quarantine(path, exc))
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
            os.rename(path, self._path(want, name))
        self._index[name] = entry

    def _quarantine(self, path: str, why: Exception) -> str:
        """Move a damaged file to corrupt/ (never delete it); return its new name."""
        base = os.path.basename(path)
        name, n = base, 0
        while os.path.lexists(self._path("corrupt", name)):
            n += 1
            name = f"{base}.{n}"
        os.rename(path, self._path("corrupt", name))
        log.warning(maillog.corrupt_file(base, name, why))
        return name
