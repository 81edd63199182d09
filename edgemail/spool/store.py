"""store.py - the only writer of the spool directory.

NAME
    store - commit, index, update and recover queued messages

LAYOUT
    DIR/tmp/        files being written; anything here at start-up is stale
    DIR/queue/QID   one file per message waiting for delivery (record.py format:
                    an immutable message part ending in END, then an
                    append-only state log of U records)
    DIR/hold/QID    the same, for held messages (the held flag in the state
                    log is the truth; the directory follows it)
    DIR/corrupt/    unreadable or damaged files, moved here for inspection
    DIR/maildrop/   files `sendmail` writes when the daemon is down
                    (write_maildrop); imported by recover() and pickup()

MODULES
    store.py     Store: the API (commit, update, hold, release, mark_warned,
                 remove, read_data, pickup), qids, and the composition of
                 the parts below, each a class of its own that the Store
                 owns and hands what it needs:
    layout.py    Layout: the tree above, locating and quarantining files;
                 spool_error()
    index.py     Index: the in-memory index (qid -> QueueEntry, kept packed:
    packed.py    one bytes object per entry, repeating strings kept once)
    room.py      Room: MinFreeBlocks, counting commits in flight
    jobs.py      Commit, Append, Remove, commit_files(); InFlight: the
                 jobs not yet answered, and settling them on the loop
    writer.py    Writer (the writer thread: U records, moves, unlinks) and
                 CommitThreads (commits when there are no helpers)
    syncpool.py  CommitHelpers, SyncPool: the commit helper processes;
    syncer.py    the helper itself (no edgemail imports)
    recovery.py  Recovery: start-up
    maildrop.py  write_maildrop() for `sendmail`; Maildrop: the import of
                 maildrop/; the maildrop's crash states and trust model
    The file primitives are link/fileio.py's (commit_new() above all).
    Store, QueueEntry, RecoveryReport and write_maildrop are importable
    from here (and from edgemail.spool).

COMMIT
    With commit_helpers > 0 (the daemon's default, [spool] commit_helpers) a
    commit goes to one of that many helper processes (syncpool.py,
    syncer.py): the event loop writes the file's bytes into the helper's
    pipe and goes on; the helper writes tmp/QID, fsyncs it, renames it to
    queue/QID, fsyncs queue/ (once for every commit it took in the same
    batch: group commit) and only then answers; only then is QID returned
    (the caller answers 250).  Threads would do the same calls, but each
    of them gives the interpreter lock back and waits to take it again
    from a busy event loop: measured under the submission benchmark that
    made a commit 3-4 ms instead of 1.5-2 (tests/bench/README.md).
    With commit_helpers = 0 a commit takes the same steps, through the
    same function (link.fileio.commit_new), on the store's commit threads
    (writer.py CommitThreads).  Every other change (U records, hold,
    remove) is written and fsynced on the writer thread, in order.
    Either way the room is reserved first (room.py) and the index changes
    only when the job is settled, on the loop (jobs.py InFlight).
    A state update appends one U record to the file and fsyncs it.  A record
    left half-written by a crash is the last one and is cut off at start-up
    (record.py: only the last U record can be torn).

CRASH STATES (qmail INTERNALS style; "exists" means after a crash)
    S1  nothing on disk.  Not acknowledged.  Nothing to do.
    S2  tmp/QID, complete or not.  Not acknowledged.  recover() deletes it.
    S3  queue/QID renamed, queue/ not yet fsynced: the name may or may not
        survive.  Not acknowledged (commit() has not returned), so the client
        retries; if the name survived the message is delivered twice (the
        RFC 1047 window).  The file itself is whole: it was fsynced first.
        A helper renames nothing once its daemon is gone (it checks its
        parent before each rename, and exits at the end of its input).
    S4  queue/QID and queue/ fsynced.  Acknowledged.  From here no crash loses it.
    S5  queue/QID with U records; the last may be torn.  recover() truncates
        the torn record away; that update was never acknowledged, so the
        runner repeats the attempt.  AT-LEAST-ONCE: a crash between the
        remote server's 250 and the fsync of the U record that says "sent"
        means that recipient gets the message twice.
    S6  every recipient final in the state log, file not yet unlinked.
        recover() unlinks it.
    S7  file gone.  Done.
    Hold/release append the held flag, then rename between queue/ and hold/;
    a crash in between leaves the file in the old directory and recover()
    finishes the move.
    Maildrop: states M1-M4, and the MAILDROP TRUST MODEL, in maildrop.py.
    What recover() does at each state, step by step: recovery.py.

NEVER
    Deletes what it cannot parse (it goes to corrupt/), returns a qid before
    the fsyncs, or does disk I/O in entries()/get() (the index is in memory).

FAILURES
    commit() raises SpoolFull on ENOSPC/EDQUOT or when the commit would leave
    fewer than min_free_blocks 1 KiB blocks free, SpoolError on any other
    OSError; either way tmp/ is cleaned and nothing is queued.  Warnings (a
    file moved to corrupt/) go to logger "edgemail.spool".
    recover() must run before any other call and while nothing else commits;
    update(), hold() and friends on one qid must not run concurrently (the
    runner owns a message while it delivers it).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from link.fileio import read_file

from edgemail import maillog
from edgemail.clock import Clock, SystemClock
from edgemail.envelope import Attempt, Envelope, QueueIdGenerator, priority
from edgemail.errors import CorruptQueueFile, QueueFileGone, SpoolError
from edgemail.spool import record
from edgemail.spool.index import Index
from edgemail.spool.jobs import Append, Change, Commit, InFlight, Remove, commit_files
from edgemail.spool.layout import Layout
from edgemail.spool.maildrop import Maildrop, write_maildrop
from edgemail.spool.record import QueueEntry, StateUpdate
from edgemail.spool.recovery import Recovery, RecoveryReport
from edgemail.spool.room import Room
from edgemail.spool.syncpool import CommitHelpers
from edgemail.spool.writer import CommitThreads, Writer

log = logging.getLogger("edgemail.spool")

__all__ = ["Store", "QueueEntry", "RecoveryReport", "write_maildrop"]


class Store:
    """The spool.  See the module docstring for layout, crash states and
    failures.  Its parts: layout, index, room, inflight, writer,
    commit_threads, helpers, maildrop, recovery (see MODULES)."""

    def __init__(self, directory: str, *, min_free_blocks: int = 0,
                 clock: Clock | None = None, qids: QueueIdGenerator | None = None,
                 class_factor: int = 1800, recipient_factor: int = 30000,
                 retry_factor: int = 90000, commit_helpers: int = 0) -> None:
        self.layout = Layout(directory)
        self.directory = self.layout.directory
        self.clock = clock or SystemClock()
        self._qids = qids or QueueIdGenerator(os.getpid(), now=self.clock.wall)
        self.class_factor = class_factor
        self.recipient_factor = recipient_factor
        self.retry_factor = retry_factor
        self.index = Index()
        self.room = Room(self.directory, min_free_blocks)
        self.inflight = InFlight(self.index, self.room)
        self.writer = Writer(self.inflight.from_thread)
        self.commit_threads = CommitThreads(self.inflight.from_thread)
        self.helpers = CommitHelpers(commit_helpers, self.inflight.settle)
        self.maildrop = Maildrop(self.layout, self.clock)
        self.maildrop_dir = self.maildrop.directory
        self.recovery = Recovery(self.layout, self.index, self._import_maildrop,
                                 retry_factor=retry_factor)

    @property
    def commit_helpers(self) -> int:
        """Helper processes to commit with (0: threads; it drops to 0 when they cannot start)."""
        return self.helpers.count

    def recover(self) -> RecoveryReport:
        """Start-up (recovery.py): before any other call, while nothing else commits."""
        return self.recovery.run()

    # --- reading: memory only ---------------------------------------------------

    def entries(self) -> list[QueueEntry]:
        return self.index.entries()

    def get(self, qid: str) -> QueueEntry:
        return self.index.get(qid)

    def qids(self) -> list[str]:
        """The queued qids (no entry unpacked)."""
        return self.index.qids()

    def present_qids(self) -> list[str]:
        """The qids whose file is there (what mailq lists: queue/ and hold/
        read once each); one whose file was removed by hand leaves the
        index, logged (queue_file_gone)."""
        qids = self.index.qids()
        names = self._names()
        missing = [q for q in qids if q not in names]
        if missing:
            names = self._names()        # again: a hold/release renames between the two folders
            for qid in missing:
                if qid not in names and qid not in self.inflight.qids:
                    self._gone(qid)
        return [q for q in qids if q in self.index]

    def corrupt_files(self) -> list[str]:
        """The names in corrupt/ (damaged files kept for inspection)."""
        try:
            return sorted(os.listdir(self.layout.path("corrupt")))
        except FileNotFoundError:
            return []

    def _names(self) -> set[str]:
        names: set[str] = set()
        for sub in ("queue", "hold"):
            try:
                names.update(os.listdir(self.layout.path(sub)))
            except FileNotFoundError:
                pass
        return names

    def _gone(self, qid: str) -> None:
        self.index.discard(qid)
        log.warning(maillog.queue_file_gone(qid))

    def read_data(self, qid: str) -> bytes:
        """The message as queued.  A damaged file goes to corrupt/ and
        CorruptQueueFile is raised (the entry leaves the index); a file gone
        raises QueueFileGone (so does the entry, logged)."""
        path = self.layout.locate(qid, self.index.get(qid).held)
        try:
            blob = read_file(path)
        except FileNotFoundError:
            path = self.layout.locate(qid, self.index.get(qid).held)   # moved meanwhile? once more
            try:
                blob = read_file(path)
            except FileNotFoundError:
                self._gone(qid)
                raise QueueFileGone(f"{qid}: queue file gone") from None
        try:
            qf = record.decode(blob, kind=record.KIND_QUEUE)
        except CorruptQueueFile as exc:
            self.index.discard(qid)
            self.layout.quarantine(path, exc)
            raise
        return qf.data

    def has_room(self, size: int = 0, *, fresh: bool = False) -> bool:
        """MinFreeBlocks (1 KiB blocks) would still be free after SIZE more
        bytes (room.py: from a recent statvfs, or FRESH from one now; the
        commit checks afresh)."""
        return self.room.has_room(size, fresh=fresh)

    # --- writing -------------------------------------------------------------------

    def _new_commit(self, env: Envelope, data: bytes, created: float) -> Commit:
        """A Commit for a new qid, its room reserved.  Raises SpoolFull or SpoolError."""
        if not env.recipients:           # it would count as done and vanish at recovery
            raise SpoolError("refusing to queue a message without recipients")
        qid = self._qids()
        while qid in self.index or qid in self.inflight.qids:
            qid = self._qids()
        pri = priority(len(data), env.precedence, env.nrcpts, class_factor=self.class_factor,
                       recipient_factor=self.recipient_factor)
        blob = record.encode(env, data, qid=qid, created=created, priority=pri)
        entry = record.new_entry(qid, env, created=created, size=len(data), priority=pri)
        job = Commit(self.layout, entry, blob)
        self.room.reserve(qid, len(blob))
        job.reserved = len(blob)
        return job

    async def commit(self, env: Envelope, data: bytes) -> str:
        """Queue a message durably; returns its qid only after file fsync,
        rename and directory fsync.  Raises SpoolFull or SpoolError."""
        return await self._commit(env, data, self.clock.wall())

    async def _commit(self, env: Envelope, data: bytes, created: float) -> str:
        job = self._new_commit(env, data, created)
        future = self.inflight.start(job)
        if not self.helpers.submit(job):
            self.commit_threads.submit(job)
        return await future

    def _commit_now(self, env: Envelope, data: bytes, created: float) -> str:
        """Commit on this thread, at start-up (the maildrop import)."""
        job = self._new_commit(env, data, created)
        try:
            commit_files([job])
        finally:
            self.room.release(job.reserved)
        if job.error is not None:
            raise job.error
        return job.apply(self.index)

    def _import_maildrop(self, corrupt: list[str]) -> list[str]:
        return self.maildrop.import_all(self._commit_now, corrupt)

    async def pickup(self) -> list[str]:
        """Import maildrop/ while running (a `sendmail` that raced the daemon's
        start).  Returns the new qids."""
        return await self.maildrop.pickup(self._commit)

    async def update(self, qid: str, results: dict[str, Attempt], *,
                     next_attempt: float | None) -> QueueEntry:
        """Record one delivery attempt's results durably (attempts += 1 when
        RESULTS is not empty).  When every recipient is final the entry is
        removed (the returned entry has .done)."""
        entry = self.index.get(qid)
        update = StateUpdate(dict(results), attempts=entry.attempts + 1 if results else None,
                             next_attempt=next_attempt)
        return await self._append(entry, update)

    async def hold(self, qid: str) -> QueueEntry:
        return await self._append(self.index.get(qid), StateUpdate(held=True))

    async def release(self, qid: str) -> QueueEntry:
        return await self._append(self.index.get(qid), StateUpdate(held=False))

    async def mark_warned(self, qid: str) -> QueueEntry:
        """Remember that the delay DSN (Timeout.queuewarn) went out."""
        return await self._append(self.index.get(qid), StateUpdate(warned=True))

    async def remove(self, qid: str) -> None:
        await self._change(Remove(self.layout, self.index.get(qid)))

    async def _append(self, entry: QueueEntry, update: StateUpdate) -> QueueEntry:
        return await self._change(Append(self.layout, entry, update, retry_factor=self.retry_factor))

    async def _change(self, change: Change) -> Any:
        future = self.inflight.start(change)
        self.writer.submit(change)
        return await future

    def close(self) -> None:
        """Stop the commit helpers, the commit threads and the writer thread
        after the jobs already handed over."""
        self.helpers.close()
        self.commit_threads.close()
        self.writer.close()
