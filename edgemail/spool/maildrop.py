"""maildrop.py - messages `sendmail` leaves while the daemon is down, and
their import into the queue.

NAME
    maildrop - write_maildrop() for `sendmail`; the import at start-up and
    by pickup()

DESCRIPTION
    write_maildrop() runs in `sendmail`, without a Store: it writes
    maildrop/.NAME, fsyncs it, renames it to maildrop/NAME and fsyncs the
    directory (NAME: time in ns, pid, 128 random bits).  recover() imports
    maildrop/ at start-up (store.py, recovery.py) and pickup() while the
    daemon runs (a `sendmail` that raced the daemon's start): oldest name
    first, each file committed as a new queue file with a qid of its own,
    and only then unlinked.  recover() commits each at once, on its own
    thread (store.py commit_now); pickup() commits as a session does
    (store.py, COMMIT).  Maildrop, the daemon's side, is given the commit
    to use with each call: it knows the directory and the clock, nothing
    of how a commit is made.

CRASH STATES (as store.py's S1-S7)
    M1  maildrop/.NAME (partial; `sendmail` has not reported success):
        recover() deletes dot files older than an hour.
    M2  maildrop/NAME complete.
    M3  queue/QID committed and maildrop/NAME not yet unlinked: recover()
        imports it again, one duplicate.
    M4  only queue/QID.

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
    with `sendmail -f`); the file's owner uid is who dropped it.  The
    daemon sets ``Maildrop.check`` to the control submit op's checks
    (daemon/submission.py ``drop_envelope``): the envelope is rebuilt from
    what a submitter may say, as through the socket (client: the owner's
    uid; precedence and msgid from the headers; proto local), and a drop
    that fails them goes to corrupt/ with the reason; a creation time in
    the future becomes the import's.  A drop is
    opened with O_NOFOLLOW|O_NONBLOCK and must be a regular file: a symlink,
    FIFO or device planted there goes to corrupt/ unread, so the directory
    cannot be used to make the daemon read its own files or hang.

FAILURES
    write_maildrop() raises SpoolFull (ENOSPC) or SpoolError and leaves
    nothing behind.  A drop that cannot be read, does not decode or has
    no recipients goes to corrupt/ (layout.py quarantine()).  A commit
    that fails stops the import: at start-up recover() raises it, in
    pickup() the caller gets it; the drop stays for the next try.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from link.fileio import fsync_dir, unlink_quietly, write_new

from edgemail import maillog
from edgemail.clock import Clock
from edgemail.envelope import Envelope
from edgemail.errors import CorruptQueueFile
from edgemail.spool import record
from edgemail.spool.layout import Layout, spool_error

log = logging.getLogger("edgemail.spool")

STALE_MAILDROP_S = 3600.0
#: a drop must be readable by the daemon's user, which is not the dropper
MAILDROP_MODE = 0o644


# --- the `sendmail` side -----------------------------------------------------------

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
        write_new(tmp, blob, MAILDROP_MODE)
        os.rename(tmp, final)
        _fsync_drop_dir(maildrop_dir)
    except OSError as exc:
        unlink_quietly(tmp)
        raise spool_error(exc, f"maildrop {maildrop_dir}") from exc
    return final


def _fsync_drop_dir(path: str) -> None:
    """fsync maildrop/ after a rename into it.  An ordinary user cannot open
    the 1733 directory for reading (which fsync needs), so then sync(2)
    makes the new name durable instead: slower, but only `sendmail` with
    the daemon down comes here."""
    try:
        fsync_dir(path)
    except PermissionError:
        os.sync()


# --- the daemon side ---------------------------------------------------------------

#: commit(envelope, data, created) -> qid: the store's commit, now or awaited
CommitNow = Callable[[Envelope, bytes, float], str]
CommitLater = Callable[[Envelope, bytes, float], Awaitable[str]]


class Maildrop:
    """The daemon's side of maildrop/: the drops, into the queue."""

    def __init__(self, layout: Layout, clock: Clock) -> None:
        self.layout, self.clock = layout, clock
        self.directory = layout.path("maildrop")
        #: check(envelope, data, owner uid, created) -> the envelope to queue,
        #: or ValueError (the drop goes to corrupt/); None: taken as written
        self.check: Callable[[Envelope, bytes, int, float], Envelope] | None = None

    def drops(self, corrupt: list[str]) -> list[tuple[str, record.QueueFile]]:
        """Decoded maildrop files, oldest name first; damaged ones quarantined
        (their new names appended to CORRUPT), stale partial dot files removed."""
        found = []
        for name in sorted(os.listdir(self.directory)):
            path = os.path.join(self.directory, name)
            if name.startswith("."):
                if _age(path, self.clock.wall()) > STALE_MAILDROP_S:
                    unlink_quietly(path)
                continue
            try:
                blob, uid = _read_owned(path)
                qf = record.decode(blob, kind=record.KIND_MAILDROP)
                if not qf.envelope.recipients:
                    raise CorruptQueueFile("no recipients")
                found.append((path, self._checked(qf, uid)))
            except (CorruptQueueFile, OSError, ValueError) as exc:
                corrupt.append(self.layout.quarantine(path, exc))
        return found

    def _checked(self, qf: record.QueueFile, uid: int) -> record.QueueFile:
        """The drop as its dropper may have made it: ``check`` (set by the
        daemon: the submit op's checks) rebuilds the envelope; a creation
        time in the future is now.  Raises ValueError."""
        created = min(qf.created, self.clock.wall())
        if self.check is None:
            return replace(qf, created=created)
        return replace(qf, created=created, envelope=self.check(qf.envelope, qf.data, uid, created))

    def import_all(self, commit: CommitNow, corrupt: list[str]) -> list[str]:
        """At start-up: every drop committed with COMMIT, then unlinked; the new qids."""
        qids = []
        for path, qf in self.drops(corrupt):
            qid = commit(qf.envelope, qf.data, qf.created)
            qids.append(qid)
            os.unlink(path)              # after the commit: a crash here means a duplicate
            _log_import(qid, qf, path)
        if qids:
            fsync_dir(self.directory)
        return qids

    async def pickup(self, commit: CommitLater) -> list[str]:
        """While running (a `sendmail` that raced the daemon's start): the
        same, off the loop for the file system calls.  Returns the new qids."""
        corrupt: list[str] = []
        files = await asyncio.to_thread(self.drops, corrupt)
        qids = []
        for path, qf in files:
            qid = await commit(qf.envelope, qf.data, qf.created)
            qids.append(qid)
            await asyncio.to_thread(os.unlink, path)
            _log_import(qid, qf, path)
        return qids


def _log_import(qid: str, qf: record.QueueFile, path: str) -> None:
    """Every accepted message has sendmail's from= line; a drop's says it came from maildrop/."""
    log.info(maillog.received(qid, qf.envelope))
    log.info(maillog.maildrop_import(qid, os.path.basename(path)))


def _read_drop(path: str) -> bytes:
    """A maildrop file's bytes (``_read_owned``)."""
    return _read_owned(path)[0]


def _read_owned(path: str) -> tuple[bytes, int]:
    """Read a maildrop file another user made: a regular file, not followed
    through a symlink, and never blocking on a FIFO; its bytes and its
    owner's uid.  Raises OSError or CorruptQueueFile."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, "rb", buffering=0) as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CorruptQueueFile("not a regular file")
        return f.readall(), st.st_uid


def _age(path: str, now: float) -> float:
    try:
        return now - os.stat(path).st_mtime
    except OSError:
        return 0.0
