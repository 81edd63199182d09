"""The daemon's config snapshot for sendmail and mailq (edgemail/config/snapshot.py):
read only while it is true and safe, and the command line's use of it."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgemail.config import snapshot
from edgemail.config.loader import load_text

CONFIG = '''hostname = "gw.edge.example"
local_domains = ["edge.example", "lan.example"]
MaxMessageSize = "2M"
[spool]
directory = "{d}/spool"
[control]
socket = "{d}/control.sock"
[Timeout]
control = "7s"
'''


@pytest.fixture
def runtime(tmp_path, monkeypatch):
    where = tmp_path / "run"
    where.mkdir(mode=0o755)
    where.chmod(0o755)
    monkeypatch.setenv(snapshot.ENV, str(where))
    return where


def make_config(tmp_path: Path) -> Path:
    path = tmp_path / "edgemail.toml"
    path.write_text(CONFIG.format(d=tmp_path))
    return path


def test_the_snapshot_holds_what_the_loaded_config_says(tmp_path, runtime):
    path = make_config(tmp_path)
    cfg, text = load_text(path)
    where = snapshot.write(cfg, text)
    assert where and Path(where).parent == runtime and os.stat(where).st_mode & 0o777 == 0o644
    got = snapshot.read(str(path))
    assert got is not None
    assert (got.hostname, got.local_domains, got.MaxMessageSize, got.control_socket, got.Timeout.control,
            got.spool_dir, got.RetryFactor) == (
        cfg.hostname, cfg.local_domains, cfg.MaxMessageSize, cfg.control_socket, cfg.Timeout.control,
        cfg.spool_dir, cfg.RetryFactor)
    assert got.MaxMessageSize == 2 * 1024 * 1024 and got.Timeout.control == 7.0


def test_an_edit_of_the_same_size_and_time_is_seen(tmp_path, runtime):
    """Not the file's time stamp: its bytes decide."""
    path = make_config(tmp_path)
    snapshot.write(*load_text(path))
    st = path.stat()
    path.write_text(path.read_text().replace('"7s"', '"9s"'))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size
    assert snapshot.read(str(path)) is None


def test_another_config_file_is_not_read_from_it(tmp_path, runtime):
    path = make_config(tmp_path)
    where = snapshot.write(*load_text(path))
    other = tmp_path / "other.toml"
    other.write_text(path.read_text())
    os.rename(where, snapshot.snapshot_path(str(other)))    # a snapshot under the other's name
    assert snapshot.read(str(other)) is None


@pytest.mark.parametrize("spoil", ["file group-writable", "dir world-writable", "symlink", "garbage",
                                   "wrong type"])
def test_a_snapshot_others_could_have_written_is_refused(tmp_path, runtime, spoil):
    path = make_config(tmp_path)
    where = Path(snapshot.write(*load_text(path)))
    assert snapshot.read(str(path)) is not None
    if spoil == "file group-writable":
        where.chmod(0o664)
    elif spoil == "dir world-writable":
        runtime.chmod(0o777)
    elif spoil == "symlink":
        real = tmp_path / "elsewhere.json"
        where.rename(real)
        where.symlink_to(real)
    elif spoil == "garbage":
        where.write_text('{"format": 1, "config": ')
    else:
        where.write_text(where.read_text().replace('"MaxMessageSize": 2097152', '"MaxMessageSize": "2M"'))
    assert snapshot.read(str(path)) is None


def test_no_snapshot_for_a_config_built_with_overrides(tmp_path, runtime):
    """The demo's and the tests' daemons run with overrides: what they hold is not the file."""
    from edgemail.config.loader import load
    path = make_config(tmp_path)
    assert snapshot.publish(load(path, {"control": {"socket": str(tmp_path / "elsewhere.sock")}})) is None
    assert not list(runtime.iterdir())
    assert snapshot.publish(load(path)) is not None
    snapshot.remove(str(path))
    assert not list(runtime.iterdir())


def test_a_wildcard_listeners_host_addresses_do_not_keep_the_snapshot_back(tmp_path, runtime):
    """The daemon adds the kernel's addresses (daemon/hostaddrs.py) to its Config; they
    are not in the file, so the file still says what the daemon holds."""
    import ipaddress
    from edgemail.config.loader import load
    path = make_config(tmp_path)
    cfg = dataclasses.replace(load(path), host_addresses=frozenset({ipaddress.ip_address("192.168.1.1")}))
    assert snapshot.publish(cfg) is not None
    assert snapshot.read(str(path)) is not None


