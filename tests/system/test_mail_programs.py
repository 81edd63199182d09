"""The programs a small office has calling edgemail's `sendmail` (task h-compat):
Debian's cron (job output, MAILTO with several addresses, MAILFROM), mutt (an
8-bit body, an attachment, DSN flags) and bsd-mailx (`mail -s subj user ...`),
each run for real against a test daemon on loopback, the mail read back from the
Maildirs.  Every call goes through a wrapper that records the program's exact argv
before it execs edgemail's sendmail, so the test asserts what the program passed.

cron and mutt are Debian packages in DEB_TEST_PKGS; bsd-mailx depends on an MTA
(apt would pull in exim4), so `make debs` unpacks it into .cache/bsd-mailx with
`dpkg-deb -x` (its libraries liblockfile1 and libbsd0 are in DEB_TEST_PKGS).
Debian's cron always runs /usr/sbin/sendmail and reads the system's crontab
directories: it runs in a private mount namespace (`unshare -m`, root) where
/usr/sbin, /etc/cron.d, /etc/crontab, /var/spool/cron and /run are the test's
own, and its @reboot job runs at once.  Each test skips with the reason when its
program is missing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from daemon_harness import BIN, ROOT, cli, start, wait_for

pytestmark = [pytest.mark.timeout(90)]

MAILX = shutil.which("bsd-mailx") or str(ROOT / ".cache/bsd-mailx/usr/bin/bsd-mailx")

WRAPPER = """#!/bin/sh
{python} -c 'import json, sys; open(sys.argv[1], "a").write(json.dumps(sys.argv[2:]) + "\\n")' {log} "$@"
EDGEMAIL_CONFIG={config} exec {sendmail} "$@"
"""


@pytest.fixture
def office(tmp_path):
    """A test daemon, a sendmail wrapper that records argv, the Maildirs."""
    d = start(tmp_path, {"local": {"create_mailboxes": False, "system_users": False,
                                   "users": ["admin", "alice", "bob", "carol"]}})

    class Office:
        daemon = d
        sendmail = tmp_path / "sendmail"
        argv_log = tmp_path / "argv.jsonl"

        def argvs(self) -> list[list[str]]:
            text = self.argv_log.read_text() if self.argv_log.exists() else ""
            return [json.loads(line) for line in text.splitlines()]

        def mail(self, user: str, count: int = 1) -> list[bytes]:
            new = tmp_path / "mail" / user / "Maildir" / "new"
            files = wait_for(lambda: (sorted(new.iterdir()) if new.is_dir() else []) if
                             len(list(new.glob("*")) if new.is_dir() else []) >= count else None,
                             f"{count} message(s) in {user}'s Maildir", d.log)
            return [f.read_bytes() for f in files]

    Office.sendmail.write_text(WRAPPER.format(python=BIN / "python", log=Office.argv_log,
                                              config=d.config, sendmail=BIN / "sendmail"))
    Office.sendmail.chmod(0o755)
    try:
        yield Office()
    finally:
        d.stop()


def _head_body(message: bytes) -> tuple[bytes, bytes]:
    """A Maildir file's header and body (a Maildir holds LF line ends)."""
    head, _, body = message.partition(b"\n\n")
    return head, body


# ------------------------------------------------------------------ cron

CRON_JOB = """MAILTO="bob@edge.example,carol@edge.example"
MAILFROM=cron-sender@edge.example
@reboot root printf 'backup done \\303\\274\\n'; echo second line
"""


def _run_cron(tmp_path: Path, sendmail: Path, until, job: str = CRON_JOB) -> None:
    """Debian's cron in a private mount namespace until `until()` is true."""
    sbin, crond, spool = tmp_path / "sbin", tmp_path / "cron.d", tmp_path / "spool"
    for p in (sbin, crond, spool):
        p.mkdir(parents=True)
    shutil.copy("/usr/sbin/cron", sbin / "cron")
    shutil.copy(sendmail, sbin / "sendmail")
    (crond / "edgemailtest").write_text(job)
    (crond / "edgemailtest").chmod(0o644)
    (tmp_path / "crontab").write_text("")
    script = (f"mount --bind {sbin} /usr/sbin && mount --bind {crond} /etc/cron.d && "
              f"mount --bind {tmp_path / 'crontab'} /etc/crontab && mount --bind {spool} /var/spool/cron && "
              "mount -t tmpfs tmpfs /run && exec /usr/sbin/cron -f")
    proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        until()
    finally:
        proc.terminate()
        out = proc.communicate(timeout=10)[0]
    assert b"mount:" not in out, out


