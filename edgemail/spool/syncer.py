"""syncer.py - the spool's commit helpers: small processes that write, fsync
and rename new queue files, so the fsyncs of a commit never wait for the
event loop's interpreter lock, nor it for them.

NAME
    syncer - commit new queue files in helper processes

WHY A PROCESS
    A commit is a handful of system calls (create, write, fsync, close,
    rename, fsync of the directory).  On a thread of the daemon each of them
    gives the interpreter lock back and must take it again from a busy event
    loop; measured here that doubled the time a commit takes under load
    (tests/bench/README.md).  A helper has no lock to share: it runs the
    calls back to back and answers through a pipe the event loop already
    watches.

PROTOCOL (one pipe each way, little-endian)
    request   "<IIHH" job, blob length, tmp length, dest length; tmp path;
              dest path; blob
    reply     "<Ii"  job, errno (0: committed: the file is fsynced, renamed
              into place and its directory fsynced)
    The helper takes every request already waiting as one batch: writes and
    fsyncs each file, renames them, then fsyncs each directory once.  On an
    error it removes what it made of that job (tmp and dest) and answers
    the errno; it never answers 0 before the directory fsync.

NEVER
    Imports anything but os, select, signal, struct and sys (it is started with -I -S
    from this file's path: a few megabytes), touches a file it was not named,
    or renames a file for a daemon that is gone: before each rename it
    checks that its parent is still the daemon, and end of input (the
    daemon closed the pipe or died) ends it.
"""

from __future__ import annotations

import os
import select
import signal
import struct
import sys

REQUEST = struct.Struct("<IIHH")
REPLY = struct.Struct("<Ii")
#: the daemon: its pid comes as the first argument (it may die before this
#: process gets here, and then getppid() would already say who adopted us)
PARENT = int(sys.argv[1]) if __name__ == "__main__" and len(sys.argv) > 1 else os.getppid()


def _read_exact(fd: int, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, n - got)
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _read_request(fd: int) -> tuple[int, str, str, bytes]:
    job, size, ntmp, ndest = REQUEST.unpack(_read_exact(fd, REQUEST.size))
    names = _read_exact(fd, ntmp + ndest)
    blob = _read_exact(fd, size)
    return job, os.fsdecode(names[:ntmp]), os.fsdecode(names[ntmp:]), blob


def _write_file(tmp: str, blob: bytes) -> None:
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(blob)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _commit_batch(batch: list[tuple[int, str, str, bytes]]) -> list[tuple[int, int]]:
    errors: dict[int, int] = {}
    for job, tmp, dest, blob in batch:
        try:
            _write_file(tmp, blob)
            if os.getppid() != PARENT:   # the daemon died: nobody will answer 250
                _unlink(tmp)
                raise SystemExit(0)
            os.rename(tmp, dest)
        except OSError as exc:
            errors[job] = exc.errno or -1
            _unlink(tmp)
    for d in sorted({os.path.dirname(dest) for job, _, dest, _ in batch if job not in errors}):
        try:
            fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            for job, _, dest, _ in batch:
                if job not in errors and os.path.dirname(dest) == d:
                    errors[job] = exc.errno or -1
                    _unlink(dest)
    return [(job, errors.get(job, 0)) for job, _, _, _ in batch]


def serve(rfd: int, wfd: int) -> None:
    """The helper's loop: batches of requests in, one reply per job out.
    A request cut off by the end of input was never acknowledged: dropped."""
    eof = False
    while not eof:
        batch = []
        try:
            batch.append(_read_request(rfd))
            while select.select([rfd], [], [], 0)[0]:
                batch.append(_read_request(rfd))
        except EOFError:
            eof = True
        if batch:
            out = b"".join(REPLY.pack(job, err) for job, err in _commit_batch(batch))
            view = memoryview(out)
            while view:
                view = view[os.write(wfd, view):]


if __name__ == "__main__":
    # systemd's stop and a terminal's ^C reach the whole group: the daemon
    # decides when a helper ends (end of input), so commits in flight finish
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if os.getppid() == PARENT:
        serve(sys.stdin.fileno(), sys.stdout.fileno())
