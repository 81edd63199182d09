"""RunAsUser (sendmail's option) as root: the daemon binds a privileged port,
then runs as the user (nobody here) with its spool, control socket and
commit helper; an unusable setting stops it with exit 77 and a line that
says what to do."""

from __future__ import annotations

import os
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from daemon_harness import BIN, Daemon, cli, write_config
from tests.io.procs import children

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give root up")]

NOBODY = 65534


@pytest.fixture
def shared_dir():
    """A directory the user may pass through (pytest's tmp_path is 0700)."""
    d = Path(tempfile.mkdtemp(prefix="edgemail-runas-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def privileged_port() -> int:
    for port in range(990, 900, -1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip("no free port below 1024 on 127.0.0.1")


def nobody_can_exec(path: str) -> bool:
    """Can uid nobody execute PATH?  (Not here when Python lives under /root.)"""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            os.execv(path, [path, "-c", "pass"])
        finally:
            os._exit(1)
    return os.waitpid(pid, 0)[1] == 0


def ids(pid: int) -> tuple[list[int], list[int]]:
    """(real, effective, saved, fs) uids and gids of a process."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return [int(x) for x in fields["Uid"].split()], [int(x) for x in fields["Gid"].split()]


def daemon(shared_dir: Path, run_as: str, port: int = 0) -> Daemon:
    cfg = write_config(shared_dir, {
        "RunAsUser": run_as, "control": {"socket": str(shared_dir / "run" / "control.sock")},
        "listen": [{"name": "lan", "address": "127.0.0.1", "port": port, "strict": False}]})
    cfg.chmod(0o644)
    return Daemon(cfg)


def test_binds_a_privileged_port_then_runs_as_the_user(shared_dir):
    port = privileged_port()
    d = daemon(shared_dir, "nobody", port)
    d.start()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
            s.sendmail("a@edge.example", ["b@far.example"], b"Subject: as nobody\r\n\r\nhi\r\n")
        queued = [p for p in (shared_dir / "spool").rglob("*") if p.is_file() and "lock" not in p.name]
        helpers = children(d.proc.pid)
        listing = cli(d, "mailq")
        assert ids(d.proc.pid) == ([NOBODY] * 4, [NOBODY] * 4)
        if nobody_can_exec(sys.executable):             # the commit helper runs as the user too
            assert helpers and all(ids(c)[0] == [NOBODY] * 4 for c in helpers)
        else:                                           # or, failing that, commits go to threads
            assert not helpers and "commit helpers unavailable, committing on threads: " \
                "[Errno 13] Permission denied" in d.log.read_text()
        assert (shared_dir / "spool").stat().st_uid == NOBODY
        assert (shared_dir / "run" / "control.sock").stat().st_uid == NOBODY
        assert queued and all(p.stat().st_uid == NOBODY for p in queued), queued
        assert listing.returncode == 0 and b"<b@far.example>" in listing.stdout
    finally:
        assert d.stop() == 0
    log = d.log.read_text()
    assert f"daemon: running as nobody (uid {NOBODY}, gid {NOBODY}" in log
    assert "running as root" not in log


def test_a_spool_that_belongs_to_someone_else_is_refused_with_the_fix(shared_dir):
    (shared_dir / "spool").mkdir()
    d = daemon(shared_dir, "nobody")
    with pytest.raises(RuntimeError, match="exited with 77"):
        d.start()
    log = d.log.read_text()
    assert f"{shared_dir / 'spool'} belongs to uid 0, not to nobody (RunAsUser): " \
           f"chown -R nobody: {shared_dir / 'spool'}" in log
    assert list((shared_dir / "spool").iterdir()) == []          # nothing written as root


def test_an_unknown_user_is_refused(shared_dir):
    d = daemon(shared_dir, "no-such-user-x")
    with pytest.raises(RuntimeError, match="exited with 77"):
        d.start()
    assert "RunAsUser: no such user 'no-such-user-x'" in d.log.read_text()
    assert not (shared_dir / "spool").exists()


def test_the_config_check_names_a_bad_value(shared_dir):
    cfg = write_config(shared_dir, {"RunAsUser": "a:b:c"})
    r = subprocess.run([str(BIN / "edgemail"), "config", "check", str(cfg)],
                       capture_output=True, timeout=30)
    assert r.returncode == 78 and b"RunAsUser: expected a user name or number" in r.stdout + r.stderr