@pytest.mark.skipif(not Path("/usr/sbin/cron").exists() or not shutil.which("unshare"),
                    reason="Debian's cron (package cron) or unshare missing")
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a private mount namespace")
def test_cron_job_output_reaches_every_mailto_address(office, tmp_path):
    _run_cron(tmp_path / "cron", office.sendmail, lambda: office.mail("carol"))
    assert office.argvs() == [["-FCronDaemon", "-i", "-B8BITMIME", "-oem",
                               "bob@edge.example,carol@edge.example"]]
    for user in ("bob", "carol"):
        head, body = _head_body(office.mail(user)[0])
        assert b"\nFrom: cron-sender@edge.example\n" in head          # MAILFROM: the header only
        assert b"Return-Path: <root@edge.example>" in head               # envelope: the job's user
        assert b"\nSubject: Cron <root@" in head and b"\nDate: " in head and b"\nMessage-ID: <" in head
        assert body == "backup done \u00fc\nsecond line\n".encode()


@pytest.mark.skipif(not Path("/usr/sbin/cron").exists() or not shutil.which("unshare"),
                    reason="Debian's cron (package cron) or unshare missing")
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a private mount namespace")
def test_cron_output_for_a_mistyped_mailto_comes_back_to_the_sender(office, tmp_path):
    """-oem (ErrorMode=m): the unknown user's report goes to the job's user (root -> admin)
    with the output in it, as sendmail mails errors back; before, exit 67 and the output was lost."""
    job = 'MAILTO="nosuchuser"\n@reboot root echo "nightly report: 3 files"\n'
    _run_cron(tmp_path / "cron", office.sendmail, lambda: office.mail("admin"), job)
    assert office.argvs() == [["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "nosuchuser"]]
    (report,) = office.mail("admin")
    head, body = _head_body(report)
    assert b"Return-Path: <>" in head and b"\nTo: <root@edge.example>" in head
    assert b"Final-Recipient: rfc822; nosuchuser@edge.example" in body and b"Status: 5.1.1" in body
    assert b"nightly report: 3 files" in body                      # the job's output, not lost


# ------------------------------------------------------------------ mutt

MUTTRC = """set sendmail="{sendmail} -oem -oi"
set from="alice@edge.example"
set use_from=yes
set use_envelope_from=yes
set use_8bitmime=yes
set dsn_notify="failure,delay"
set dsn_return="hdrs"
set send_charset="utf-8"
set copy=no
set hostname="edge.example"
"""


@pytest.mark.skipif(not shutil.which("mutt"), reason="mutt missing (package mutt)")
def test_mutt_8bit_body_attachment_and_dsn(office, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / ".muttrc").write_text(MUTTRC.format(sendmail=office.sendmail))
    (tmp_path / "report.bin").write_bytes(bytes(range(256)))
    r = subprocess.run(["mutt", "-s", "Bericht f\u00fcr M\u00e4rz", "-a", str(tmp_path / "report.bin"), "--",
                        "bob@edge.example", "admin"], input="Gr\u00fc\u00dfe aus dem B\u00fcro\n".encode(),
                       env={**os.environ, "HOME": str(home), "LANG": "C.UTF-8"}, capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert office.argvs() == [["-oem", "-oi", "-B8BITMIME", "-f", "alice@edge.example", "-N", "failure,delay",
                               "-R", "hdrs", "--", "bob@edge.example", "admin@edge.example"]]
    import email
    import email.policy
    for user in ("bob", "admin"):
        msg = email.message_from_bytes(office.mail(user)[0], policy=email.policy.default)
        assert msg["Return-Path"] == "<alice@edge.example>"
        assert str(msg["Subject"]) == "Bericht f\u00fcr M\u00e4rz"
        text, attachment = [p for p in msg.walk() if not p.is_multipart()]
        assert text.get_content() == "Gr\u00fc\u00dfe aus dem B\u00fcro\n"
        assert attachment.get_content() == bytes(range(256))
    assert "admin@edge.example" in msg["To"]                          # qualified in the header too


# ------------------------------------------------------------------ bsd-mailx

@pytest.mark.skipif(not os.access(MAILX, os.X_OK), reason="bsd-mailx missing (make debs unpacks it)")
def test_bsd_mailx_mail_s_to_local_and_outside(office, tmp_path):
    """`mail -s subj bob carol@far.example -c ...`: bsd-mailx sends `-i -t`, with `To: bob`."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".mailrc").write_text(f"set sendmail={office.sendmail}\n")
    r = subprocess.run([MAILX, "-s", "Stand \u00fc", "-c", "admin", "-b", "carol", "-r", "alice@edge.example",
                        "bob", "anna@far.example"], input="Zahlen: 42 \u00fc\n".encode(),
                       env={**os.environ, "HOME": str(home), "LANG": "C.UTF-8"}, capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert office.argvs() == [["-i", "-t", "-f", "alice@edge.example"]]
    head, body = _head_body(office.mail("bob")[0])
    assert b"\nTo: anna@far.example, bob@edge.example\n" in head     # mailx wrote "To: anna@far.example, bob"
    assert b"\nCc: admin@edge.example\n" in head and b"Bcc" not in head
    assert body == "Zahlen: 42 \u00fc\n".encode()
    assert b"Bcc" not in office.mail("carol")[0]
    listing = cli(office.daemon, "mailq").stdout.decode()
    assert "anna@far.example" in listing                               # held for the link
