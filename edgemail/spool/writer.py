"""writer.py - the store's threads: the writer thread that runs changes to
existing queue files, and the commit threads, the fallback of the commit
helpers.

NAME
    writer - run spool changes off the event loop, in crash-safe order

DESCRIPTION
    Writer runs Changes (jobs.py: Append, Remove) on one thread, in
    batches: it takes every change already waiting, prepares each (one U
    record written and fsynced), publishes each (rename or unlink), fsyncs
    every directory the batch touched once, and hands the batch back
    (InFlight.from_thread), whichever way commits go.

    CommitThreads is what commits when there are no commit helpers
    (commit_helpers = 0, or helpers that cannot start): COMMIT_THREADS
    threads, each taking every commit already waiting as one batch and
    committing it with jobs.commit_files(), the same link.fileio.
    commit_new() a helper process runs (syncer.py): one code path for
    both.  Both classes start their threads on first use; close() stops
    them after the jobs already handed over.

INVARIANTS
    A batch of the writer holds at most one change to a file: a second
    change to the same qid waits for the next batch, so changes to one
    message keep their order.  A change to a message comes only after its
    commit was settled (the store knows no qid before), so changes and
    commits need no order between them.

FAILURES
    A step's OSError fails that job with SpoolFull or SpoolError
    (layout.spool_error) and rolls it back (jobs.py).  Any other exception
    is our bug: logged (maillog.spool_writer_error, with traceback), the
    job (or the commit batch) fails with SpoolError and the thread lives on.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from link.fileio import fsync_dir

from edgemail import maillog
from edgemail.errors import SpoolError
from edgemail.spool.jobs import Change, Commit, Job, commit_files
from edgemail.spool.layout import spool_error

log = logging.getLogger("edgemail.spool")

#: threads that commit new files side by side (the fallback of the helpers)
COMMIT_THREADS = 4

#: hands finished jobs back to their loops (jobs.InFlight.from_thread)
Deliver = Callable[[Sequence[Job]], None]
J = TypeVar("J", bound=Job)


def _batches(jobs: queue.SimpleQueue[J | None], first: J, same_file_apart: bool) -> tuple[list[J], J | None]:
    """FIRST and every job already waiting after it; stops at the end
    sentinel (None) or, with SAME_FILE_APART, at a second job for a qid
    already in the batch.  Returns the batch and what stopped it."""
    batch, qids = [first], {first.qid}
    while True:
        try:
            nxt = jobs.get_nowait()
        except queue.Empty:
            return batch, None
        if nxt is None or (same_file_apart and nxt.qid in qids):
            return batch, nxt
        batch.append(nxt)
        qids.add(nxt.qid)


def _internal_error(jobs: list[J], exc: Exception) -> None:
    """A bug must not kill a thread: log it, fail the jobs."""
    for job in jobs:
        log.error(maillog.spool_writer_error(job.qid), exc_info=exc)
        job.fail(SpoolError(f"{job.qid}: internal error: {exc!r}"))


class Writer:
    """The writer thread: Changes, in batches, in order per file."""

    def __init__(self, deliver: Deliver) -> None:
        self.deliver = deliver
        self._jobs: queue.SimpleQueue[Change | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def submit(self, change: Change) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, daemon=True,
                                            name="edgemail-spool-writer")
            self._thread.start()
        self._jobs.put(change)

    def close(self) -> None:
        """After the changes already handed over."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        carry: Change | None = None
        while True:
            job = carry or self._jobs.get()
            if job is None:
                return
            batch, carry = _batches(self._jobs, job, same_file_apart=True)
            self.run_batch(batch)
            self.deliver(batch)

    def run_batch(self, batch: list[Change]) -> None:
        for step in ("prepare", "publish"):
            for job in batch:
                if job.error is None:
                    self._step(job, getattr(job, step))
        for d in sorted(set().union(*(j.dirs for j in batch if j.error is None))):
            try:
                fsync_dir(d)
            except OSError as exc:
                for job in batch:
                    if job.error is None and d in job.dirs:
                        job.fail(spool_error(exc, f"fsync {d}"))

    @staticmethod
    def _step(job: Change, step: Callable[[], None]) -> None:
        try:
            step()
        except OSError as exc:
            job.fail(spool_error(exc, job.qid))
        except Exception as exc:
            _internal_error([job], exc)


class CommitThreads:
    """COMMIT_THREADS threads committing batches of new files."""

    def __init__(self, deliver: Deliver, count: int = COMMIT_THREADS) -> None:
        self.deliver, self.count = deliver, count
        self._jobs: queue.SimpleQueue[Commit | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def submit(self, job: Commit) -> None:
        if not self._threads:
            self._threads = [threading.Thread(target=self._loop, daemon=True,
                                              name=f"edgemail-spool-commit-{i}")
                             for i in range(self.count)]
            for t in self._threads:
                t.start()
        self._jobs.put(job)

    def running(self) -> int:
        """Commit threads alive now."""
        return sum(t.is_alive() for t in self._threads)

    def close(self) -> None:
        """After the commits already handed over."""
        for _ in self._threads:
            self._jobs.put(None)
        for t in self._threads:
            t.join()
        self._threads = []

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            batch, stop = _batches(self._jobs, job, same_file_apart=False)
            try:
                commit_files(batch)
            except Exception as exc:
                _internal_error(batch, exc)
            self.deliver(batch)
            if stop is not None:         # the end: its sentinel was ours
                return
