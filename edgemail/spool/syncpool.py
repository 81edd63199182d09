"""syncpool.py - the daemon's side of the commit helpers (syncer.py).

NAME
    syncpool - hand new queue files to helper processes, on the event loop

DESCRIPTION
    SyncPool starts COUNT helpers (command(): `python -I -S syncer.py
    DAEMON_PID FILEIO_PATH`) and talks to each through two pipes that the
    running event loop watches: a commit is one write of a request, its
    answer one read of an 8-byte reply.  A job goes to the helper with the
    fewest jobs outstanding.  The pool belongs to the loop it was started
    on.

    CommitHelpers is the store's side: it keeps one pool, starts another
    when asked from a different loop or after the pool broke, and turns
    the answers into the jobs' results (jobs.py Commit) before handing
    them to settle().  If helpers cannot be started (the interpreter not
    executable by RunAsUser, no processes left) it says so once
    (maillog.commit_helpers_unavailable) and takes no commit from then on:
    they go to the threads (writer.py), slower, never lost.

FAILURES
    A helper that exits or whose pipe breaks fails every job it holds with
    SpoolError (the sessions answer 451, nothing was acknowledged) and the
    pool is marked broken; the next commit starts a new one.  The helper
    removes what it made of a failed job; so does the failure path here
    (tmp and dest, Commit.rollback), for a helper killed mid-commit.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable

import link.fileio

from edgemail import maillog
from edgemail.errors import SpoolError
from edgemail.spool import syncer
from edgemail.spool.jobs import Commit

log = logging.getLogger("edgemail.spool")

HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "syncer.py")

#: answer(job, errno or 0, the exception when its helper is gone or None)
Answer = Callable[[Commit, int, "BaseException | None"], None]


def command(daemon_pid: int) -> list[str]:
    """The helper's command line (syncer.py USAGE)."""
    return [sys.executable, "-I", "-S", HELPER, str(daemon_pid), os.path.abspath(link.fileio.__file__)]