def test_an_unwritable_runtime_directory_is_no_failure(tmp_path, monkeypatch):
    monkeypatch.setenv(snapshot.ENV, str(tmp_path / "missing"))
    path = make_config(tmp_path)
    assert snapshot.write(*load_text(path)) is None
    assert snapshot.read(str(path)) is None


async def test_mailq_reads_the_snapshot_and_sees_an_edit(tmp_path, runtime):
    """mailq asks the socket the snapshot names (a daemon answering there);
    once the file is edited it loads the file, whose socket nobody serves."""
    from edgemail.daemon.control import ControlServer, Stream

    async def listing(req):
        return Stream(iter([]), {"total": 0})
    path = make_config(tmp_path)
    cfg, text = load_text(path)
    served = str(tmp_path / "served.sock")
    srv = ControlServer(served, {"queue_list": listing})
    await srv.start()
    try:
        snapshot.write(dataclasses.replace(cfg, control_socket=served), text)
        cmd = [sys.executable, "-c", "import sys; from edgemail.cli import mailq_main; sys.exit(mailq_main())",
               "-C", str(path)]

        async def mailq() -> tuple[int | None, bytes, bytes]:
            proc = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            out, err = await proc.communicate()
            return proc.returncode, out, err
        code, out, err = await mailq()
        assert (code, out) == (0, b"Mail queue is empty\n"), err
        path.write_text(path.read_text() + "# edited\n")
        code, out, err = await mailq()
        assert b"the daemon is not running" in err and code == 0, (code, out, err)
    finally:
        await srv.close()


def test_sendmail_with_the_daemon_gone_and_its_snapshot_left_loads_what_it_lacks(tmp_path, runtime):
    """A daemon that crashed leaves its snapshot: sendmail finds no socket,
    checks the recipients itself (cfg.local: not in the snapshot, so the
    whole config is loaded then) and leaves the message in the maildrop."""
    path = make_config(tmp_path)
    (tmp_path / "spool" / "maildrop").mkdir(parents=True)
    snapshot.write(*load_text(path))
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from edgemail.cli import sendmail_main; sys.exit(sendmail_main())",
         "-C", str(path), "-t"], input=b"To: someone@remote.example\nSubject: s\n\nbody\n",
        capture_output=True, timeout=60)
    assert proc.returncode == 0 and b"message left in the maildrop" in proc.stderr, proc.stderr
    assert b"Traceback" not in proc.stderr
    assert len(list((tmp_path / "spool" / "maildrop").iterdir())) == 1


#: what a mailq or sendmail -t call with the snapshot must not load (each was, once, half its start-up)
HEAVY = ("asyncio", "tomllib", "ssl", "logging", "edgemail.config.loader", "edgemail.maillog", "dataclasses",
         "email.utils", "email.charset", "email._parseaddr", "random", "base64", "edgemail.envelope",
         "edgemail.smtpd.listener", "edgemail.daemon.control", "email.parser", "link")


async def test_mailq_and_sendmail_load_neither_the_server_nor_the_config_parser(tmp_path, runtime):
    from edgemail.daemon.control import ControlServer, Stream

    async def listing(req):
        return Stream(iter([]), {"total": 0})

    async def submit(req):
        return {"qid": "kAM8abc0012345"}
    path = make_config(tmp_path)
    cfg, text = load_text(path)
    served = str(tmp_path / "served.sock")
    srv = ControlServer(served, {"queue_list": listing, "submit": submit})
    await srv.start()
    try:
        snapshot.write(dataclasses.replace(cfg, control_socket=served), text)
        for func, args in (("mailq_main", []), ("sendmail_main", ["-t"])):
            out = tmp_path / f"{func}.modules"
            code = (f"import atexit, sys; atexit.register(lambda: open({str(out)!r}, 'w').write("
                    f"'\\n'.join(sys.modules)))\nfrom edgemail.cli import {func}; sys.exit({func}())")
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", code, "-C", str(path), *args, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            _, err = await proc.communicate(b"To: someone@remote.example\nSubject: s\n\nbody\n")
            assert proc.returncode == 0, err
            loaded = set(out.read_text().split())
            assert not [m for m in HEAVY if m in loaded], (func, sorted(m for m in HEAVY if m in loaded))
    finally:
        await srv.close()
