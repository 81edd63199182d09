"""fileio.py - the spool's file system calls, each in the order crash safety needs.

NAME
    fileio - write, fsync, read and remove spool files; OSError to SpoolError

DESCRIPTION
    The few primitives the store builds its changes from (writer.py,
    recovery.py, maildrop.py).  write_new() is the first half of every
    commit: the file's data is fsynced before its name is published by a
    rename, so a name that survives a crash always has whole data behind it
    (store.py, CRASH STATES S3).  fsync_dir() is the second half: it makes
    a rename or unlink in that directory durable.

NEVER
    Renames anything, decides anything or keeps state: the callers choose
    the order.  write_new() never leaves a partial file behind on failure;
    unlink_quietly() is for clean-up on error paths only.  syncer.py has
    copies of write_all(), unlink_quietly() and the fsync of a directory:
    it is started with -I -S and imports nothing from edgemail.

FAILURES
    Every call raises OSError; spool_error() turns one into SpoolFull
    (ENOSPC, EDQUOT) or SpoolError, prefixed with what was being done.
"""

from __future__ import annotations

import errno
import os

from edgemail.errors import SpoolError, SpoolFull


def spool_error(exc: OSError, what: str) -> SpoolError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return SpoolFull(f"{what}: no space on spool ({exc.strerror})")
    return SpoolError(f"{what}: {exc.strerror or exc}")


def write_all(fd: int, blob: bytes) -> None:
    view = memoryview(blob)
    while view:
        view = view[os.write(fd, view):]


def write_new(path: str, blob: bytes, mode: int = 0o600) -> None:
    """Create PATH with MODE (not narrowed by the umask), write BLOB, fsync.
    On failure PATH is gone."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        if mode != 0o600:
            os.fchmod(fd, mode)
        write_all(fd, blob)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        unlink_quietly(path)
        raise
    os.close(fd)


def fsync_dir(path: str) -> None:
    _fsync(path, os.O_RDONLY | os.O_DIRECTORY)


def fsync_file(path: str) -> None:
    _fsync(path, os.O_WRONLY)


def _fsync(path: str, flags: int) -> None:
    fd = os.open(path, flags | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def read_file(path: str) -> bytes:
    with open(path, "rb", buffering=0) as f:
        return f.readall()
