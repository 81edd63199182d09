"""writer.py - the store's thread path: the jobs that change the spool, the
sync threads that write new files and the writer thread that publishes them.

NAME
    writer - run spool changes off the event loop, in crash-safe order

DESCRIPTION
    Every change is a Job, in four steps:
        prepare()   write and fsync file data (a new tmp/QID, or one U record)
        publish()   rename or unlink
        (batch)     fsync every directory a published job touched, once
        apply()     update the index, on the event loop thread
    Commit writes tmp/QID; Append adds one U record and then moves the
    file (hold/release) or unlinks it (every recipient final); Remove
    unlinks.

    With commit_helpers = 0 a commit writes tmp/QID and fsyncs it on one
    of SYNC_THREADS sync threads, side by side with other sessions'
    commits; then the writer thread renames it to queue/QID and fsyncs
    queue/, once per batch of waiting jobs.  Other changes (U records,
    hold, remove) are written and fsynced on the writer thread, in order,
    whichever way commits go.  At start-up recover() imports maildrop/
    by running each commit as a batch of its own on its own thread
    (_run_batch; maildrop.py).
    A state update appends one U record to the file and fsyncs it.  A
    record left half-written by a crash is the last one and is cut off at
    start-up (record.py: only the last U record can be torn; recovery.py).

INVARIANTS
    A batch holds at most one change to a file: a second change to the
    same qid waits for the next batch, so changes to one message keep
    their order.  A file is renamed only after its data was fsynced, and a
    job is answered only after its directories were fsynced (store.py,
    CRASH STATES S3, S4).  An unlink that says "done" needs no directory
    fsync: the U record before it already says so durably (S6).  While
    the daemon runs the index changes only on the loop thread (_settle),
    and before the caller hears of it (even a cancelled caller).  Bytes being written on a sync thread
    count against MinFreeBlocks until statvfs sees them (store.py _reserve).

FAILURES
    A step's OSError fails that job with SpoolFull or SpoolError
    (fileio.spool_error) and rolls it back: a new file's tmp/QID and
    queue/QID are removed; a failed append is cut back at once, never
    leaving a bad record before a later good one.  Any other exception is
    our bug: logged (maillog.spool_writer_error, with traceback), the job
    fails with SpoolError and the writer thread lives on.  A job whose
    event loop has closed is dropped: nobody is waiting for it.

The store supplies: retry_factor, _index, _pending, _path(), _locate(),
_reserve() and _check_room() (store.py).  _room_lock and _reserved are
made here (_init_threads) and shared with the store's room checks.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from edgemail import maillog
from edgemail.errors import SpoolError
from edgemail.spool import record
from edgemail.spool.fileio import (
    fsync_dir,
    spool_error,
    unlink_quietly,
    write_all,
    write_new,
)
from edgemail.spool.record import QueueEntry, StateUpdate

if TYPE_CHECKING:
    from edgemail.spool.store import Store

log = logging.getLogger("edgemail.spool")

#: commits whose files are written and fsynced side by side
SYNC_THREADS = 4


# --- jobs ------------------------------------------------------------------------

class Job:
    """One spool change.  prepare() writes and fsyncs file data; publish()
    renames or unlinks; the batch then fsyncs every directory in .dirs;
    apply() updates the index on the event loop thread."""

    need = 0                     # bytes of new spool space this job takes
    prepared = False             # prepare() already ran (on a sync thread)
    error: SpoolError | None = None
    future: asyncio.Future | None = None
    loop: asyncio.AbstractEventLoop | None = None

    def __init__(self, store: Store, qid: str) -> None:
        self.store, self.qid, self.dirs = store, qid, set()

    def prepare(self) -> None: ...
    def publish(self) -> None: ...
    def rollback(self) -> None: ...
    def apply(self): ...


class Commit(Job):
    def __init__(self, store: Store, entry: QueueEntry, blob: bytes) -> None:
        super().__init__(store, entry.qid)
        self.entry, self.blob, self.need = entry, blob, len(blob)
        self.tmp = store._path("tmp", entry.qid)
        self.dest = store._path("queue", entry.qid)

    def prepare(self) -> None:
        write_new(self.tmp, self.blob)

    def publish(self) -> None:
        os.rename(self.tmp, self.dest)
        self.dirs = {self.store._path("queue")}

    def rollback(self) -> None:
        unlink_quietly(self.tmp)
        if self.dirs:
            unlink_quietly(self.dest)

    def apply(self) -> str:
        self.store._index[self.qid] = self.entry
        return self.qid


class Append(Job):
    """Append one U record; then maybe move the file (hold/release) or unlink
    it (every recipient final: the record already says so durably)."""

    def __init__(self, store: Store, entry: QueueEntry, update: StateUpdate) -> None:
        super().__init__(store, entry.qid)
        self.blob = record.encode_update(update)
        self.after = record.apply(entry, update, retry_factor=store.retry_factor)
        self.was_held = entry.held
        self.path = ""

    def prepare(self) -> None:
        self.path = self.store._locate(self.qid, self.was_held)
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
            dest = self.store._path("hold" if self.after.held else "queue", self.qid)
            os.rename(self.path, dest)
            self.dirs = {os.path.dirname(self.path), os.path.dirname(dest)}

    def apply(self) -> QueueEntry:
        if self.after.done:
            self.store._index.pop(self.qid, None)
        else:
            self.store._index[self.qid] = self.after
        return self.after


class Remove(Job):
    def __init__(self, store: Store, entry: QueueEntry) -> None:
        super().__init__(store, entry.qid)
        self.held = entry.held

    def publish(self) -> None:
        path = self.store._locate(self.qid, self.held)
        os.unlink(path)
        self.dirs = {os.path.dirname(path)}

    def apply(self) -> None:
        self.store._index.pop(self.qid, None)


# --- the threads -------------------------------------------------------------------

class WriterThreads:
    """Mixin for Store: the sync threads and the writer thread, started on
    first use and stopped by close()."""

    def _init_threads(self) -> None:
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._syncers: ThreadPoolExecutor | None = None
        self._room_lock = threading.Lock()
        self._reserved = 0               # bytes of commits being written now

    def _to_threads(self, job: Job) -> None:
        """Hand JOB over: a commit to a sync thread, any other change to the writer."""
        if self._writer is None:         # the thread path, and every change after a commit
            self._writer = threading.Thread(target=self._write_loop, daemon=True,
                                            name="edgemail-spool-writer")
            self._writer.start()
        if isinstance(job, Commit):
            if self._syncers is None:
                self._syncers = ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="edgemail-spool-sync")
            self._syncers.submit(self._prepare_early, job)
        else:
            self._jobs.put(job)

    def _stop_threads(self) -> None:
        """After the jobs already handed over."""
        if self._syncers is not None:
            self._syncers.shutdown()     # every commit is in the writer's queue now
            self._syncers = None
        if self._writer is not None:
            self._jobs.put(None)
            self._writer.join()
            self._writer = None

    # --- the sync threads -------------------------------------------------------------

    def _prepare_early(self, job: Job) -> None:
        """A new file's room check, write and fsync, then on to the writer."""
        self._reserve(job)
        if job.error is None:
            self._step(job, job.prepare)
            with self._room_lock:        # written: statvfs counts it from now on
                self._reserved -= job.need
        job.prepared = True
        if job.error is None:
            self._jobs.put(job)
        else:
            self._notify([job])

    # --- the writer thread ----------------------------------------------------------

    def _write_loop(self) -> None:
        carry: Job | None = None
        while True:
            job = carry or self._jobs.get()
            carry = None
            if job is None:
                return
            batch, qids = [job], {job.qid}
            while True:                    # take every commit already waiting
                try:
                    nxt = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if nxt is None or nxt.qid in qids:
                    carry = nxt            # sentinel, or a second change to one file
                    break
                batch.append(nxt)
                qids.add(nxt.qid)
            self._run_batch(batch)
            self._notify(batch)

    def _notify(self, jobs: list[Job]) -> None:
        """Hand finished jobs to their loops: one wake-up per loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[Job]] = {}
        for job in jobs:
            by_loop.setdefault(job.loop, []).append(job)
        for loop, mine in by_loop.items():
            try:
                loop.call_soon_threadsafe(self._settle_all, mine)
            except RuntimeError:           # loop closed: nobody is waiting
                pass

    def _settle_all(self, jobs: list[Job]) -> None:
        for job in jobs:
            self._settle(job)

    def _settle(self, job: Job) -> None:
        """On the loop thread: index first (even if the caller was cancelled)."""
        self._pending.discard(job.qid)
        if job.error is not None:
            if not job.future.cancelled():
                job.future.set_exception(job.error)
            return
        result = job.apply()
        if not job.future.cancelled():
            job.future.set_result(result)

    def _run_batch(self, batch: list[Job]) -> None:
        self._check_room([j for j in batch if not j.prepared])
        for job in batch:
            if job.error is None and not job.prepared:
                self._step(job, job.prepare)
        for job in batch:
            if job.error is None:
                self._step(job, job.publish)
        for d in set().union(*(j.dirs for j in batch if j.error is None)):
            try:
                fsync_dir(d)
            except OSError as exc:
                for job in batch:
                    if job.error is None and d in job.dirs:
                        self._fail(job, spool_error(exc, f"fsync {d}"))

    def _step(self, job: Job, step) -> None:
        try:
            step()
        except OSError as exc:
            self._fail(job, spool_error(exc, job.qid))
        except Exception as exc:           # a bug must not kill the writer thread
            log.exception(maillog.spool_writer_error(job.qid))
            self._fail(job, SpoolError(f"{job.qid}: internal error: {exc!r}"))

    def _fail(self, job: Job, error: SpoolError) -> None:
        job.error = error
        job.rollback()
