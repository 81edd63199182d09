"""fileio.py - small file primitives in the order crash safety needs; shared by link and edgemail.

NAME
    fileio - write_all, write_new, write_atomically, fsync_dir, fsync_file, unlink_quietly, read_file

DESCRIPTION
    ``write_atomically(path, data)`` is how every small state file is
    replaced (the link's ledger link.json, the MX cache, hoststat.json,
    linkup.json): the data goes to a temporary file in the same directory,
    is fsynced, renamed over PATH, and the directory is fsynced.  A reader
    sees the old file or the new one, never part of one, and once the call
    returns the new one survives a crash.  The temporary name carries the
    pid and a counter, so two writers in one process or in two never share
    it.  Its mode is 0640 (the daemon's group may read it), whatever the
    umask.

    The spool's commit path (edgemail/spool/fileio.py, syncer.py) is built
    from the same primitives.  This module imports only the standard
    library (link is the lower layer: edgemail may import it, link never
    imports edgemail).

FAILURES
    Every call raises OSError; write_atomically leaves no temporary file
    behind when it fails.
"""

from __future__ import annotations

import itertools
import os

_counter = itertools.count()


def write_all(fd: int, blob: bytes) -> None:
    view = memoryview(blob)
    while view:
        view = view[os.write(fd, view):]


def write_new(path: str, blob: bytes, mode: int = 0o600) -> None:
    """Create PATH (it must not exist) with MODE (not narrowed by the umask),
    write BLOB, fsync.  On failure PATH is gone."""
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


def write_atomically(path: str, data: bytes | str, mode: int = 0o640) -> None:
    """Replace PATH with DATA durably: temporary file, fsync, rename, fsync of the directory."""
    tmp = f"{path}.tmp.{os.getpid()}.{next(_counter)}"
    write_new(tmp, data.encode() if isinstance(data, str) else data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        unlink_quietly(tmp)
        raise
    fsync_dir(os.path.dirname(os.path.abspath(path)))


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
