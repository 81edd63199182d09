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
    store.py     Store: the in-memory index, the API (commit, update, hold,
                 release, mark_warned, remove, read_data), room checks
                 (MinFreeBlocks), the hand-off to the commit helpers
    writer.py    the jobs (Commit, Append, Remove), the sync threads and
                 the writer thread
    recovery.py  recover(): start-up, and moving files to corrupt/
    maildrop.py  write_maildrop(), the import of maildrop/, pickup(); the
                 maildrop's crash states and trust model
    fileio.py    the file system calls (write and fsync, fsync a directory)
    syncpool.py, syncer.py   the commit helper processes
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
    With commit_helpers = 0 a commit takes the same steps on the store's
    sync threads and writer thread (writer.py), where every other change
    (U records, hold, remove) is written and fsynced too, in order.
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

import asyncio
import logging
import os
import time

from edgemail import maillog
from edgemail.clock import Clock, SystemClock
from edgemail.envelope import Attempt, Envelope, QueueIdGenerator, priority
from edgemail.errors import CorruptQueueFile, SpoolError, SpoolFull
from edgemail.spool import record
from edgemail.spool.fileio import read_file, spool_error
from edgemail.spool.maildrop import MaildropImport, write_maildrop
from edgemail.spool.record import QueueEntry, StateUpdate
from edgemail.spool.recovery import Recovery, RecoveryReport
from edgemail.spool.syncpool import SyncPool
from edgemail.spool.writer import Append, Commit, Job, Remove, WriterThreads

log = logging.getLogger("edgemail.spool")

__all__ = ["Store", "QueueEntry", "RecoveryReport", "write_maildrop"]

#: how long has_room() may answer from the last statvfs
ROOM_CACHE_S = 1.0


