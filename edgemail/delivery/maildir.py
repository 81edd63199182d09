"""delivery/maildir.py - deliver one message into one Maildir, safely.

NAME
    maildir - local delivery (driver; the file work runs off the event loop)

DESCRIPTION
    Follows the Maildir specification (cr.yp.to/proto/maildir.html) as
    qmail-local and Dovecot's LDA do:

      1. create DIR/{tmp,new,cur} (mode 0700) when missing, and DIR's
         missing parents (/var/mail/USER);
      2. write tmp/NAME with O_CREAT|O_EXCL (0600), NAME unique:
         ``<seconds>.M<usec>P<pid>Q<n>.<host>`` ("/" and ":" in the host
         written as \\057 and \\072);
      3. fsync the file;
      4. link tmp/NAME to new/NAME (link, not rename: it fails instead of
         overwriting if the name exists), unlink tmp/NAME;
      5. fsync new/ (and tmp/), so the entry survives a crash.
    Only after step 5 is the recipient reported delivered.  The file starts
    with ``Return-Path: <sender>`` and ``Delivered-To: <recipient>`` and is
    stored with LF line endings, as Unix mailbox files are.

SHARED WITH DOVECOT ([local] maildir_owner, maildir_group, maildir_mode)
    ``Perms``: every folder and file a delivery creates is given that owner
    and group and that mode (folders: x wherever r, and setgid with a group,
    so the files Dovecot creates there keep the group), so one virtual-mail
    identity (Dovecot's mail_uid/mail_gid) reads and writes what edgemail
    delivers.  A group needs the daemon's user in it, an owner root or
    CAP_CHOWN; folders that exist are never changed.  The README's Dovecot
    section recommends LMTP instead (lmtp.py) and says why.

NEVER
    Overwrites a file, leaves a partial file in new/, or blocks the event loop
    (``deliver`` runs the work in ``asyncio.to_thread``).  Changes the
    ownership or mode of anything it did not create.

FAILURES
    ``TempFail`` (scope RECIPIENT) for ENOSPC/EDQUOT ("4.3.1"/"4.2.2"), missing
    permissions ("4.2.0", naming the path and our uid; an owner or group
    that cannot be given says which option needs what) and any other OS error
    ("4.3.0"); tmp/NAME is removed on every failure.  ``PermFail`` "5.4.6"
    when the message already carries our ``Delivered-To:`` line (a mail loop,
    as qmail-local detects it).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import itertools
import os
import stat
import time
from dataclasses import dataclass

from edgemail.envelope import Attempt, RcptStatus
from edgemail.errors import PermFail, Scope, TempFail

_SEQ = itertools.count(1)


def unique_name(now: float, pid: int, seq: int, host: str) -> str:
    """The Maildir file name for one delivery (pure)."""
    sec = int(now)
    usec = int(round((now - sec) * 1_000_000)) % 1_000_000
    safe_host = host.replace("/", "\\057").replace(":", "\\072")
    return f"{sec}.M{usec}P{pid}Q{seq}.{safe_host}"


def render(data: bytes, *, mail_from: str, rcpt: str) -> bytes:
    """The bytes stored: trace headers first, CRLF turned into LF."""
    head = f"Return-Path: <{mail_from}>\r\nDelivered-To: {rcpt}\r\n".encode("utf-8")
    return (head + data).replace(b"\r\n", b"\n")


def has_delivered_to(data: bytes, rcpt: str) -> bool:
    """True if the header section already has ``Delivered-To: rcpt``."""
    header = data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    want = rcpt.lower().encode("utf-8", "replace")
    for line in header.splitlines():
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == b"delivered-to" and value.strip().lower() == want:
            return True
    return False


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Perms:
    """Who owns what a delivery creates, and its mode ([local] maildir_owner,
    maildir_group, maildir_mode).  -1: leave as the daemon's (no chown)."""

    uid: int = -1
    gid: int = -1
    mode: int = 0o600
    #: the names as configured, for errors
    names: str = ""

    @property
    def dir_mode(self) -> int:
        """Folders: the files' mode with x wherever r, setgid with a group."""
        return self.mode | (self.mode & 0o444) >> 2 | (stat.S_ISGID if self.gid != -1 else 0)


PRIVATE = Perms()


class ChownFailed(PermissionError):
    """The configured owner or group could not be given (no CAP_CHOWN, not in the group)."""


@functools.lru_cache(maxsize=8)
def perms_of(owner: str, group: str, mode: int) -> Perms:
    """[local] maildir_owner/group/mode -> Perms (names looked up once; the
    config loader made sure they exist).  Raises KeyError for a name gone since."""
    import grp
    import pwd
    uid = (int(owner) if owner.isdigit() else pwd.getpwnam(owner).pw_uid) if owner else -1
    gid = (int(group) if group.isdigit() else grp.getgrnam(group).gr_gid) if group else -1
    return Perms(uid, gid, mode, ":".join(x for x in (owner, group) if x))


