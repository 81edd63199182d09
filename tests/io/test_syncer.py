"""The commit helpers (spool/syncer.py, spool/syncpool.py) as real processes
over real pipes: batches, errors, a cut-off request, a dead daemon, a helper
killed mid-commit, and the Store using them."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import subprocess
import sys
import time

import pytest

from link import fileio

from edgemail.clock import FakeClock
from edgemail.envelope import Envelope, Recipient
from edgemail.errors import SpoolError, SpoolFull
from edgemail.spool.store import Store
from edgemail.spool import record
from edgemail.spool import syncer
from edgemail.spool.syncpool import HELPER, command
from tests.io.procs import children, wait_gone

ENV = Envelope("shop@example.org", (Recipient("a@example.net"),), arrived=1_700_000_000.0)
DATA = b"Subject: hi\r\n\r\n" + b"x" * 3000 + b"\r\n"


def request(job: int, tmp, dest, blob: bytes) -> bytes:
    t, d = os.fsencode(str(tmp)), os.fsencode(str(dest))
    return syncer.REQUEST.pack(job, len(blob), len(t), len(d)) + t + d + blob


def replies(data: bytes) -> list[tuple[int, int]]:
    size = syncer.REPLY.size
    return [syncer.REPLY.unpack_from(data, i) for i in range(0, len(data), size)]


def helper() -> subprocess.Popen:
    return subprocess.Popen(command(os.getpid()), stdin=subprocess.PIPE, stdout=subprocess.PIPE)


@pytest.fixture
def dirs(tmp_path):
    for sub in ("tmp", "queue"):
        (tmp_path / sub).mkdir()
    return tmp_path


def test_commit_new_commits_a_batch_and_leaves_nothing_of_a_failed_file(dirs):
    """The one group commit (link.fileio), as the threads call it."""
    (dirs / "tmp" / "T1").write_bytes(b"not ours")          # a name taken: EEXIST
    files = [(str(dirs / "tmp" / "T0"), str(dirs / "queue" / "Q0"), b"zero"),
             (str(dirs / "tmp" / "T1"), str(dirs / "queue" / "Q1"), b"one"),
             (str(dirs / "tmp" / "T2"), str(dirs / "missing" / "Q2"), b"two")]
    assert fileio.commit_new(files) == [0, errno.EEXIST, errno.ENOENT]
    assert (dirs / "queue" / "Q0").read_bytes() == b"zero"
    assert os.listdir(dirs / "queue") == ["Q0"]
    assert os.listdir(dirs / "tmp") == ["T1"]               # never removes what it did not make
    assert (dirs / "tmp" / "T1").read_bytes() == b"not ours"


def test_commit_new_abandoned_before_a_rename_removes_the_batch(dirs):
    files = [(str(dirs / "tmp" / f"T{i}"), str(dirs / "queue" / f"Q{i}"), b"x") for i in range(3)]
    asked = []

    def may_rename() -> bool:                                # the daemon dies after one rename
        asked.append(1)
        return len(asked) == 1
    with pytest.raises(fileio.Abandoned):
        fileio.commit_new(files, may_rename)
    assert os.listdir(dirs / "queue") == ["Q0"] and os.listdir(dirs / "tmp") == []


def test_the_helper_loads_fileio_by_path_and_no_package(dirs):
    """-X importtime lists every module the helper imports: link/fileio.py as
    "fileio", and neither edgemail nor link (no package __init__ runs)."""
    p = subprocess.Popen([sys.executable, "-X", "importtime", *command(os.getpid())[1:]],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(request(1, dirs / "tmp" / "T1", dirs / "queue" / "Q1", b"one"), timeout=30)
    assert replies(out) == [(1, 0)] and p.returncode == 0
    modules = {line.rsplit("|", 1)[1].strip() for line in err.decode().splitlines() if "|" in line}
    assert "fileio" in modules
    assert not {m for m in modules if m.split(".")[0] in ("edgemail", "link")}, modules


def test_helper_commits_a_batch_and_names_the_errno_of_a_failed_job(dirs):
    blobs = [os.urandom(70_000), b"second\r\n", b""]
    data = b"".join(request(i + 1, dirs / "tmp" / f"T{i}", dirs / "queue" / f"Q{i}", b)
                    for i, b in enumerate(blobs))
    data += request(9, dirs / "tmp" / "T9", dirs / "missing" / "Q9", b"lost")
    p = helper()
    out, _ = p.communicate(data, timeout=30)
    umask = os.umask(0o022)
    os.umask(umask)
    assert p.returncode == 0
    assert sorted(replies(out)) == [(1, 0), (2, 0), (3, 0), (9, errno.ENOENT)]
    for i, b in enumerate(blobs):
        assert (dirs / "queue" / f"Q{i}").read_bytes() == b
        assert (dirs / "queue" / f"Q{i}").stat().st_mode & 0o777 == 0o640 & ~umask   # the group may read
    assert os.listdir(dirs / "tmp") == []        # the failed job's tmp file is removed too


def test_a_request_cut_off_by_end_of_input_is_dropped(dirs):
    whole = request(1, dirs / "tmp" / "T1", dirs / "queue" / "Q1", b"x" * 5000)
    p = helper()
    out, _ = p.communicate(whole[:-10], timeout=30)
    assert (p.returncode, out) == (0, b"")
    assert os.listdir(dirs / "queue") == [] and os.listdir(dirs / "tmp") == []


def test_a_helper_whose_daemon_died_renames_nothing(dirs):
    # the shell is the helper's parent; killing it stands for a SIGKILLed daemon
    sh = subprocess.Popen(["sh", "-c", f'"{sys.executable}" -I -S "{HELPER}" $$; exit 0'],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while not children(sh.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    (child,) = children(sh.pid)
    sh.kill()                                    # maybe before the helper even started: same
    sh.wait()
    try:
        sh.stdin.write(request(1, dirs / "tmp" / "T1", dirs / "queue" / "Q1", b"late"))
        sh.stdin.close()                         # end of input ends it whatever happens
    except BrokenPipeError:                      # it had already noticed and gone
        pass
    assert sh.stdout.read() == b""               # no answer
    wait_gone([child], what="helper")
    assert os.listdir(dirs / "queue") == [] and os.listdir(dirs / "tmp") == []


@pytest.fixture
def spool(tmp_path):
    made = []

    def make(**kw):
        s = Store(str(tmp_path / "spool"), clock=FakeClock(wall=1_700_000_100.0), **kw)
        made.append(s)
        s.recover()
        return s
    yield make
    for s in made:
        s.close()


async def test_store_commits_through_helpers(spool):
    s = spool(commit_helpers=2)
    qids = await asyncio.gather(*(s.commit(ENV, DATA + str(i).encode()) for i in range(40)))
    assert len(set(qids)) == 40
    assert sorted(os.listdir(os.path.join(s.directory, "queue"))) == sorted(qids)
    assert os.listdir(os.path.join(s.directory, "tmp")) == []
    for i, qid in enumerate(qids):
        with open(os.path.join(s.directory, "queue", qid), "rb") as f:
            qf = record.decode(f.read(), kind=record.KIND_QUEUE)
        assert qf.qid == qid and qf.data == DATA + str(i).encode()
        assert s.get(qid).size == len(DATA + str(i).encode())
    pids = s.helpers.pids()
    assert len(pids) == 2
    s.close()
    for pid in pids:                             # close() ended and reaped them
        assert not os.path.exists(f"/proc/{pid}")
    again = Store(s.directory)
    assert again.recover().loaded == 40


async def test_a_helper_killed_mid_commit_fails_that_commit_and_the_next_one_works(spool):
    s = spool(commit_helpers=1)
    await s.commit(ENV, DATA)                    # starts the helper
    (pid,) = s.helpers.pids()
    os.kill(pid, signal.SIGSTOP)
    pending = asyncio.ensure_future(s.commit(ENV, DATA))
    await asyncio.sleep(0)                       # the request is in the stopped helper's pipe
    assert s.helpers.outstanding() == 1 and not pending.done()
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(SpoolError, match="commit helper"):
        await asyncio.wait_for(pending, 10)
    assert len(os.listdir(os.path.join(s.directory, "queue"))) == 1
    assert os.listdir(os.path.join(s.directory, "tmp")) == []
    qid = await s.commit(ENV, DATA)              # a new helper takes over
    assert s.helpers.pids() != [pid]
    assert qid in os.listdir(os.path.join(s.directory, "queue"))
    assert len(s.entries()) == 2


async def test_a_helper_error_is_a_spool_error_and_leaves_nothing(spool):
    s = spool(commit_helpers=1)
    os.rename(os.path.join(s.directory, "queue"), os.path.join(s.directory, "queue.away"))
    with pytest.raises(SpoolError, match="No such file"):
        await s.commit(ENV, DATA)
    assert os.listdir(os.path.join(s.directory, "tmp")) == []
    assert s.entries() == []
    os.rename(os.path.join(s.directory, "queue.away"), os.path.join(s.directory, "queue"))
    assert await s.commit(ENV, DATA) in os.listdir(os.path.join(s.directory, "queue"))


async def test_min_free_blocks_counts_commits_in_flight_to_helpers(spool):
    s = spool(commit_helpers=1)
    free_kib = os.statvfs(s.directory).f_bavail * os.statvfs(s.directory).f_frsize // 1024
    s.room.min_free_blocks = free_kib - 1024 * 6     # room for about 6 MiB more
    big = b"y" * (4 * 1024 * 1024)
    results = await asyncio.gather(s.commit(ENV, big), s.commit(ENV, big), return_exceptions=True)
    assert sum(isinstance(r, str) for r in results) == 1, results
    assert sum(isinstance(r, SpoolFull) for r in results) == 1
    assert len(os.listdir(os.path.join(s.directory, "queue"))) == 1


async def test_close_on_the_loop_still_settles_commits_handed_over(spool):
    s = spool(commit_helpers=1)
    pending = asyncio.ensure_future(s.commit(ENV, DATA))
    await asyncio.sleep(0)                       # the request is in the helper's pipe
    assert not pending.done()
    s.close()
    qid = await asyncio.wait_for(pending, 5)
    assert os.listdir(os.path.join(s.directory, "queue")) == [qid]


def test_a_helper_ignores_the_groups_sigterm_and_finishes_on_end_of_input(dirs):
    # systemd's stop and a terminal's ^C signal the whole group; the daemon
    # ends its helpers itself (end of input), after the commits in flight
    p = helper()
    p.stdin.write(request(1, dirs / "tmp" / "T1", dirs / "queue" / "Q1", b"one"))
    p.stdin.flush()
    assert replies(p.stdout.read(syncer.REPLY.size)) == [(1, 0)]
    p.send_signal(signal.SIGTERM)
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(request(2, dirs / "tmp" / "T2", dirs / "queue" / "Q2", b"two"), timeout=30)
    assert replies(out) == [(2, 0)] and p.returncode == 0
    assert (dirs / "queue" / "Q2").read_bytes() == b"two"


def test_a_helper_started_for_a_daemon_already_gone_does_nothing(dirs):
    # the daemon named on the command line is not its parent any more
    p = subprocess.Popen(command(1), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        out, _ = p.communicate(request(1, dirs / "tmp" / "T1", dirs / "queue" / "Q1", b"x"), timeout=30)
    except BrokenPipeError:
        out = p.stdout.read()
    p.wait(30)
    assert (p.returncode, out) == (0, b"")
    assert os.listdir(dirs / "queue") == [] and os.listdir(dirs / "tmp") == []


async def test_helpers_that_cannot_start_leave_commits_to_the_threads(spool, monkeypatch, caplog):
    """RunAsUser may not execute the interpreter: the commit still happens
    (on the threads), the log says so once, nothing is lost."""
    from edgemail.spool import syncpool
    started = []
    real_popen = subprocess.Popen

    def popen(*args, **kw):
        if started:                                   # the second helper cannot start
            raise PermissionError(13, "Permission denied", args[0][0])
        started.append(real_popen(*args, **kw))
        return started[-1]
    monkeypatch.setattr(syncpool.subprocess, "Popen", popen)
    s = spool(commit_helpers=2)
    qids = [await s.commit(ENV, DATA + str(i).encode()) for i in range(3)]
    assert sorted(os.listdir(os.path.join(s.directory, "queue"))) == sorted(qids)
    assert s.commit_helpers == 0
    lines = [r.getMessage() for r in caplog.records if "commit helpers unavailable" in r.getMessage()]
    assert lines == ["spool: commit helpers unavailable, committing on threads: "
                     f"[Errno 13] Permission denied: '{sys.executable}'"]
    assert started[0].wait(10) == 0                   # the one that started was ended, not left behind