class Store(WriterThreads, Recovery, MaildropImport):
    """The spool.  See the module docstring for layout, crash states and failures.
    The thread path, start-up and the maildrop import come from the mixins
    WriterThreads (writer.py), Recovery (recovery.py) and MaildropImport
    (maildrop.py)."""

    def __init__(self, directory: str, *, min_free_blocks: int = 0,
                 clock: Clock | None = None, qids: QueueIdGenerator | None = None,
                 class_factor: int = 1800, recipient_factor: int = 30000,
                 retry_factor: int = 90000, commit_helpers: int = 0) -> None:
        self.directory = os.path.abspath(directory)
        self.min_free_blocks = min_free_blocks
        self.clock = clock or SystemClock()
        self._qids = qids or QueueIdGenerator(os.getpid(), now=self.clock.wall)
        self.class_factor = class_factor
        self.recipient_factor = recipient_factor
        self.retry_factor = retry_factor
        self.maildrop_dir = self._path("maildrop")
        self._index: dict[str, QueueEntry] = {}
        self._pending: set[str] = set()
        self._init_threads()
        self._room: tuple[float, int] | None = None   # (monotonic time, free bytes)
        self.commit_helpers = commit_helpers
        self._pool: SyncPool | None = None

    def _path(self, sub: str, name: str = "") -> str:
        return os.path.join(self.directory, sub, name) if name else os.path.join(self.directory, sub)

    def _locate(self, qid: str, held: bool) -> str:
        """The file of QID: where its held flag says, else the other place."""
        first, second = ("hold", "queue") if held else ("queue", "hold")
        path = self._path(first, qid)
        if os.path.exists(path):
            return path
        return self._path(second, qid)

    # --- reading: memory only ---------------------------------------------------

    def entries(self) -> list[QueueEntry]:
        return list(self._index.values())

    def get(self, qid: str) -> QueueEntry:
        return self._index[qid]

    def read_data(self, qid: str) -> bytes:
        """The message as queued.  A damaged file goes to corrupt/ and
        CorruptQueueFile is raised (the entry leaves the index)."""
        path = self._locate(qid, self._index[qid].held)
        try:
            qf = record.decode(read_file(path), kind=record.KIND_QUEUE)
        except CorruptQueueFile as exc:
            self._index.pop(qid, None)
            self._quarantine(path, exc)
            raise
        return qf.data

    def has_room(self, size: int = 0) -> bool:
        """MinFreeBlocks (1 KiB blocks) would still be free after SIZE more
        bytes.  Answers from a statvfs at most ROOM_CACHE_S old (sessions ask
        at MAIL and at the final dot: a statvfs is ~35 us on gVisor); the
        commit itself checks afresh."""
        now = time.monotonic()
        if self._room is None or now - self._room[0] > ROOM_CACHE_S:
            st = os.statvfs(self.directory)
            self._room = (now, st.f_bavail * st.f_frsize)
        return self._room[1] - size >= self.min_free_blocks * 1024

    # --- writing -------------------------------------------------------------------

    def _new_entry(self, env: Envelope, data: bytes, created: float) -> tuple[QueueEntry, bytes]:
        if not env.recipients:           # it would count as done and vanish at recovery
            raise SpoolError("refusing to queue a message without recipients")
        qid = self._qids()
        while qid in self._index or qid in self._pending:
            qid = self._qids()
        pri = priority(len(data), env.precedence, env.nrcpts, class_factor=self.class_factor,
                       recipient_factor=self.recipient_factor)
        blob = record.encode(env, data, qid=qid, created=created, priority=pri)
        entry = record.new_entry(qid, env, created=created, size=len(data), priority=pri)
        return entry, blob

    async def commit(self, env: Envelope, data: bytes) -> str:
        """Queue a message durably; returns its qid only after file fsync,
        rename and directory fsync.  Raises SpoolFull or SpoolError."""
        entry, blob = self._new_entry(env, data, self.clock.wall())
        return await self._submit(Commit(self, entry, blob))

    async def update(self, qid: str, results: dict[str, Attempt], *,
                     next_attempt: float | None) -> QueueEntry:
        """Record one delivery attempt's results durably (attempts += 1 when
        RESULTS is not empty).  When every recipient is final the entry is
        removed (the returned entry has .done)."""
        entry = self._index[qid]
        update = StateUpdate(dict(results), attempts=entry.attempts + 1 if results else None,
                             next_attempt=next_attempt)
        return await self._submit(Append(self, entry, update))

    async def hold(self, qid: str) -> QueueEntry:
        return await self._submit(Append(self, self._index[qid], StateUpdate(held=True)))

    async def release(self, qid: str) -> QueueEntry:
        return await self._submit(Append(self, self._index[qid], StateUpdate(held=False)))

    async def mark_warned(self, qid: str) -> QueueEntry:
        """Remember that the delay DSN (Timeout.queuewarn) went out."""
        return await self._submit(Append(self, self._index[qid], StateUpdate(warned=True)))

    async def remove(self, qid: str) -> None:
        await self._submit(Remove(self, self._index[qid]))

    async def _submit(self, job: Job):
        job.loop = asyncio.get_running_loop()
        job.future = job.loop.create_future()
        self._pending.add(job.qid)
        if isinstance(job, Commit) and self.commit_helpers and self._helpers(job.loop):
            self._commit_by_helper(job)
        else:
            self._to_threads(job)        # writer.py
        return await job.future

    def close(self) -> None:
        """Stop the commit helpers and the sync and writer threads after the
        jobs already handed over."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        self._stop_threads()

    # --- the commit helpers (syncpool.py), on the loop thread ------------------------

    def _helpers(self, loop) -> SyncPool | None:
        """The commit helpers for LOOP, started when needed.  If they cannot
        be started (the interpreter not executable by RunAsUser, no
        processes left), commits go to the threads from now on: slower,
        never lost."""
        pool = self._pool
        if pool is None or pool.loop is not loop or pool.broken:
            if pool is not None:
                pool.close()
            self._pool = None
            try:
                self._pool = SyncPool(loop, self.commit_helpers, self._helper_done)
            except OSError as exc:
                log.warning(maillog.commit_helpers_unavailable(exc))
                self.commit_helpers = 0
        return self._pool

    def _commit_by_helper(self, job: Commit) -> None:
        pool = self._pool
        self._reserve(job)
        if job.error is not None:
            self._settle(job)
            return
        pool.submit(job, job.tmp, job.dest, job.blob)

    def _helper_done(self, job: Commit, err: int, gone: BaseException | None) -> None:
        with self._room_lock:
            self._reserved -= job.need
        if gone is not None:             # it may have renamed the file before it died
            job.dirs = {self._path("queue")}
            self._fail(job, SpoolError(f"{job.qid}: commit helper failed: {gone}"))
        elif err:
            self._fail(job, spool_error(OSError(err, os.strerror(err)), job.qid))
        self._settle(job)

    # --- room: MinFreeBlocks, for both commit paths --------------------------------

    def _reserve(self, job: Job) -> None:
        """MinFreeBlocks, counting the commits being written beside this one
        (a sync thread's, or the loop's before a helper takes the commit)."""
        with self._room_lock:
            try:
                st = os.statvfs(self.directory)
            except OSError as exc:
                self._fail(job, spool_error(exc, f"statvfs {self.directory}"))
                return
            free = st.f_bavail * st.f_frsize - self.min_free_blocks * 1024 - self._reserved
            if job.need > free:
                self._fail(job, SpoolFull(f"{job.qid}: spool below MinFreeBlocks"
                                          f" ({self.min_free_blocks} KiB must stay free)"))
                return
            self._reserved += job.need

    def _check_room(self, batch: list[Job]) -> None:
        """The same for jobs the writer thread writes itself (a maildrop
        import at start-up): one statvfs for the batch."""
        if not any(j.need for j in batch):
            return
        try:
            st = os.statvfs(self.directory)
        except OSError as exc:
            for job in batch:
                self._fail(job, spool_error(exc, f"statvfs {self.directory}"))
            return
        free = st.f_bavail * st.f_frsize - self.min_free_blocks * 1024
        for job in batch:
            if job.need and job.need > free:
                self._fail(job, SpoolFull(f"{job.qid}: spool below MinFreeBlocks"
                                          f" ({self.min_free_blocks} KiB must stay free)"))
            free -= job.need
