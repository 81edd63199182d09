"""STARTTLS, AUTH and submission against the whole daemon with real clients
(issue 11 §1, §2): swaks for STARTTLS, AUTH PLAIN/LOGIN good and bad, AUTH
refused before TLS, relay on the submission listener only after AUTH, a
sender the user does not own; SIGHUP re-reading the certificate and the
credentials; and ``sendmail`` keeping its message in maildrop/ when the
daemon's spool is full (issue 16 §13)."""

from __future__ import annotations

import json
import shutil
import signal
import smtplib
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daemon_harness import cli, start

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks not installed (make test installs it)")]


def _cert(directory: Path, cn: str) -> tuple[Path, Path]:
    crt, key = directory / f"{cn}.crt", directory / f"{cn}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", f"/CN={cn}", "-keyout", str(key), "-out", str(crt)],
                   check=True, capture_output=True)
    return crt, key


def _passwd_line(user: str, password: str) -> str:
    """What the admin runs: python3 -m edgemail.smtpd.credentials USER (password on stdin)."""
    r = subprocess.run([sys.executable, "-m", "edgemail.smtpd.credentials", user], input=password + "\n",
                       capture_output=True, text=True, check=True, timeout=30)
    assert r.stdout.startswith(f"{user}:$scrypt$ln=14,r=8,p=1$"), r.stdout
    return r.stdout


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A daemon with a LAN listener (STARTTLS, AUTH) and a submission listener."""
    d = tmp_path_factory.mktemp("auth")
    crt, key = _cert(d, "gw.edge.example")
    (d / "smtpd.passwd").write_text(_passwd_line("alice", "s3cret pw"))
    tls = {"tls_cert": str(crt), "tls_key": str(key)}
    daemon = start(d, {
        "listen": [{"name": "lan", "address": "127.0.0.1", "port": 0, "strict": False, **tls},
                   {"name": "submission", "address": "127.0.0.1", "port": 0, "submission": True,
                    "require_tls": True, **tls}],
        "smtpd": {"auth_file": str(d / "smtpd.passwd")},
    })
    status = cli(daemon, "edgemail", "--json", "status")
    ports = {w.split("=")[0]: int(w.rsplit(":", 1)[1]) for w in json.loads(status.stdout)["listeners"]}
    yield daemon, ports, d
    daemon.kill()


def swaks(port: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(port), "--helo", "till-3.lan",
                           "--h-Subject", "swaks", "--body", "hello", "--timeout", "20", *args],
                          capture_output=True, text=True, timeout=60)


def _log(daemon) -> str:
    return daemon.log.read_text()


def _queued_for(daemon, address: str) -> bool:
    r = cli(daemon, "mailq")
    return address in r.stdout.decode()


def test_swaks_starttls_on_the_lan_listener(site):
    daemon, ports, d = site
    r = swaks(ports["lan"], "--tls", "--from", "a@x.example", "--to", "bob@edge.example")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "<-  220 2.0.0 Ready to start TLS" in r.stdout and "=== TLS started with cipher TLSv1." in r.stdout
    assert "STARTTLS=server, relay=[127.0.0.1]" in _log(daemon)


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_swaks_auth_good_relays_on_submission(site, mech):
    daemon, ports, d = site
    rcpt = f"{mech.lower()}@far.example"
    r = swaks(ports["submission"], "--tls", "--auth", mech, "--auth-user", "alice",
              "--auth-password", "s3cret pw", "--from", "alice@edge.example", "--to", rcpt)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "<~  235 2.7.0 Authentication successful" in r.stdout
    assert _queued_for(daemon, rcpt), "relayed: queued for the outside recipient"
    assert f"mech={mech}" in _log(daemon) and "s3cret" not in _log(daemon)


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_swaks_auth_bad_password_is_535(site, mech):
    daemon, ports, d = site
    r = swaks(ports["submission"], "--tls", "--auth", mech, "--auth-user", "alice",
              "--auth-password", "wrong", "--from", "alice@edge.example", "--to", "x@far.example")
    assert r.returncode == 28, r.stdout
    assert "<~* 535 5.7.8 Authentication credentials invalid" in r.stdout
    assert "AUTH failure (" + mech + "): authentication failed, authid=alice" in _log(daemon)
    assert "wrong" not in _log(daemon)


def test_swaks_auth_is_not_offered_before_tls(site):
    daemon, ports, d = site
    r = swaks(ports["lan"], "--auth", "PLAIN", "--auth-user", "alice", "--auth-password", "s3cret pw",
              "--from", "a@x.example", "--to", "bob@edge.example")
    assert r.returncode == 28, r.stdout
    assert "Host did not advertise authentication" in r.stdout + r.stderr
    assert "250-AUTH" not in r.stdout


def test_swaks_submission_relays_only_after_auth(site):
    daemon, ports, d = site
    r = swaks(ports["submission"], "--tls", "--from", "alice@edge.example", "--to", "noauth@far.example")
    assert r.returncode == 23, r.stdout
    assert "<~* 530 5.7.0 Authentication required" in r.stdout
    assert not _queued_for(daemon, "noauth@far.example")


def test_swaks_sender_the_user_does_not_own_is_refused(site):
    daemon, ports, d = site
    r = swaks(ports["submission"], "--tls", "--auth", "PLAIN", "--auth-user", "alice",
              "--auth-password", "s3cret pw", "--from", "boss@edge.example", "--to", "x@far.example")
    assert r.returncode == 23, r.stdout
    assert "<~* 553 5.7.1 <boss@edge.example>... Sender address rejected: not owned by user alice" in r.stdout


def _served_cert(port: int) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with smtplib.SMTP("127.0.0.1", port, local_hostname="till-3.lan", timeout=10) as s:
        s.starttls(context=ctx)
        return s.sock.getpeercert(binary_form=True)


def _wait_for_line(daemon, needle: str, count: int) -> None:
    deadline = time.monotonic() + 20
    while _log(daemon).count(needle) < count:
        assert time.monotonic() < deadline, f"no {needle!r} line"
        time.sleep(0.05)


def test_sighup_reads_the_certificate_and_the_credentials_again(site):
    daemon, ports, d = site
    before = _served_cert(ports["lan"])
    reloads = _log(daemon).count("daemon: reloaded")
    new_crt, new_key = _cert(d, "gw2.edge.example")
    shutil.copy(new_crt, d / "gw.edge.example.crt")
    shutil.copy(new_key, d / "gw.edge.example.key")
    with open(d / "smtpd.passwd", "a") as f:
        f.write(_passwd_line("bob", "bobs pw"))
    daemon.proc.send_signal(signal.SIGHUP)
    _wait_for_line(daemon, "daemon: reloaded", reloads + 1)
    line = [ln for ln in _log(daemon).splitlines() if "daemon: reloaded" in ln][-1]
    assert "reason=SIGHUP" in line and "tls=2, auth_users=2" in line, line
    after = _served_cert(ports["lan"])
    assert before != after and after == ssl.PEM_cert_to_DER_cert(new_crt.read_text())
    r = swaks(ports["submission"], "--tls", "--auth", "LOGIN", "--auth-user", "bob",
              "--auth-password", "bobs pw", "--from", "bob@edge.example", "--to", "bob2@far.example")
    assert r.returncode == 0, r.stdout


def test_sendmail_keeps_the_message_in_maildrop_when_the_spool_is_full(tmp_path):
    full = start(tmp_path, {"MinFreeBlocks": 1 << 40})         # no file system has a PiB free
    try:
        r = cli(full, "sendmail", "-t", "-i", input=b"To: carol@edge.example\nSubject: full\n\nkept\n")
        assert r.returncode == 0, r.stderr
        assert b"spool full" in r.stderr and b"message left in the maildrop" in r.stderr
        assert b"while it runs, within 10 s once it has room" in r.stderr      # not only "when it starts"
        drops = list((tmp_path / "spool" / "maildrop").iterdir())
        assert len(drops) == 1
    finally:
        full.stop()
    again = start(tmp_path)                                     # room again: the message is queued
    try:
        deadline = time.monotonic() + 20
        new = tmp_path / "mail" / "carol" / "Maildir" / "new"
        while not (new.is_dir() and any(new.iterdir())):
            assert time.monotonic() < deadline, "the maildrop message was not delivered"
            time.sleep(0.05)
        (msg,) = new.iterdir()
        assert b"kept" in msg.read_bytes()
    finally:
        again.kill()
