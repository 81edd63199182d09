"""Reload, as an administrator does it: edit /etc/aliases, then `systemctl
reload edgemail` (SIGHUP) or `newaliases`; a broken file changes nothing and
says where it is broken; settings that need a restart are named."""

from __future__ import annotations

import logging
import signal
import smtplib
import time
from pathlib import Path

import pytest

from daemon_harness import cli, start

pytestmark = pytest.mark.timeout(60)


def _send(port: int, rcpt: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, local_hostname="till-3.lan", timeout=10) as s:
        s.sendmail("shop@edge.example", [rcpt], b"Subject: reload\r\n\r\nhello\r\n")


def _delivered(tmp_path: Path, user: str) -> int:
    new = tmp_path / "mail" / user / "Maildir" / "new"
    return len(list(new.iterdir())) if new.is_dir() else 0


def _wait(what: str, predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while not (got := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return got


def _log_lines(daemon, needle: str) -> list[str]:
    return [ln for ln in daemon.log.read_text().splitlines() if needle in ln]


@pytest.fixture
def aliases(tmp_path):
    path = tmp_path / "aliases"
    path.write_text("postmaster: root\nroot: admin\n")
    return path


@pytest.fixture
def daemon(tmp_path, aliases):
    d = start(tmp_path, {"local": {"aliases": str(aliases)}})
    yield d
    d.kill()


def test_sighup_reads_the_aliases_again(daemon, tmp_path, aliases):
    _send(daemon.port, "helpdesk@edge.example")          # no alias yet: user helpdesk
    _wait("delivery to helpdesk", lambda: _delivered(tmp_path, "helpdesk") == 1)
    aliases.write_text("postmaster: root\nroot: admin\nhelpdesk: anna\n")
    daemon.proc.send_signal(signal.SIGHUP)
    line = _wait("the reload line", lambda: _log_lines(daemon, "daemon: reloaded"))[0]
    assert "reason=SIGHUP, aliases=3" in line and "restart_needed=none" in line
    _send(daemon.port, "helpdesk@edge.example")
    _wait("delivery to anna", lambda: _delivered(tmp_path, "anna") == 1)
    assert _delivered(tmp_path, "helpdesk") == 1 and daemon.proc.poll() is None


def test_a_broken_aliases_file_changes_nothing_and_says_where(daemon, tmp_path, aliases):
    aliases.write_text("postmaster: root\nhelpdesk: anna\n")
    daemon.proc.send_signal(signal.SIGHUP)
    _wait("first reload", lambda: _log_lines(daemon, "daemon: reloaded"))
    aliases.write_text("postmaster: root\nhelpdesk: anna\nbroken\n")
    daemon.proc.send_signal(signal.SIGHUP)
    failed = _wait("the failure line", lambda: _log_lines(daemon, "daemon: reload failed"))[0]
    assert f"{aliases}:3" in failed
    assert daemon.proc.poll() is None                   # still serving, on the old table
    _send(daemon.port, "helpdesk@edge.example")
    _wait("delivery to anna", lambda: _delivered(tmp_path, "anna") == 1)


def test_newaliases_checks_then_has_the_daemon_read_them(daemon, tmp_path, aliases):
    aliases.write_text("postmaster: root\nhelpdesk: anna\n")
    r = cli(daemon, "sendmail", "-bi")
    assert r.returncode == 0, r.stderr
    assert f"{aliases}: 2 aliases, read again by the daemon" in r.stdout.decode()
    assert _log_lines(daemon, "reason=newaliases")
    aliases.write_text("postmaster: root\nhelpdesk anna\n")
    r = cli(daemon, "sendmail", "-bi")
    assert r.returncode == 65 and f"{aliases}:2" in r.stderr.decode()
    assert len(_log_lines(daemon, "daemon: reloaded")) == 1   # the daemon was not asked


def test_reload_names_settings_that_need_a_restart(daemon):
    text = daemon.config.read_text().replace("MaxMessageSize", "MaxMessageSize = 1048576\n#", 1)
    assert text != daemon.config.read_text()
    daemon.config.write_text(text)
    r = cli(daemon, "edgemail", "-c", str(daemon.config), "reload")
    assert r.returncode == 0, r.stderr
    assert "take effect at restart: MaxMessageSize" in r.stdout.decode()
    assert _log_lines(daemon, "restart_needed=MaxMessageSize")
    broken = text.replace('DeliveryMode = "deferred"', 'DeliveryMode = "background"')
    assert broken != text
    daemon.config.write_text(broken)
    where = 1 + broken[:broken.index("DeliveryMode")].count("\n")
    r = cli(daemon, "edgemail", "-c", str(daemon.config), "reload")
    assert r.returncode == 78 and "DeliveryMode" in r.stderr.decode()   # refused before asking
    daemon.proc.send_signal(signal.SIGHUP)
    failed = _wait("the failure line", lambda: _log_lines(daemon, "daemon: reload failed, reason=SIGHUP"))[0]
    assert f"{daemon.config}:{where}: DeliveryMode" in failed
    assert daemon.proc.poll() is None


def test_newaliases_with_the_daemon_down_only_checks(tmp_path, aliases):
    from daemon_harness import write_config
    from demo.run import Daemon
    d = Daemon(write_config(tmp_path, {"local": {"aliases": str(aliases)}}))
    r = cli(d, "sendmail", "-bi")
    assert r.returncode == 0 and "2 aliases (the daemon is not running" in r.stdout.decode()


async def test_sighup_while_starting_is_a_log_line_not_the_end():
    import asyncio
    import os
    from edgemail.daemon.reload import HangUp
    hup = HangUp()
    lines: asyncio.Queue[str] = asyncio.Queue()

    class Lines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.put_nowait(record.getMessage())
    handler = Lines()
    logging.getLogger("edgemail.daemon").addHandler(handler)
    try:
        os.kill(os.getpid(), signal.SIGHUP)            # default action: this process would end
        line = await asyncio.wait_for(lines.get(), 10)     # the loop heard the signal and said so
        assert line.startswith("daemon: reload failed, reason=SIGHUP") and "still starting" in line, line
        got: asyncio.Queue[str] = asyncio.Queue()
        hup.arm(got.put_nowait)
        os.kill(os.getpid(), signal.SIGHUP)
        assert await asyncio.wait_for(got.get(), 10) == "SIGHUP"
        assert got.empty()
    finally:
        logging.getLogger("edgemail.daemon").removeHandler(handler)
        hup.remove()


def test_link_manager_takes_a_new_policy():
    import schedule
    from edgemail.clock import SystemClock
    from edgemail.config.model import LinkConfig
    from link.manager import LinkManager
    from link.policy import parse
    from link.policydriver import compile_jobs
    old = parse("set idle_hangup = 2m\nset max_connect = 30m\n*/15 8-17 * * mon-fri queue-run etrn\n")
    new = parse("set idle_hangup = 20s\nset max_connect = 10m\n0 * * * * queue-run\n")
    sched = schedule.Scheduler()
    mgr = LinkManager(LinkConfig(mode="external"), old, clock=SystemClock(), port=None,
                      scheduler=sched)
    mgr.policy_driver.start()                            # as run() does: the old rules' jobs
    before = len(sched.jobs)
    mgr.replace_policy(new)
    assert mgr.policy is new
    assert (mgr.fsm.config.idle_hangup_s, mgr.fsm.config.max_connect_s) == (20.0, 600.0)
    assert len(sched.jobs) == len(compile_jobs(new, schedule.Scheduler(), lambda rule: None))
    assert len(sched.jobs) != before


def test_newaliases_names_every_bad_line_and_a_missing_file_is_no_aliases(tmp_path):
    from daemon_harness import write_config
    from demo.run import Daemon
    bad = tmp_path / "aliases"
    bad.write_text("postmaster: root\nops: |/bin/true\nroot: admin\nweb: /var/log/x\nroot: again\n")
    d = Daemon(write_config(tmp_path, {"local": {"aliases": str(bad)}}))
    r = cli(d, "newaliases")
    assert r.returncode == 65, r.stderr
    lines = r.stderr.decode().splitlines()
    assert [line.split(": ", 1)[1].split(" ", 1)[0] for line in lines] == [f"{bad}:2:", f"{bad}:4:", f"{bad}:5:"], lines
    (tmp_path / "m").mkdir()
    missing = Daemon(write_config(tmp_path / "m", {"local": {"aliases": str(tmp_path / "none")}}))
    r = cli(missing, "newaliases")
    assert r.returncode == 0 and "0 aliases" in r.stdout.decode(), r.stderr
    assert f"warning: {tmp_path}/none does not exist: no aliases" in r.stderr.decode()
