"""store.py against a real directory: commit, recover, corrupt files, stale
tmp, maildrop, update/hold/remove, ENOSPC."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
import traceback

import pytest

from edgemail.clock import FakeClock
from edgemail.envelope import Attempt, Envelope, RcptStatus, Recipient, is_queue_id
from edgemail.errors import CorruptQueueFile, SpoolError, SpoolFull
from edgemail.spool.store import Store
from edgemail.spool import jobs, record
from edgemail.spool.maildrop import write_maildrop
from edgemail.spool.room import ROOM_CACHE_S, Room
from edgemail.spool.writer import COMMIT_THREADS

ENV = Envelope("shop@example.org", (Recipient("a@example.net"), Recipient("b@example.com")),
               precedence=-60, msgid="1@till", arrived=1_700_000_000.0)
DATA = b"Subject: hi\r\n\r\n" + b"x" * 500 + b"\r\n"


def sent(text="250 ok"):
    return Attempt(RcptStatus.SENT, "2.0.0", text, "mx.example.net[203.0.113.5]:25", 5.0)


def deferred():
    return Attempt(RcptStatus.DEFERRED, "4.4.2", "link lost", "none", 6.0)


@pytest.fixture
def spool(tmp_path):
    made = []

    def make(**kw):
        s = Store(str(tmp_path / "spool"), clock=FakeClock(wall=1_700_000_100.0), **kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.close()


def files(store, sub):
    return sorted(os.listdir(os.path.join(store.directory, sub)))


async def test_commit_is_on_disk_and_recovered(spool):
    s = spool()
    s.recover()
    qids = await asyncio.gather(*(s.commit(ENV, DATA) for _ in range(20)))
    assert len(set(qids)) == 20 and all(is_queue_id(q) for q in qids)
    assert files(s, "queue") == sorted(qids) and files(s, "tmp") == []
    e = s.get(qids[0])
    assert e.size == len(DATA) and e.priority == len(DATA) + 60 * 1800 + 2 * 30000
    assert s.read_data(qids[0]) == DATA
    s2 = spool()
    report = s2.recover()
    assert report.loaded == 20 and report.corrupt == ()
    assert {e.qid: e for e in s2.entries()} == {e.qid: e for e in s.entries()}


async def test_update_hold_release_remove(spool):
    s = spool()
    s.recover()
    qid = await s.commit(ENV, DATA)
    e = await s.update(qid, {"a@example.net": sent(), "b@example.com": deferred()}, next_attempt=99.0)
    assert e.attempts == 1 and e.next_attempt == 99.0 and e.priority == s.get(qid).priority
    assert e.rcpt_status == {"a@example.net": RcptStatus.SENT, "b@example.com": RcptStatus.DEFERRED}
    e = await s.hold(qid)
    assert e.held and files(s, "hold") == [qid] and files(s, "queue") == []
    await s.mark_warned(qid)
    s2 = spool()
    s2.recover()
    assert s2.get(qid) == s.get(qid) and s2.get(qid).warned and s2.get(qid).held
    e = await s.release(qid)
    assert not e.held and files(s, "queue") == [qid]
    assert s.read_data(qid) == DATA
    e = await s.update(qid, {"b@example.com": sent()}, next_attempt=None)
    assert e.done and e.attempts == 2
    assert files(s, "queue") == [] and s.entries() == []
    with pytest.raises(KeyError):
        s.get(qid)
    qid = await s.commit(ENV, DATA)
    await s.remove(qid)
    with pytest.raises(SpoolError, match="without recipients"):
        await s.commit(Envelope("x@example.org", ()), DATA)
    assert files(s, "queue") == [] and s.entries() == []


async def test_recover_cleans_tmp_quarantines_corrupt_truncates_torn(spool, tmp_path, caplog):
    s = spool()
    s.recover()
    good, cut, torn, final = [await s.commit(ENV, DATA) for _ in range(4)]
    await s.update(final, {"a@example.net": sent()}, next_attempt=None)
    q = tmp_path / "spool" / "queue"
    (q / final).write_bytes((q / final).read_bytes()
                            + record.encode_update(record.StateUpdate({"b@example.com": sent()})))
    (q / cut).write_bytes((q / cut).read_bytes()[:100])
    (q / torn).write_bytes((q / torn).read_bytes() + record.encode_update(
        record.StateUpdate(attempts=7))[:-2])
    (q / "not-a-qid").write_bytes(b"hello")
    (tmp_path / "spool" / "tmp" / "stale").write_bytes(b"half")
    caplog.set_level(logging.WARNING, logger="edgemail.spool")
    s2 = spool()
    r = s2.recover()
    assert r.stale_tmp == ("stale",) and files(s2, "tmp") == []
    assert sorted(r.corrupt) == sorted([cut, "not-a-qid"])
    assert files(s2, "corrupt") == sorted([cut, "not-a-qid"])
    assert r.truncated == (torn,) and s2.get(torn).attempts == 0
    assert os.path.getsize(q / torn) == os.path.getsize(q / good)
    assert r.finished == (final,) and not (q / final).exists()
    assert sorted(e.qid for e in s2.entries()) == sorted([good, torn])
    assert f"{cut}: moved to corrupt/{cut}" in caplog.text


async def test_read_data_of_damaged_file_quarantines(spool, tmp_path):
    s = spool()
    s.recover()
    qid = await s.commit(ENV, DATA)
    path = tmp_path / "spool" / "queue" / qid
    blob = bytearray(path.read_bytes())
    blob[-30] ^= 1                       # inside the data record
    path.write_bytes(bytes(blob))
    with pytest.raises(CorruptQueueFile):
        s.read_data(qid)
    assert files(s, "corrupt") == [qid] and s.entries() == []


async def test_maildrop_import_at_recovery_and_pickup(spool, tmp_path):
    s = spool()
    s.recover()
    path = write_maildrop(s.maildrop_dir, ENV, DATA, now=1_699_999_000.0)
    assert os.path.basename(path) in os.listdir(s.maildrop_dir)
    (tmp_path / "spool" / "maildrop" / "junk").write_bytes(b"junk")
    (tmp_path / "spool" / "maildrop" / "norcpt").write_bytes(
        record.encode(Envelope("x@example.org", ()), DATA, kind=record.KIND_MAILDROP))
    partial = tmp_path / "spool" / "maildrop" / ".123.4.abcd"
    partial.write_bytes(b"partial")
    os.utime(partial, (0, 0))            # a `sendmail` that died long ago
    r = spool().recover()
    assert len(r.imported) == 1 and sorted(r.corrupt) == ["junk", "norcpt"]
    assert os.listdir(tmp_path / "spool" / "maildrop") == []
    s2 = spool()
    s2.recover()
    e = s2.get(r.imported[0])
    assert e.envelope == ENV and e.created == 1_699_999_000.0 and s2.read_data(e.qid) == DATA
    write_maildrop(s2.maildrop_dir, ENV, DATA)
    (qid,) = await s2.pickup()
    assert s2.get(qid).envelope == ENV and os.listdir(s2.maildrop_dir) == []


async def test_min_free_blocks(spool):
    s = spool(min_free_blocks=2**60)
    s.recover()
    assert not s.has_room()
    with pytest.raises(SpoolFull, match="MinFreeBlocks"):
        await s.commit(ENV, DATA)
    assert files(s, "tmp") == [] and files(s, "queue") == [] and s.entries() == []
    assert spool().has_room(1000)


async def test_commits_being_written_count_against_the_room(spool):
    """Commits are written side by side: the room check counts the bytes of
    those still being written (statvfs does not see them yet)."""
    s = spool()
    s.recover()
    s.room.reserved = 2**62              # as if that much were being written now
    with pytest.raises(SpoolFull, match="MinFreeBlocks"):
        await s.commit(ENV, DATA)
    s.room.reserved = 0
    qids = await asyncio.gather(*(s.commit(ENV, DATA) for _ in range(12)))
    assert s.room.reserved == 0 and files(s, "queue") == sorted(qids) and files(s, "tmp") == []
    s.close()                            # the threads stop; the next commit starts them again
    assert is_queue_id(await s.commit(ENV, DATA)) and len(files(s, "queue")) == 13


def test_has_room_reuses_a_recent_statvfs(tmp_path, monkeypatch):
    now = [100.0]
    room = Room(str(tmp_path), monotonic=lambda: now[0])
    calls = []
    real = os.statvfs
    monkeypatch.setattr(os, "statvfs", lambda path: calls.append(path) or real(path))
    assert room.has_room(1000) and room.has_room(2000) and len(calls) == 1
    now[0] += ROOM_CACHE_S + 0.5                       # the answer is older than ROOM_CACHE_S
    assert not room.has_room(2**62) and len(calls) == 2


@pytest.mark.parametrize("err, exc", [(errno.ENOSPC, SpoolFull), (errno.EIO, SpoolError)])
async def test_write_error_leaves_nothing(spool, monkeypatch, err, exc):
    s = spool()
    s.recover()
    real = os.write

    def failing(fd, data):
        real(fd, bytes(data)[:10])
        raise OSError(err, os.strerror(err))
    monkeypatch.setattr(os, "write", failing)
    with pytest.raises(exc):
        await s.commit(ENV, DATA)
    monkeypatch.setattr(os, "write", real)
    assert files(s, "tmp") == [] and files(s, "queue") == [] and s.entries() == []
    qid = await s.commit(ENV, DATA)
    monkeypatch.setattr(os, "write", failing)
    with pytest.raises(exc):
        await s.update(qid, {"a@example.net": sent()}, next_attempt=None)
    monkeypatch.setattr(os, "write", real)
    await s.update(qid, {"a@example.net": deferred()}, next_attempt=None)
    s2 = spool()
    assert s2.recover().truncated == ()  # the failed append was cut back at once
    assert s2.get(qid).rcpt_status["a@example.net"] is RcptStatus.DEFERRED


async def test_a_bug_on_a_commit_thread_fails_the_commit_and_the_thread_lives_on(spool, monkeypatch, caplog):
    s = spool()
    s.recover()
    real = jobs.commit_new

    def broken(files, may_rename=None):
        raise RuntimeError("bug")
    monkeypatch.setattr(jobs, "commit_new", broken)
    with pytest.raises(SpoolError, match="internal error: RuntimeError"):
        await s.commit(ENV, DATA)
    assert "internal error in spool writer" in caplog.text and s.room.reserved == 0
    assert s.commit_threads.running() == COMMIT_THREADS
    monkeypatch.setattr(jobs, "commit_new", real)
    qids = await asyncio.wait_for(asyncio.gather(*(s.commit(ENV, DATA) for _ in range(8))), 60)
    assert files(s, "queue") == sorted(qids) and files(s, "tmp") == []


@pytest.mark.root
async def test_enospc_on_a_tiny_tmpfs(tmp_path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], check=True)
    try:
        s = Store(str(mnt / "spool"))
        s.recover()
        qids = []
        with pytest.raises(SpoolFull):
            for _ in range(100):
                qids.append(await s.commit(ENV, b"y" * 8000))
        assert qids and os.listdir(mnt / "spool" / "tmp") == []
        s.close()
        s2 = Store(str(mnt / "spool"))
        assert sorted(e.qid for e in (s2.recover() and s2.entries())) == sorted(qids)
        assert all(s2.read_data(q) == b"y" * 8000 for q in qids)
        s2.close()
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


async def test_recover_finishes_an_interrupted_hold_and_release(spool, tmp_path):
    s = spool()
    s.recover()
    to_hold, to_release = await s.commit(ENV, DATA), await s.commit(ENV, DATA)
    await s.hold(to_release)
    base = tmp_path / "spool"
    # crash after the held flag was appended, before the rename (both ways)
    with open(base / "queue" / to_hold, "ab") as f:
        f.write(record.encode_update(record.StateUpdate(held=True)))
    with open(base / "hold" / to_release, "ab") as f:
        f.write(record.encode_update(record.StateUpdate(held=False)))
    s2 = spool()
    r = s2.recover()
    assert r.corrupt == () and r.loaded == 2
    assert files(s2, "hold") == [to_hold] and files(s2, "queue") == [to_release]
    assert s2.get(to_hold).held and not s2.get(to_release).held


def test_maildrop_symlink_and_fifo_go_to_corrupt_unread(spool, tmp_path):
    s = spool()
    s.recover()
    elsewhere = write_maildrop(str(tmp_path), ENV, DATA)      # a valid drop, outside maildrop/
    os.symlink(elsewhere, os.path.join(s.maildrop_dir, "link"))
    os.mkfifo(os.path.join(s.maildrop_dir, "fifo"))         # would block a plain open()
    r = spool().recover()
    assert r.imported == () and sorted(r.corrupt) == ["fifo", "link"]
    assert os.path.exists(elsewhere)


def test_maildrop_file_mode_ignores_umask(spool):
    s = spool()
    s.recover()
    old = os.umask(0o077)
    try:
        path = write_maildrop(s.maildrop_dir, ENV, DATA)
    finally:
        os.umask(old)
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"
    assert len(os.path.basename(path).split(".")[-1]) == 32     # 128 random bits in the name


def _as_user(user: str, work) -> int:
    """Run work() in a forked child that has become `user`; its exit status."""
    pw = pwd.getpwnam(user)
    pid = os.fork()
    if pid == 0:                                   # child: never return into pytest
        code = 1
        try:
            os.setgroups([])
            os.setgid(pw.pw_gid)
            os.setuid(pw.pw_uid)
            os.umask(0o077)                        # a careful user's umask
            code = work()
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.root
def test_maildrop_written_by_a_user_is_imported_by_the_daemon_user():
    # /tmp, not tmp_path: nobody cannot reach /work.  The spool is laid out as
    # tmpfiles.d does it, owned by the daemon's user (here: daemon).
    base = tempfile.mkdtemp(prefix="edgemail-maildrop-", dir="/tmp")
    try:
        os.chmod(base, 0o755)
        root = os.path.join(base, "spool")
        os.mkdir(root)
        Store(root).recover()
        os.chmod(root, 0o751)
        daemon = pwd.getpwnam("daemon")
        for d, dirs, names in os.walk(root):
            for p in [d] + [os.path.join(d, n) for n in names]:
                os.chown(p, daemon.pw_uid, daemon.pw_gid)
        drop = os.path.join(root, "maildrop")

        def user_drops() -> int:
            write_maildrop(drop, ENV, DATA)
            try:
                os.listdir(drop)
            except PermissionError:
                return 0                           # and cannot list the drops
            return 3
        assert _as_user("nobody", user_drops) == 0
        (name,) = os.listdir(drop)
        assert os.stat(os.path.join(drop, name)).st_uid == pwd.getpwnam("nobody").pw_uid

        def daemon_imports() -> int:
            r = Store(root).recover()
            return 0 if len(r.imported) == 1 and not r.corrupt and not os.listdir(drop) else 4
        assert _as_user("daemon", daemon_imports) == 0
        s = Store(root)
        s.recover()
        (entry,) = s.entries()
        assert entry.envelope == ENV and s.read_data(entry.qid) == DATA
    finally:
        shutil.rmtree(base)
