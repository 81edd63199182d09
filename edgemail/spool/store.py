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
    With commit_helpers = 0, and for maildrop imports, a commit writes
    tmp/QID and fsyncs it on one of SYNC_THREADS sync threads, side by side
    with other sessions' commits; then the writer thread renames it to
    queue/QID and fsyncs queue/, once per batch of waiting jobs.
    Other changes (U records, hold, remove) are written and fsynced on the
    writer thread, in order.
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
    Maildrop: M1 maildrop/.NAME (partial; `sendmail` has not reported
    success): recover() deletes dot files older than an hour.  M2
    maildrop/NAME complete.  M3 queue/QID committed and maildrop/NAME not yet
    unlinked: recover() imports it again, one duplicate.  M4 only queue/QID.

MAILDROP TRUST MODEL
    maildrop/ is mode 1733 and owned by the daemon's user (tmpfiles.d; the
    spool directory above it is 0751, so any local user may pass through
    it but only the edgemail group may list it).  Any local user's
    `sendmail` may create a file there; nobody but the daemon may list the
    directory, and the sticky bit lets only a file's owner or the daemon
    rename or delete it.  write_maildrop() makes each file 0644, whatever
    the umask, so the daemon (another uid) can read what an ordinary user
    dropped, as Postfix's world-writable maildrop did.  Secrecy from other
    local users rests on the name: 128 random bits (plus time and pid), in
    a directory they cannot list.  Content is trusted as far as a local
    `sendmail` command line is (any user may set any envelope sender, as
    with `sendmail -f`); the file's owner uid is who dropped it.  A drop is
    opened with O_NOFOLLOW|O_NONBLOCK and must be a regular file: a symlink,
    FIFO or device planted there goes to corrupt/ unread, so the directory
    cannot be used to make the daemon read its own files or hang.

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
import errno
import logging
import os
import queue
import secrets
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from edgemail import maillog
from edgemail.clock import Clock, SystemClock
from edgemail.envelope import Attempt, Envelope, QueueIdGenerator, is_queue_id, priority
from edgemail.errors import CorruptQueueFile, SpoolError, SpoolFull
from edgemail.spool import record
from edgemail.spool.record import QueueEntry, StateUpdate
from edgemail.spool.syncpool import SyncPool

__all__ = ["Store", "QueueEntry", "RecoveryReport", "write_maildrop"]

log = logging.getLogger("edgemail.spool")

SUBDIRS = ("tmp", "queue", "hold", "corrupt", "maildrop")
STALE_MAILDROP_S = 3600.0
#: commits whose files are written and fsynced side by side
SYNC_THREADS = 4
#: how long has_room() may answer from the last statvfs
ROOM_CACHE_S = 1.0
#: a drop must be readable by the daemon's user, which is not the dropper
MAILDROP_MODE = 0o644


@dataclass(frozen=True)
class RecoveryReport:
    loaded: int                       # entries in the index afterwards
    stale_tmp: tuple[str, ...]        # removed from tmp/
    corrupt: tuple[str, ...]          # moved to corrupt/ (their new names)
    truncated: tuple[str, ...]        # qids whose torn last state record was cut off
    finished: tuple[str, ...]         # qids whose recipients were all final: unlinked
    imported: tuple[str, ...]         # qids committed from maildrop/
    seconds: float


# --- file primitives (writer thread, or start-up) ----------------------------

def _spool_error(exc: OSError, what: str) -> SpoolError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return SpoolFull(f"{what}: no space on spool ({exc.strerror})")
    return SpoolError(f"{what}: {exc.strerror or exc}")


def _write_all(fd: int, blob: bytes) -> None:
    view = memoryview(blob)
    while view:
        view = view[os.write(fd, view):]


def _write_new(path: str, blob: bytes, mode: int = 0o600) -> None:
    """Create PATH with MODE (not narrowed by the umask), write BLOB, fsync.
    On failure PATH is gone."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        if mode != 0o600:
            os.fchmod(fd, mode)
        _write_all(fd, blob)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quietly(path)
        raise
    os.close(fd)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_drop_dir(path: str) -> None:
    """fsync maildrop/ after a rename into it.  An ordinary user cannot open
    the 1733 directory for reading (which fsync needs), so then sync(2)
    makes the new name durable instead: slower, but only `sendmail` with
    the daemon down comes here."""
    try:
        _fsync_dir(path)
    except PermissionError:
        os.sync()


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _read(path: str) -> bytes:
    with open(path, "rb", buffering=0) as f:
        return f.readall()


def _read_drop(path: str) -> bytes:
    """Read a maildrop file another user made: a regular file, not followed
    through a symlink, and never blocking on a FIFO.  Raises OSError or
    CorruptQueueFile."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, "rb", buffering=0) as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CorruptQueueFile("not a regular file")
        return f.readall()


