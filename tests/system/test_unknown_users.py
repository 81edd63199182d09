"""Issue 17 §4: unknown local users are refused at RCPT (every listener, the
WAN one too) and by ``sendmail`` (sendmail's "User unknown", exit 67, nothing
queued for them) with the default config; the real daemon and console scripts."""

from __future__ import annotations

import smtplib
from pathlib import Path

import pytest

from daemon_harness import cli, control, start, wait_for

pytestmark = pytest.mark.timeout(60)


def _ports(daemon) -> dict[str, int]:
    """Listener name -> bound port, from the daemon's status ("lan=[127.0.0.1]:PORT")."""
    listeners = control(daemon).request("status")["listeners"]
    return {item.split("=")[0]: int(item.rsplit(":", 1)[1]) for item in listeners}


@pytest.fixture
def daemon(tmp_path):
    d = start(tmp_path, {
        "local": {"create_mailboxes": False, "users": ["admin", "alice", "bob"],
                  "system_users": False},
        "listen": [{"name": "lan", "address": "127.0.0.1", "port": 0, "strict": False},
                   {"name": "wan", "address": "127.0.0.1", "port": 0, "strict": True}]})
    yield d
    d.kill()


def _mailbox(tmp_path: Path, user: str) -> Path:
    return tmp_path / "mail" / user / "Maildir"


@pytest.mark.parametrize("listener", ["lan", "wan"])
def test_rcpt_unknown_user_550_511_on_every_listener(daemon, tmp_path, listener):
    with smtplib.SMTP("127.0.0.1", _ports(daemon)[listener], timeout=10) as s:
        s.ehlo("till-3.lan")
        s.mail("carol@remote1.example")
        assert s.rcpt("NoSuchUser@edge.example") == (
            550, b"5.1.1 <NoSuchUser@edge.example>... User unknown")
        assert s.rcpt("postmaster@edge.example")[0] == 250       # aliases: postmaster -> root -> admin
        assert s.rcpt("alice@edge.example")[0] == 250            # local.users
        assert s.rcpt("office@edge.example")[0] == 250           # an alias (alice, bob)
        code, _ = s.data(b"Subject: hi\r\n\r\nhello\r\n")
        assert code == 250
    assert not _mailbox(tmp_path, "nosuchuser").exists()


def test_sendmail_unknown_user_exit_67_nothing_queued(daemon, tmp_path):
    r = cli(daemon, "sendmail", "NoSuchUser@edge.example", input=b"Subject: x\n\nbody\n")
    assert r.returncode == 67, r.stderr
    assert r.stderr.decode() == "sendmail: NoSuchUser@edge.example... User unknown\n"
    assert "Mail queue is empty" in cli(daemon, "mailq").stdout.decode()
    assert not _mailbox(tmp_path, "nosuchuser").exists()
    assert "ruleset=check_rcpt, arg1=<NoSuchUser@edge.example>" in daemon.log.read_text()


def test_sendmail_t_delivers_to_the_good_reports_the_bad(daemon, tmp_path):
    r = cli(daemon, "sendmail", "-t", "-oi",
            input=b"To: alice@edge.example, NoSuchUser@edge.example\nCc: bob\nSubject: x\n\nbody\n")
    assert r.returncode == 67, r.stderr
    assert r.stderr.decode() == "sendmail: NoSuchUser@edge.example... User unknown\n"
    for user in ("alice", "bob"):
        wait_for(lambda: list((_mailbox(tmp_path, user) / "new").glob("*")), f"{user}'s mail", daemon.log)
    assert not _mailbox(tmp_path, "nosuchuser").exists()


def test_sendmail_unknown_user_with_the_daemon_down(daemon, tmp_path):
    daemon.stop()
    r = cli(daemon, "sendmail", "nosuchuser@edge.example", input=b"Subject: x\n\nbody\n")
    assert r.returncode == 67, r.stderr
    assert r.stderr.decode() == "sendmail: nosuchuser@edge.example... User unknown\n"
    assert not list((tmp_path / "spool" / "maildrop").glob("*"))


def test_users_file_read_again_by_newaliases(tmp_path):
    users = tmp_path / "users"
    users.write_text("# the office\nalice\n")
    d = start(tmp_path, {"local": {"create_mailboxes": False, "users": [], "users_file": str(users)}})
    try:
        def rcpt(address: str) -> int:
            with smtplib.SMTP("127.0.0.1", d.port, timeout=10) as s:
                s.ehlo("till-3.lan")
                s.mail("alice@edge.example")
                return s.rcpt(address)[0]
        assert (rcpt("alice@edge.example"), rcpt("kim@edge.example")) == (250, 550)
        users.write_text("alice\nkim\n")
        r = cli(d, "newaliases")
        assert r.returncode == 0, r.stderr
        assert rcpt("kim@edge.example") == 250
    finally:
        d.kill()
