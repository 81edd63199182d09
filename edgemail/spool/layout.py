"""layout.py - the spool directory's tree: where each file lives, and how its
file system errors are reported.

NAME
    layout - paths of the spool's subdirectories, locate a queue file, move a
    damaged one to corrupt/; spool_error()

DESCRIPTION
    Layout names the tree store.py documents (tmp/, queue/, hold/,
    corrupt/, maildrop/ under one directory), finds a message's file from
    its held flag (locate(): the flag is the truth, the directory follows
    it, so the other directory is tried too, for a crash between the two),
    creates the tree at start-up (queue/ and hold/ 0750, for the daemon's
    group's mailq; maildrop/ 1733: see maildrop.py) and
    moves damaged files to corrupt/ (quarantine()), never deleting them.
    spool_error() turns an OSError into SpoolFull (ENOSPC, EDQUOT) or
    SpoolError, prefixed with what was being done; every part of the
    spool reports its failures through it.

NEVER
    Keeps state beyond the directory's path, or decides anything: the store
    and its parts choose what to move and when.

FAILURES
    Every call raises OSError.  A quarantined file is logged to
    "edgemail.spool" (maillog.corrupt_file).
"""

from __future__ import annotations

import errno
import logging
import os

from edgemail import maillog
from edgemail.errors import SpoolError, SpoolFull

log = logging.getLogger("edgemail.spool")

SUBDIRS = ("tmp", "queue", "hold", "corrupt", "maildrop")
#: any local user's `sendmail` may drop files; nobody may list them
MAILDROP_DIR_MODE = 0o1733
#: the daemon's group may list (and read) the queue: mailq with the daemon down
QUEUE_DIR_MODE = 0o750


def spool_error(exc: OSError, what: str) -> SpoolError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return SpoolFull(f"{what}: no space on spool ({exc.strerror})")
    return SpoolError(f"{what}: {exc.strerror or exc}")


class Layout:
    """The spool's tree under DIRECTORY (made absolute)."""

    def __init__(self, directory: str) -> None:
        self.directory = os.path.abspath(directory)

    def path(self, sub: str, name: str = "") -> str:
        return os.path.join(self.directory, sub, name) if name else os.path.join(self.directory, sub)

    def locate(self, qid: str, held: bool) -> str:
        """The file of QID: where its held flag says, else the other place."""
        first, second = ("hold", "queue") if held else ("queue", "hold")
        path = self.path(first, qid)
        if os.path.exists(path):
            return path
        return self.path(second, qid)

    def ensure(self) -> None:
        """Create the subdirectories (0700; queue/ and hold/ 0750, so the
        daemon's group may list the queue with the daemon down; maildrop/ 1733)."""
        for sub in SUBDIRS:
            os.makedirs(self.path(sub), mode=0o700, exist_ok=True)
        for sub in ("queue", "hold"):
            os.chmod(self.path(sub), QUEUE_DIR_MODE)
        os.chmod(self.path("maildrop"), MAILDROP_DIR_MODE)

    def quarantine(self, path: str, why: Exception) -> str:
        """Move a damaged file to corrupt/ (never delete it; NAME, NAME.1, ...);
        return its new name."""
        base = os.path.basename(path)
        name, n = base, 0
        while os.path.lexists(self.path("corrupt", name)):
            n += 1
            name = f"{base}.{n}"
        os.rename(path, self.path("corrupt", name))
        log.warning(maillog.corrupt_file(base, name, why))
        return name