def perms_for(local) -> Perms:
    """The Perms of a LocalConfig.  Raises TempFail (4.3.5) when its owner or
    group has been removed from the system since the config was read."""
    try:
        return perms_of(local.maildir_owner, local.maildir_group, local.maildir_mode)
    except KeyError as exc:
        raise TempFail(f"maildir_owner/maildir_group: no such user or group {exc} any more",
                       dsn="4.3.5", scope=Scope.RECIPIENT) from None


def _give(fd_or_path, perms: Perms, mode: int) -> None:
    """chmod (whatever the umask) and chown what we just created."""
    try:
        if perms.uid != -1 or perms.gid != -1:
            os.chown(fd_or_path, perms.uid, perms.gid)
        os.chmod(fd_or_path, mode)
    except PermissionError as exc:
        raise ChownFailed(exc.errno, f"cannot give it to {perms.names or 'the configured owner'} "
                                     f"(maildir_owner needs root or CAP_CHOWN, maildir_group the daemon's "
                                     f"user in that group): {exc.strerror}", exc.filename) from None


def ensure_maildir(path: str, perms: Perms = PRIVATE) -> None:
    """DIR/{tmp,new,cur}; every folder made here (the missing parents too, as
    /var/mail/USER) gets PERMS: a folder that exists is left as it is."""
    missing = []
    top = os.path.abspath(path)
    while not os.path.isdir(top):
        missing.append(top)
        top = os.path.dirname(top)
    for d in reversed(missing):
        _mkdir(d, perms)
    for sub in ("tmp", "new", "cur"):
        if not os.path.isdir(os.path.join(path, sub)):
            _mkdir(os.path.join(path, sub), perms)


def _mkdir(path: str, perms: Perms) -> None:
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        return                           # another delivery made it first: its perms stand
    _give(path, perms, perms.dir_mode)


def deliver_sync(path: str, data: bytes, *, mail_from: str, rcpt: str, host: str,
                 now: float | None = None, perms: Perms = PRIVATE) -> str:
    """Deliver; return the name in new/.  Raises OSError (see ``deliver``)."""
    ensure_maildir(path, perms)
    body = render(data, mail_from=mail_from, rcpt=rcpt)
    while True:
        name = unique_name(time.time() if now is None else now, os.getpid(), next(_SEQ), host)
        tmp = os.path.join(path, "tmp", name)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        try:
            try:
                if perms != PRIVATE:
                    _give(fd, perms, perms.mode)
                view = memoryview(body)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, os.path.join(path, "new", name))
            except FileExistsError:
                continue
            _fsync_dir(os.path.join(path, "new"))
            return name
        finally:
            # runs on every path out: success (the name is linked in new/), a
            # name clash (try again) or an error (nothing left half-written)
            _unlink_quietly(tmp)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def failure(exc: OSError, path: str) -> TempFail:
    """An OSError from a delivery as a TempFail with a clear reason."""
    where = exc.filename or path
    if isinstance(exc, ChownFailed):
        return TempFail(f"{where}: {exc.strerror} (running as uid {os.geteuid()})", dsn="4.2.0",
                        scope=Scope.RECIPIENT)
    if exc.errno == errno.ENOSPC:
        return TempFail(f"no space left on the device holding {where}", dsn="4.3.1", scope=Scope.RECIPIENT)
    if exc.errno == errno.EDQUOT:
        return TempFail(f"mailbox over quota: {where}", dsn="4.2.2", scope=Scope.RECIPIENT)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return TempFail(f"permission denied writing {where} (running as uid {os.geteuid()}): "
                        f"{exc.strerror}", dsn="4.2.0", scope=Scope.RECIPIENT)
    return TempFail(f"cannot deliver to {where}: {exc.strerror or exc}", dsn="4.3.0", scope=Scope.RECIPIENT)


async def deliver(path: str, data: bytes, *, mail_from: str, rcpt: str, host: str,
                  now: float, perms: Perms = PRIVATE) -> Attempt:
    """Deliver `data` (CRLF, as queued) for `rcpt` into Maildir `path`.

    Returns a SENT ``Attempt`` (relay "maildir", text names the file).
    Raises:
        PermFail: 5.4.6, the message already has ``Delivered-To: rcpt``.
        TempFail: 4.3.1 disk full, 4.2.2 quota, 4.2.0 permissions, 4.3.0 other.
    """
    if has_delivered_to(data, rcpt):
        raise PermFail(f"mail loop: already delivered to {rcpt} (Delivered-To: header)",
                       dsn="5.4.6", scope=Scope.RECIPIENT)
    try:
        name = await asyncio.to_thread(deliver_sync, path, data, mail_from=mail_from,
                                       rcpt=rcpt, host=host, perms=perms)
    except OSError as exc:
        raise failure(exc, path) from exc
    return Attempt(RcptStatus.SENT, "2.0.0", f"delivered to maildir ({os.path.join(path, 'new', name)})",
                   relay="maildir", at=now)
