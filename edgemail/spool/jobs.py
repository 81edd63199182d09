"""jobs.py - the changes the store makes to the spool, and how their answers
reach the callers.

NAME
    jobs - Commit, Append, Remove; commit_files(); InFlight

DESCRIPTION
    A Commit is a new queue file: committed by commit_files() (a batch of
    commits on one of writer.py's commit threads, or one at a time by the
    maildrop import at start-up) or by a commit helper process (syncpool.py,
    syncer.py); either way through link/fileio.py's commit_new(): tmp/QID
    written and fsynced, renamed to queue/QID, queue/ fsynced.
    An Append (one U record, then maybe a move between queue/ and hold/ or
    an unlink) and a Remove (an unlink) are Changes, which writer.py's
    writer thread runs in batches, in four steps:
        prepare()   write and fsync file data (one U record)
        publish()   rename or unlink
        (batch)     fsync every directory in .dirs, once
        apply()     update the index, on the event loop thread
    InFlight holds the jobs handed over and not yet answered: their qids
    (so a new qid never takes one of theirs) and the way back to their
    event loop, where settle() changes the index and answers the caller.

INVARIANTS
    A file is renamed only after its data was fsynced, and a job is
    answered only after its directories were fsynced (store.py, CRASH
    STATES S3, S4).  An unlink that says "done" needs no directory fsync:
    the U record before it already says so durably (S6).  The index
    changes only in settle(), on the loop thread, before the caller hears
    of it (even a cancelled caller); a commit's reserved bytes (room.py)
    are released there too.

FAILURES
    A failed step sets job.error (SpoolFull or SpoolError, layout.
    spool_error) and rolls the job back: a failed append is cut back at
    once, never leaving a bad record before a later good one; a commit
    leaves nothing (commit_new removes what it made; rollback() removes
    tmp/QID and queue/QID for a helper that died mid-commit).  A job whose
    event loop has closed is dropped: nobody is waiting for it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

from link.fileio import commit_new, unlink_quietly, write_all

from edgemail.errors import SpoolError
from edgemail.spool import record
from edgemail.spool.index import Index
from edgemail.spool.layout import Layout, spool_error
from edgemail.spool.record import QueueEntry, StateUpdate
from edgemail.spool.room import Room


class Job:
    """One spool change, answered through .future on .loop."""

    reserved = 0                 # bytes of room reserved for it (room.py)

    def __init__(self, qid: str) -> None:
        self.qid = qid
        self.error: SpoolError | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.future: asyncio.Future[Any] | None = None

    def fail(self, error: SpoolError) -> None:
        self.error = error
        self.rollback()

    def rollback(self) -> None: ...

    def apply(self, index: Index) -> Any: ...


class Commit(Job):
    """A new queue file: BLOB to tmp/QID, then queue/QID."""

    def __init__(self, layout: Layout, entry: QueueEntry, blob: bytes) -> None:
        super().__init__(entry.qid)
        self.entry, self.blob = entry, blob
        self.tmp = layout.path("tmp", entry.qid)
        self.dest = layout.path("queue", entry.qid)

    def failed(self, err: int) -> None:
        """commit_new's errno for it (it removed what it made)."""
        self.error = spool_error(OSError(err, os.strerror(err)), self.qid)

    def rollback(self) -> None:
        """For a commit whose helper died mid-batch: it may have renamed the file."""
        unlink_quietly(self.tmp)
        unlink_quietly(self.dest)

    def apply(self, index: Index) -> str:
        index.put(self.entry)
        return self.qid


def commit_files(jobs: list[Commit]) -> None:
    """Commit JOBS as one batch (link.fileio.commit_new); each failed one gets
    its .error.  On whichever thread calls it."""
    errors = commit_new([(job.tmp, job.dest, job.blob) for job in jobs])
    for job, err in zip(jobs, errors):
        if err:
            job.failed(err)


class Change(Job):
    """A change to an existing queue file, run by the writer thread."""

    def __init__(self, layout: Layout, qid: str) -> None:
        super().__init__(qid)
        self.layout = layout
        self.dirs: set[str] = set()  # directories to fsync after publish()

    def prepare(self) -> None: ...

    def publish(self) -> None: ...


class Append(Change):
    """Append one U record; then maybe move the file (hold/release) or unlink
    it (every recipient final: the record already says so durably)."""

    def __init__(self, layout: Layout, entry: QueueEntry, update: StateUpdate, *,
                 retry_factor: int) -> None:
        super().__init__(layout, entry.qid)
        self.blob = record.encode_update(update)
        self.after = record.apply(entry, update, retry_factor=retry_factor)
        self.was_held = entry.held
        self.path = ""

    def prepare(self) -> None:
        self.path = self.layout.locate(self.qid, self.was_held)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            try:
                write_all(fd, self.blob)
                os.fsync(fd)
            except OSError:
                os.ftruncate(fd, size)   # never leave a bad record before a later good one
                raise
        finally:
            os.close(fd)

    def publish(self) -> None:
        if self.after.done:
            os.unlink(self.path)         # no dir fsync needed: the log says "final"
        elif self.after.held != self.was_held:
            dest = self.layout.path("hold" if self.after.held else "queue", self.qid)
            os.rename(self.path, dest)
            self.dirs = {os.path.dirname(self.path), os.path.dirname(dest)}

    def apply(self, index: Index) -> QueueEntry:
        if self.after.done:
            index.discard(self.qid)
        else:
            index.put(self.after)
        return self.after


class Remove(Change):
    def __init__(self, layout: Layout, entry: QueueEntry) -> None:
        super().__init__(layout, entry.qid)
        self.held = entry.held

    def publish(self) -> None:
        path = self.layout.locate(self.qid, self.held)
        os.unlink(path)
        self.dirs = {os.path.dirname(path)}

    def apply(self, index: Index) -> None:
        index.discard(self.qid)


class InFlight:
    """The jobs handed over and not yet settled, and their way back."""

    def __init__(self, index: Index, room: Room) -> None:
        self.index, self.room = index, room
        self.qids: set[str] = set()

    def start(self, job: Job) -> asyncio.Future[Any]:
        """On the loop thread, before JOB is handed over: its future."""
        job.loop = asyncio.get_running_loop()
        job.future = job.loop.create_future()
        self.qids.add(job.qid)
        return job.future

    def from_thread(self, jobs: Sequence[Job]) -> None:
        """Settle finished JOBS on their loops (from any thread): one wake-up per loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[Job]] = {}
        for job in jobs:
            if job.loop is not None:
                by_loop.setdefault(job.loop, []).append(job)
        for loop, mine in by_loop.items():
            try:
                loop.call_soon_threadsafe(self._settle_all, mine)
            except RuntimeError:           # loop closed: nobody is waiting
                pass

    def _settle_all(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            self.settle(job)

    def settle(self, job: Job) -> None:
        """On the loop thread: index first (even if the caller was cancelled)."""
        self.qids.discard(job.qid)
        self.room.release(job.reserved)
        job.reserved = 0
        assert job.future is not None, "settle() of a job never started"
        if job.error is not None:
            if not job.future.cancelled():
                job.future.set_exception(job.error)
            return
        result = job.apply(self.index)
        if not job.future.cancelled():
            job.future.set_result(result)
