"""Mailboxes a real Dovecot reads (issue 13 §2): a private Dovecot 2.3 instance (Debian's
dovecot-imapd and dovecot-lmtpd; `make test` installs them as root) on loopback ports,
configured in a temporary folder with one virtual-mail identity (mail_uid/mail_gid
"mail"), never the system's.  The edgemail daemon delivers lmtp.example by LMTP to it
(the recommended setup) and edge.example into Maildirs shared with it through
[local] maildir_group/maildir_mode; every delivered message is read back over IMAP."""

from __future__ import annotations

import email
import imaplib
import os
import shutil
import smtplib
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from daemon_harness import cli, free_port, start

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

DOVECOT_CONF = """\
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
instance_name = edgemail-test-{imap}
listen = 127.0.0.1
protocols = imap lmtp
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
auth_username_format = %Ln
mail_uid = mail
mail_gid = mail
first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = {gid}
default_internal_user = dovecot
default_login_user = dovenull
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%n {d}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%n {d}/users
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {lmtp}
  }}
  unix_listener lmtp {{
    mode = 0
  }}
}}
"""


class Dovecot:
    """`dovecot -F -c CONF` of our own, started and stopped by the test."""

    def __init__(self, d: Path) -> None:
        import pwd
        self.d, self.imap, self.lmtp = d, free_port(), free_port()
        mail = pwd.getpwnam("mail")
        for sub in ("run", "state", "lmtp"):
            (d / sub).mkdir(exist_ok=True)
        os.chown(d / "lmtp", mail.pw_uid, mail.pw_gid)       # Dovecot's own mail store (the LMTP users)
        (d / "users").write_text(
            f"kim:{{PLAIN}}kim-secret::::{d}/mail/kim::userdb_mail=maildir:{d}/mail/kim/Maildir\n"
            f"ann:{{PLAIN}}ann-secret::::{d}/lmtp/ann::userdb_mail=maildir:{d}/lmtp/ann/Maildir\n")
        (d / "dovecot.conf").write_text(DOVECOT_CONF.format(d=d, imap=self.imap, lmtp=self.lmtp,
                                                            uid=mail.pw_uid, gid=mail.pw_gid))
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["dovecot", "-F", "-c", str(self.d / "dovecot.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while not all(_listening(p) for p in (self.imap, self.lmtp)):
            assert self.proc.poll() is None, self.proc.stderr.read().decode() + self.log()
            assert time.monotonic() < deadline, self.log()
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)

    def log(self) -> str:
        path = self.d / "dovecot.log"
        return path.read_text() if path.exists() else ""

    def messages(self, user: str) -> list[email.message.Message]:
        """Every message in USER's INBOX, read over IMAP."""
        with imaplib.IMAP4("127.0.0.1", self.imap) as m:
            m.login(user, f"{user}-secret")
            typ, count = m.select("INBOX")
            assert typ == "OK", count
            if int(count[0]) == 0:
                return []
            typ, data = m.fetch("1:*", "(RFC822)")
            assert typ == "OK", data
            return [email.message_from_bytes(part[1]) for part in data if isinstance(part, tuple)]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def world():
    if os.geteuid() != 0:
        pytest.skip("Dovecot's mail processes switch to the mail user: needs root")
    if shutil.which("dovecot") is None or not Path("/usr/lib/dovecot/lmtp").exists():
        pytest.skip("Debian's dovecot-imapd and dovecot-lmtpd are not installed (make test installs them)")
    d = Path(tempfile.mkdtemp(prefix="edgemail-dovecot-"))
    d.chmod(0o755)                                  # the mail user passes through to its mailboxes
    dovecot = Dovecot(d)
    dovecot.start()
    daemon = None
    try:
        daemon = start(d, {
            "local_domains": ["edge.example", "lmtp.example"],
            "routes": {"edge.example": "local", "lmtp.example": f"lmtp:127.0.0.1:{dovecot.lmtp}"},
            "local": {"maildir": str(d / "mail" / "%u" / "Maildir"), "maildir_group": "mail",
                      "maildir_mode": "0660"}})
        yield dovecot, daemon
    finally:
        if daemon is not None:
            daemon.kill()
        dovecot.stop()
        shutil.rmtree(d, ignore_errors=True)


def _wait_empty(daemon, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while b"Mail queue is empty" not in (out := cli(daemon, "mailq").stdout):
        assert time.monotonic() < deadline, out.decode()
        time.sleep(0.1)


SENT = [
    ("one route each", ["kim@edge.example", "ann@lmtp.example"], "hello both\r\n"),
    ("the detail goes to kim's box", ["kim+lists@edge.example"], "with a +detail\r\n"),
    ("eight bit", ["kim@edge.example", "ann@lmtp.example"], "Grüße aus dem Büro, 25 °C\r\n"),
]


def _smtp(port: int, subject: str, rcpts: list[str], body: str) -> None:
    msg = (f"From: till@edge.example\r\nTo: {', '.join(rcpts)}\r\nSubject: {subject}\r\n"
           f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}").encode()
    with smtplib.SMTP("127.0.0.1", port, local_hostname="till.lan", timeout=10) as s:
        s.sendmail("till@edge.example", rcpts, msg, mail_options=["BODY=8BITMIME"])


def test_every_delivered_message_is_read_over_imap(world):
    dovecot, daemon = world
    for subject, rcpts, body in SENT:
        _smtp(daemon.port, subject, rcpts, body)
    r = cli(daemon, "sendmail", "-t", input=b"To: kim@edge.example\nCc: ann@lmtp.example\nSubject: from cron\n\n"
                                            + b"line\n" * 2000)
    assert r.returncode == 0, r.stderr
    _wait_empty(daemon)

    for user, domain in (("kim", "edge.example"), ("ann", "lmtp.example")):
        got = {m["Subject"]: m for m in dovecot.messages(user)}
        want = {s: b for s, rcpts, b in SENT if any(r.split("@")[0].split("+")[0] == user for r in rcpts)}
        assert set(got) == set(want) | {"from cron"}, (user, sorted(got), dovecot.log()[-2000:])
        for subject, body in want.items():
            assert got[subject].get_payload(decode=True).decode("utf-8") == body, subject   # IMAP: CRLF
        assert got["from cron"].get_payload() == "line\r\n" * 2000
        assert all(m["Received"] for m in got.values())

    # the shared Maildir: group mail, files 0660, folders setgid 2770; Dovecot wrote there too
    box = dovecot.d / "mail" / "kim" / "Maildir"
    for folder in (box, box / "cur", box / "new", box / "tmp", box.parent):
        st = folder.stat()
        assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o2770, _gid("mail")), (folder, oct(st.st_mode))
    files = [p for sub in ("cur", "new") for p in (box / sub).iterdir()]
    assert len(files) == 4 and all(stat.S_IMODE(p.stat().st_mode) == 0o660 and p.stat().st_gid == _gid("mail")
                                   for p in files)
    assert (box / "dovecot-uidlist").stat().st_uid == _uid("mail")   # Dovecot, as mail, keeps its index here


def test_lmtp_deferral_keeps_the_mail_until_dovecot_is_back(world):
    dovecot, daemon = world
    dovecot.stop()
    _smtp(daemon.port, "while dovecot is down", ["ann@lmtp.example"], "kept\r\n")
    deadline = time.monotonic() + 20
    while b"(Deferred: " not in (listing := cli(daemon, "mailq").stdout):
        assert time.monotonic() < deadline, listing.decode()
        time.sleep(0.1)
    assert b"<ann@lmtp.example>" in listing
    dovecot.start()
    assert cli(daemon, "sendmail", "-q").returncode == 0      # a queue run: LMTP needs no call
    _wait_empty(daemon)
    (msg,) = dovecot.messages("ann")
    assert msg["Subject"] == "while dovecot is down" and msg.get_payload() == "kept\r\n"


def _gid(name: str) -> int:
    import grp
    return grp.getgrnam(name).gr_gid


def _uid(name: str) -> int:
    import pwd
    return pwd.getpwnam(name).pw_uid


def test_fetchmail_moves_a_mailbox_into_edgemail_over_smtp(world, tmp_path):
    """fetchmail as an office runs it against the ISP's mailbox: IMAP from Dovecot (ann's box
    stands for the ISP's), forwarded to our listener as `RCPT TO:<kim@localhost>`
    (fetchmail's smtphost localhost, its default smtpaddress); kim reads it over IMAP."""
    fetchmail = shutil.which("fetchmail")
    if fetchmail is None:
        pytest.skip("fetchmail not installed (make debs installs it)")
    dovecot, daemon = world
    _smtp(daemon.port, "at the ISP", ["ann@lmtp.example"], "Grüße vom Provider\r\n")
    _wait_empty(daemon)
    rc = tmp_path / "fetchmailrc"
    rc.write_text(f'poll 127.0.0.1 service {dovecot.imap} protocol imap user "ann" password "ann-secret"'
                  f" is kim here smtphost localhost/{daemon.port} sslproto '' no idle\n")
    rc.chmod(0o600)
    r = subprocess.run([fetchmail, "--nosyslog", "--nodetach", "-v", "-f", str(rc)], capture_output=True,
                       text=True, timeout=60, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "SMTP> RCPT TO:<kim@localhost>" in out and "SMTP< 250 2.1.5" in out, out
    _wait_empty(daemon)
    got = {m["Subject"]: m for m in dovecot.messages("kim")}
    assert got["at the ISP"].get_payload(decode=True).decode("utf-8") == "Grüße vom Provider\r\n"
    assert all(m["Subject"] != "at the ISP" for m in dovecot.messages("ann"))      # fetched, then expunged
    print("\nfetchmail IMAP -> SMTP:\n" + "\n".join(line for line in out.splitlines() if "SMTP" in line))