def write_maildrop(maildrop_dir: str, envelope: Envelope, data: bytes, *,
                   now: float | None = None) -> str:
    """Drop a message for the daemon to import (what `sendmail` does when the
    daemon is down).  Synchronous; the file is fsynced, renamed into place
    and the directory fsynced before this returns its path.
    The file is mode 0644 (see MAILDROP TRUST MODEL).
    Raises SpoolFull (ENOSPC) or SpoolError; nothing is left behind."""
    created = time.time() if now is None else now
    blob = record.encode(envelope, data, created=created, kind=record.KIND_MAILDROP)
    name = f"{time.time_ns()}.{os.getpid()}.{secrets.token_hex(16)}"   # unguessable: 128 bits
    tmp, final = os.path.join(maildrop_dir, "." + name), os.path.join(maildrop_dir, name)
    try:
        _write_new(tmp, blob, MAILDROP_MODE)
        os.rename(tmp, final)
        _fsync_drop_dir(maildrop_dir)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise _spool_error(exc, f"maildrop {maildrop_dir}") from exc
    return final


# --- jobs for the writer thread ------------------------------------------------

class _Job:
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


class _Commit(_Job):
    def __init__(self, store: Store, entry: QueueEntry, blob: bytes) -> None:
        super().__init__(store, entry.qid)
        self.entry, self.blob, self.need = entry, blob, len(blob)
        self.tmp = store._path("tmp", entry.qid)
        self.dest = store._path("queue", entry.qid)

    def prepare(self) -> None:
        _write_new(self.tmp, self.blob)

    def publish(self) -> None:
        os.rename(self.tmp, self.dest)
        self.dirs = {self.store._path("queue")}

    def rollback(self) -> None:
        _unlink_quietly(self.tmp)
        if self.dirs:
            _unlink_quietly(self.dest)

    def apply(self) -> str:
        self.store._index[self.qid] = self.entry
        return self.qid


class _Append(_Job):
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
                _write_all(fd, self.blob)
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


class _Remove(_Job):
    def __init__(self, store: Store, entry: QueueEntry) -> None:
        super().__init__(store, entry.qid)
        self.held = entry.held

    def publish(self) -> None:
        path = self.store._locate(self.qid, self.held)
        os.unlink(path)
        self.dirs = {os.path.dirname(path)}

    def apply(self) -> None:
        self.store._index.pop(self.qid, None)


# --- the store ------------------------------------------------------------------

