"""fileio.py - the spool's file system calls, each in the order crash safety needs.

NAME
    fileio - write, fsync, read and remove spool files; OSError to SpoolError

DESCRIPTION
    The few primitives the store builds its changes from (writer.py,
    recovery.py, maildrop.py) are link/fileio.py's (write_new, write_all,
    fsync_dir, fsync_file, unlink_quietly, read_file), shared with every
    other state file; this module adds what only the spool needs and
    re-exports the rest.  write_new() is the first half of every commit: the file's data is fsynced before its name is published by a
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

from edgemail.errors import SpoolError, SpoolFull
from link.fileio import fsync_dir, fsync_file, read_file, unlink_quietly, write_all, write_new

__all__ = ["fsync_dir", "fsync_file", "read_file", "spool_error", "unlink_quietly", "write_all", "write_new"]


def spool_error(exc: OSError, what: str) -> SpoolError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return SpoolFull(f"{what}: no space on spool ({exc.strerror})")
    return SpoolError(f"{what}: {exc.strerror or exc}")