class _Helper:
    """One helper process and its two non-blocking pipes, watched by the loop."""

    def __init__(self, pool: "SyncPool") -> None:
        self.pool = pool
        self.proc = subprocess.Popen(command(os.getpid()), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, close_fds=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        self.wfd = self.stdin.fileno()
        self.rfd = self.stdout.fileno()
        os.set_blocking(self.wfd, False)
        os.set_blocking(self.rfd, False)
        self.jobs: dict[int, Commit] = {}
        self.out = bytearray()           # request bytes the pipe has not taken yet
        self.inb = bytearray()           # reply bytes not yet a whole reply
        self.alive = True
        self.closing = False
        pool.loop.add_reader(self.rfd, self._readable)

    def send(self, data: bytes) -> None:
        if not self.out:
            try:
                data = data[os.write(self.wfd, data):]
            except BlockingIOError:
                pass
            except OSError as exc:
                self.lost(exc)
                return
            if not data:
                return
            self.pool.loop.add_writer(self.wfd, self._writable)
        self.out += data

    def _writable(self) -> None:
        try:
            del self.out[: os.write(self.wfd, self.out)]
        except BlockingIOError:
            return
        except OSError as exc:
            self.lost(exc)
            return
        if not self.out:
            self.pool.loop.remove_writer(self.wfd)

    def _readable(self) -> None:
        try:
            data = os.read(self.rfd, 65536)
        except BlockingIOError:
            return
        except OSError as exc:
            self.lost(exc)
            return
        if not data:
            self.lost(None)
            return
        self._answers(data)

    def _answers(self, data: bytes) -> None:
        self.inb += data
        size = syncer.REPLY.size
        n = len(self.inb) // size
        replies = [syncer.REPLY.unpack_from(self.inb, i * size) for i in range(n)]
        del self.inb[: n * size]
        for job_id, err in replies:
            job = self.jobs.pop(job_id, None)
            if job is not None:
                self.pool.answer(job, err, None)

    def lost(self, exc: BaseException | None) -> None:
        """The helper is gone (end of its output, or a broken pipe): fail
        what it still holds and close our ends (on the loop thread)."""
        if not self.alive:
            return
        self.alive = False
        if exc is None and not self.stdout.closed:
            try:                         # answers still in the pipe count
                while data := os.read(self.rfd, 65536):
                    self._answers(data)
            except OSError:
                pass
        loop = self.pool.loop
        if not loop.is_closed():
            loop.remove_reader(self.rfd)
            loop.remove_writer(self.wfd)
        if not self.closing:
            self.pool.broken = True
        jobs, self.jobs = self.jobs, {}
        why = exc or ConnectionError(f"commit helper {self.proc.pid} exited")
        for job in jobs.values():
            self.pool.answer(job, 0, why)
        self.close_input()
        self.stdout.close()

    def close_input(self) -> None:
        """Flush what is owed (blocking: a few requests at most), then close
        the helper's input: it finishes the jobs it has, answers, and exits."""
        self.closing = True
        if self.stdin.closed:
            return
        if not self.pool.loop.is_closed():
            self.pool.loop.remove_writer(self.wfd)
        try:
            if self.out:
                os.set_blocking(self.wfd, True)
                os.write(self.wfd, self.out)
        except OSError:
            pass
        self.out.clear()
        self.stdin.close()


class SyncPool:
    """COUNT helper processes for LOOP; answer() is called on LOOP for each job."""

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int, answer: Answer) -> None:
        self.loop = loop
        self.answer = answer
        self.broken = False
        self._ids = itertools.count(1)
        self.helpers: list[_Helper] = []
        try:
            for _ in range(count):
                self.helpers.append(_Helper(self))
        except OSError:                  # e.g. the interpreter not executable by RunAsUser
            self.close()
            raise

    def submit(self, job: Commit) -> None:
        """Send JOB's file to the least busy helper; answer() is called with
        JOB when it answers.  On the loop thread only."""
        helper = min((h for h in self.helpers if h.alive and not h.closing), key=lambda h: len(h.jobs), default=None)
        if helper is None:
            self.answer(job, 0, ConnectionError("no commit helper running"))
            return
        job_id = next(self._ids)
        names = os.fsencode(job.tmp), os.fsencode(job.dest)
        helper.jobs[job_id] = job
        helper.send(syncer.REQUEST.pack(job_id, len(job.blob), len(names[0]), len(names[1]))
                    + names[0] + names[1] + job.blob)

    def close(self, timeout: float = 10.0) -> None:
        """End the helpers after the jobs they hold and reap them (blocking,
        as Store.close() is).  From any thread: when the pool's loop runs
        on another thread, the pipes are closed there and the answers still
        come in; otherwise what is left unanswered fails."""
        helpers, self.helpers = self.helpers, []
        if not helpers:
            return
        try:
            here = asyncio.get_running_loop() is self.loop
        except RuntimeError:
            here = False
        elsewhere = not here and self.loop.is_running()
        if elsewhere:
            done = threading.Event()

            def close_inputs() -> None:
                for h in helpers:
                    h.close_input()
                done.set()
            self.loop.call_soon_threadsafe(close_inputs)
            done.wait(timeout)
        else:
            for h in helpers:
                h.close_input()
        for h in helpers:
            try:
                h.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                h.proc.kill()
                h.proc.wait()
        if not elsewhere:
            for h in helpers:
                h.lost(None)


class CommitHelpers:
    """The store's commit helpers: COUNT processes (0: none), a pool per loop."""

    def __init__(self, count: int, settle: Callable[[Commit], None]) -> None:
        self.count = count
        self.settle = settle
        self.pool: SyncPool | None = None

    def submit(self, job: Commit) -> bool:
        """Hand JOB (started on the running loop) to a helper; False when
        there are none, and JOB is the caller's to commit otherwise."""
        assert job.loop is not None
        pool = self._pool_for(job.loop) if self.count else None
        if pool is None:
            return False
        pool.submit(job)
        return True

    def _pool_for(self, loop: asyncio.AbstractEventLoop) -> SyncPool | None:
        """The pool for LOOP, started when needed; None when it cannot be."""
        pool = self.pool
        if pool is None or pool.loop is not loop or pool.broken:
            if pool is not None:
                pool.close()
            self.pool = None
            try:
                self.pool = SyncPool(loop, self.count, self._answer)
            except OSError as exc:
                log.warning(maillog.commit_helpers_unavailable(exc))
                self.count = 0
        return self.pool

    def _answer(self, job: Commit, err: int, gone: BaseException | None) -> None:
        if gone is not None:             # it may have renamed the file before it died
            job.fail(SpoolError(f"{job.qid}: commit helper failed: {gone}"))
        elif err:
            job.failed(err)
        self.settle(job)

    def pids(self) -> list[int]:
        """The helper processes running now."""
        return [h.proc.pid for h in self.pool.helpers if h.alive] if self.pool else []

    def outstanding(self) -> int:
        """Commits handed to helpers and not yet answered."""
        return sum(len(h.jobs) for h in self.pool.helpers) if self.pool else 0

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool = None