class Store:
    """The spool.  See the module docstring for layout, crash states and failures."""

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
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._syncers: ThreadPoolExecutor | None = None
        self._room_lock = threading.Lock()
        self._reserved = 0               # bytes of commits being written now
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
            qf = record.decode(_read(path), kind=record.KIND_QUEUE)
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
        return await self._submit(_Commit(self, entry, blob))

    async def update(self, qid: str, results: dict[str, Attempt], *,
                     next_attempt: float | None) -> QueueEntry:
        """Record one delivery attempt's results durably (attempts += 1 when
        RESULTS is not empty).  When every recipient is final the entry is
        removed (the returned entry has .done)."""
        entry = self._index[qid]
        update = StateUpdate(dict(results), attempts=entry.attempts + 1 if results else None,
                             next_attempt=next_attempt)
        return await self._submit(_Append(self, entry, update))

    async def hold(self, qid: str) -> QueueEntry:
        return await self._submit(_Append(self, self._index[qid], StateUpdate(held=True)))

    async def release(self, qid: str) -> QueueEntry:
        return await self._submit(_Append(self, self._index[qid], StateUpdate(held=False)))

    async def mark_warned(self, qid: str) -> QueueEntry:
        """Remember that the delay DSN (Timeout.queuewarn) went out."""
        return await self._submit(_Append(self, self._index[qid], StateUpdate(warned=True)))

    async def remove(self, qid: str) -> None:
        await self._submit(_Remove(self, self._index[qid]))

    async def _submit(self, job: _Job):
        job.loop = asyncio.get_running_loop()
        job.future = job.loop.create_future()
        self._pending.add(job.qid)
        if isinstance(job, _Commit) and self.commit_helpers:
            self._commit_by_helper(job)
            return await job.future
        if self._writer is None:         # the thread path, and every change after a commit
            self._writer = threading.Thread(target=self._write_loop, daemon=True,
                                            name="edgemail-spool-writer")
            self._writer.start()
        if isinstance(job, _Commit):
            if self._syncers is None:
                self._syncers = ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="edgemail-spool-sync")
            self._syncers.submit(self._prepare_early, job)
        else:
            self._jobs.put(job)
        return await job.future

    def close(self) -> None:
        """Stop the commit helpers and the sync and writer threads after the
        jobs already handed over."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._syncers is not None:
            self._syncers.shutdown()     # every commit is in the writer's queue now
            self._syncers = None
        if self._writer is not None:
            self._jobs.put(None)
            self._writer.join()
            self._writer = None

    # --- the commit helpers (syncpool.py), on the loop thread ------------------------

    def _commit_by_helper(self, job: _Commit) -> None:
        pool = self._pool
        if pool is None or pool.loop is not job.loop or pool.broken:
            if pool is not None:
                pool.close()
            self._pool = pool = SyncPool(job.loop, self.commit_helpers, self._helper_done)
        self._reserve(job)
        if job.error is not None:
            self._settle(job)
            return
        pool.submit(job, job.tmp, job.dest, job.blob)

    def _helper_done(self, job: _Commit, err: int, gone: BaseException | None) -> None:
        with self._room_lock:
            self._reserved -= job.need
        if gone is not None:             # it may have renamed the file before it died
            job.dirs = {self._path("queue")}
            self._fail(job, SpoolError(f"{job.qid}: commit helper failed: {gone}"))
        elif err:
            self._fail(job, _spool_error(OSError(err, os.strerror(err)), job.qid))
        self._settle(job)

    # --- the sync threads -------------------------------------------------------------

    def _prepare_early(self, job: _Job) -> None:
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

    def _reserve(self, job: _Job) -> None:
        """MinFreeBlocks, counting the commits being written beside this one."""
        with self._room_lock:
            try:
                st = os.statvfs(self.directory)
            except OSError as exc:
                self._fail(job, _spool_error(exc, f"statvfs {self.directory}"))
                return
            free = st.f_bavail * st.f_frsize - self.min_free_blocks * 1024 - self._reserved
            if job.need > free:
                self._fail(job, SpoolFull(f"{job.qid}: spool below MinFreeBlocks"
                                          f" ({self.min_free_blocks} KiB must stay free)"))
                return
            self._reserved += job.need

    # --- the writer thread ----------------------------------------------------------

    def _write_loop(self) -> None:
        carry: _Job | None = None
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

    def _notify(self, jobs: list[_Job]) -> None:
        """Hand finished jobs to their loops: one wake-up per loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
        for job in jobs:
            by_loop.setdefault(job.loop, []).append(job)
        for loop, mine in by_loop.items():
            try:
                loop.call_soon_threadsafe(self._settle_all, mine)
            except RuntimeError:           # loop closed: nobody is waiting
                pass

    def _settle_all(self, jobs: list[_Job]) -> None:
        for job in jobs:
            self._settle(job)

    def _settle(self, job: _Job) -> None:
        """On the loop thread: index first (even if the caller was cancelled)."""
        self._pending.discard(job.qid)
        if job.error is not None:
            if not job.future.cancelled():
                job.future.set_exception(job.error)
            return
        result = job.apply()
        if not job.future.cancelled():
            job.future.set_result(result)

    def _run_batch(self, batch: list[_Job]) -> None:
        self._check_room([j for j in batch if not j.prepared])
        for job in batch:
            if job.error is None and not job.prepared:
                self._step(job, job.prepare)
        for job in batch:
            if job.error is None:
                self._step(job, job.publish)
        for d in set().union(*(j.dirs for j in batch if j.error is None)):
            try:
                _fsync_dir(d)
            except OSError as exc:
                for job in batch:
                    if job.error is None and d in job.dirs:
                        self._fail(job, _spool_error(exc, f"fsync {d}"))

    def _check_room(self, batch: list[_Job]) -> None:
        if not any(j.need for j in batch):
            return
        try:
            st = os.statvfs(self.directory)
        except OSError as exc:
            for job in batch:
                self._fail(job, _spool_error(exc, f"statvfs {self.directory}"))
            return
        free = st.f_bavail * st.f_frsize - self.min_free_blocks * 1024
        for job in batch:
            if job.need and job.need > free:
                self._fail(job, SpoolFull(f"{job.qid}: spool below MinFreeBlocks"
                                          f" ({self.min_free_blocks} KiB must stay free)"))
            free -= job.need

    def _step(self, job: _Job, step) -> None:
        try:
            step()
        except OSError as exc:
            self._fail(job, _spool_error(exc, job.qid))
        except Exception as exc:           # a bug must not kill the writer thread
            log.exception(maillog.spool_writer_error(job.qid))
            self._fail(job, SpoolError(f"{job.qid}: internal error: {exc!r}"))

    def _fail(self, job: _Job, error: SpoolError) -> None:
        job.error = error
        job.rollback()

    # --- start-up ---------------------------------------------------------------------

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
            _fsync_dir(self._path(sub))
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
            _fsync_dir(self._path("tmp"))
            log.info(maillog.stale_tmp(len(names)))
        return names

    def _load(self, sub: str, name: str, report: dict[str, list[str]]) -> None:
        path = self._path(sub, name)
        try:
            if not is_queue_id(name) or name in self._index:
                raise CorruptQueueFile("not a queue file name" if name not in self._index
                                       else "duplicate queue id")
            qf = record.decode(_read(path), kind=record.KIND_QUEUE)
            if qf.qid != name:
                raise CorruptQueueFile(f"file says queue id {qf.qid!r}")
        except (CorruptQueueFile, OSError) as exc:
            report["corrupt"].append(self._quarantine(path, exc))
            return
        if qf.torn:
            os.truncate(path, qf.length)
            _fsync_file(path)
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

    # --- maildrop -----------------------------------------------------------------------

    def _maildrop_files(self, corrupt: list[str]) -> list[tuple[str, record.QueueFile]]:
        """Decoded maildrop files, oldest name first; damaged ones quarantined,
        stale partial dot files removed."""
        found = []
        for name in sorted(os.listdir(self.maildrop_dir)):
            path = os.path.join(self.maildrop_dir, name)
            if name.startswith("."):
                if _age(path, self.clock.wall()) > STALE_MAILDROP_S:
                    _unlink_quietly(path)
                continue
            try:
                qf = record.decode(_read_drop(path), kind=record.KIND_MAILDROP)
                if not qf.envelope.recipients:
                    raise CorruptQueueFile("no recipients")
                found.append((path, qf))
            except (CorruptQueueFile, OSError) as exc:
                corrupt.append(self._quarantine(path, exc))
        return found

    def _import_maildrop(self, corrupt: list[str]) -> list[str]:
        qids = []
        for path, qf in self._maildrop_files(corrupt):
            entry, blob = self._new_entry(qf.envelope, qf.data, qf.created)
            job = _Commit(self, entry, blob)
            self._run_batch([job])
            if job.error is not None:
                raise job.error
            qids.append(job.apply())
            os.unlink(path)              # after the commit: a crash here means a duplicate
            log.info(maillog.maildrop_import(entry.qid, os.path.basename(path)))
        if qids:
            _fsync_dir(self.maildrop_dir)
        return qids

    async def pickup(self) -> list[str]:
        """Import maildrop/ while running (a `sendmail` that raced the daemon's
        start).  Returns the new qids."""
        corrupt: list[str] = []
        files = await asyncio.to_thread(self._maildrop_files, corrupt)
        qids = []
        for path, qf in files:
            entry, blob = self._new_entry(qf.envelope, qf.data, qf.created)
            qids.append(await self._submit(_Commit(self, entry, blob)))
            await asyncio.to_thread(os.unlink, path)
        return qids


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _age(path: str, now: float) -> float:
    try:
        return now - os.stat(path).st_mtime
    except OSError:
        return 0.0
