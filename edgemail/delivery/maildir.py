"""delivery/maildir.py - deliver one message into one Maildir, safely.

NAME
    maildir - local delivery (driver; the file work runs off the event loop)

DESCRIPTION
    Follows the Maildir specification (cr.yp.to/proto/maildir.html) as
    qmail-local and Dovecot's LDA do:

      1. create DIR/{tmp,new,cur} (mode 0700) when missing;
      2. write tmp/NAME with O_CREAT|O_EXCL, NAME unique:
         ``<seconds>.M<usec>P<pid>Q<n>.<host>`` ("/" and ":" in the host
         written as \\057 and \\072);
      3. fsync the file;
      4. link tmp/NAME to new/NAME (link, not rename: it fails instead of
         overwriting if the name exists), unlink tmp/NAME;
      5. fsync new/ (and tmp/), so the entry survives a crash.
    Only after step 5 is the recipient reported delivered.  The file starts
    with ``Return-Path: <sender>`` and ``Delivered-To: <recipient>`` and is
    stored with LF line endings, as Unix mailbox files are.

NEVER
    Overwrites a file, leaves a partial file in new/, or blocks the event loop
    (``deliver`` runs the work in ``asyncio.to_thread``).  Changes ownership:
    the daemon's user must be able to write the Maildir.

FAILURES
    ``TempFail`` (scope RECIPIENT) for ENOSPC/EDQUOT ("4.3.1"/"4.2.2"), missing
    permissions ("4.2.0", naming the path and our uid) and any other OS error
    ("4.3.0"); tmp/NAME is removed on every failure.  ``PermFail`` "5.4.6"
    when the message already carries our ``Delivered-To:`` line (a mail loop,
    as qmail-local detects it).
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import os
import time

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


def ensure_maildir(path: str) -> None:
    for sub in ("", "tmp", "new", "cur"):
        os.makedirs(os.path.join(path, sub), mode=0o700, exist_ok=True)


def deliver_sync(path: str, data: bytes, *, mail_from: str, rcpt: str, host: str,
                 now: float | None = None) -> str:
    """Deliver; return the name in new/.  Raises OSError (see ``deliver``)."""
    ensure_maildir(path)
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
    if exc.errno == errno.ENOSPC:
        return TempFail(f"no space left on the device holding {where}", dsn="4.3.1", scope=Scope.RECIPIENT)
    if exc.errno == errno.EDQUOT:
        return TempFail(f"mailbox over quota: {where}", dsn="4.2.2", scope=Scope.RECIPIENT)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return TempFail(f"permission denied writing {where} (running as uid {os.geteuid()}): "
                        f"{exc.strerror}", dsn="4.2.0", scope=Scope.RECIPIENT)
    return TempFail(f"cannot deliver to {where}: {exc.strerror or exc}", dsn="4.3.0", scope=Scope.RECIPIENT)


async def deliver(path: str, data: bytes, *, mail_from: str, rcpt: str, host: str,
                  now: float) -> Attempt:
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
                                       rcpt=rcpt, host=host)
    except OSError as exc:
        raise failure(exc, path) from exc
    return Attempt(RcptStatus.SENT, "2.0.0", f"delivered to maildir ({os.path.join(path, 'new', name)})",
                   relay="maildir", at=now)
