"""Postfix 3.7 as edgemail's neighbour, both ways (task h-compat §3): a private
Postfix (the bench's unpacked package, tests/bench/peers.py; its own config,
queue and Maildirs in a temporary folder, loopback ports, never the system's)
with a self-signed certificate, and the edgemail daemon with one too.

* Postfix relays to edgemail's listener (relayhost): STARTTLS, PIPELINING,
  8BITMIME, SIZE, DSN (NOTIFY/ORCPT/ENVID pass through) and SMTPUTF8; the mail
  lands in the Maildir, and the success DSN edgemail owes goes back to Postfix.
* edgemail's queue run delivers a relay route to Postfix: STARTTLS, an 8-bit
  body, an SMTPUTF8 sender; Postfix's Maildir holds it.

Manual/bench, not CI: Postfix is not in DEB_TEST_PKGS (a system postfix must
not be installed).  `make postfix-peer` unpacks it into .cache/peers (apt-get
download + dpkg -x, as `make bench` does; creates the postfix user and the
postdrop group); without it the test skips.  Root only (Postfix's daemons
change to the postfix user)."""

from __future__ import annotations

import json
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from daemon_harness import ROOT, cli, free_port, start, wait_for

sys.path.insert(0, str(ROOT / "tests" / "bench"))
import peers  # noqa: E402  (the bench's peer helpers: lib_path, ensure_postfix_users)

PF_ROOT = ROOT / ".cache" / "peers" / "postfix" / "root"
pytestmark = [pytest.mark.root, pytest.mark.slow, pytest.mark.timeout(180),
              pytest.mark.skipif(not (PF_ROOT / "usr/sbin/postfix").exists(),
                                 reason="Postfix not unpacked (make postfix-peer; manual, not CI)")]

MASTER_CF = """127.0.0.1:{port} inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
local unix - n n - - local
virtual unix - n n - - virtual
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
tlsmgr unix - - n 1000? 1 tlsmgr
postlog unix-dgram n - n - 1 postlogd
"""


def _cert(directory: Path, cn: str) -> tuple[Path, Path]:
    crt, key = directory / f"{cn}.crt", directory / f"{cn}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", f"/CN={cn}", "-keyout", str(key), "-out", str(crt)],
                   check=True, capture_output=True)
    crt.chmod(0o644)
    key.chmod(0o644)
    return crt, key


class PrivatePostfix:
    """Postfix on 127.0.0.1:port: far.example in Maildirs under vmail/, the rest to relayhost."""

    def __init__(self, d: Path, port: int, relay_port: int) -> None:
        self.d, self.port = d, port
        self.config, self.queue, self.vmail = d / "etc", d / "queue", d / "vmail"
        self.env = {"LD_LIBRARY_PATH": peers.lib_path(PF_ROOT), "MAIL_CONFIG": str(self.config),
                    "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}
        crt, key = _cert(d, "mx.far.example")
        r = PF_ROOT
        self.main_cf = f"""compatibility_level = 3.6
config_directory = {self.config}
queue_directory = {self.queue}
data_directory = {d}/data
command_directory = {r}/usr/sbin
daemon_directory = {r}/usr/lib/postfix/sbin
shlib_directory = {r}/usr/lib/postfix
meta_directory = {self.config}
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.far.example
mydomain = far.example
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:{relay_port}
smtp_tls_security_level = may
smtp_tls_loglevel = 1
smtpd_tls_security_level = may
smtpd_tls_cert_file = {crt}
smtpd_tls_key_file = {key}
smtpd_tls_received_header = yes
smtputf8_enable = yes
virtual_mailbox_domains = far.example
virtual_mailbox_maps = inline:{{ anna@far.example=anna/, x@far.example=x/, j\u00f6rg@far.example=joerg/ }}
virtual_mailbox_base = {self.vmail}
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
alias_maps =
alias_database =
biff = no
smtp_dns_support_level = disabled
# the dialogue both ways in maillog (the test reads the parameters each side sent)
debug_peer_list = 127.0.0.1
debug_peer_level = 1
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C LD_LIBRARY_PATH
"""
        self.master_cf = MASTER_CF.format(port=port)

    def postfix(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(PF_ROOT / "usr/sbin/postfix"), "-c", str(self.config), *args],
                              capture_output=True, text=True, env=self.env, timeout=60)

    def start(self) -> None:
        peers.ensure_postfix_users()
        for p in (self.config, self.queue, self.d / "data", self.vmail):
            p.mkdir()
        (self.config / "main.cf").write_text(self.main_cf)
        (self.config / "master.cf").write_text(self.master_cf)
        shutil.copy(PF_ROOT / "etc/postfix/postfix-files", self.config / "postfix-files")
        (self.config / "dynamicmaps.cf").write_text("")
        (self.config / "dynamicmaps.cf.d").mkdir()
        (self.config / "postfix-files.d").mkdir()
        shutil.chown(self.vmail, 65534, 65534)
        for step in ("check", "start"):
            r = self.postfix(step)
            assert r.returncode == 0, f"postfix {step}: {r.stderr}\n{self.log()[-2000:]}"
            shutil.chown(self.d / "data", "postfix")       # after check made it, before start
        wait_for(lambda: _listening(self.port), "Postfix's smtpd", self.d / "maillog")

    def stop(self) -> None:
        self.postfix("stop")

    def mail(self, box: str) -> list[bytes]:
        new = self.vmail / box / "new"
        files = wait_for(lambda: sorted(new.iterdir()) if new.is_dir() and any(new.iterdir()) else None,
                         f"a message in Postfix's {box}/new", self.d / "maillog", timeout=60)
        return [f.read_bytes() for f in files]

    def log(self) -> str:
        p = self.d / "maillog"
        return p.read_text(errors="replace") if p.exists() else ""


def _listening(port: int) -> bool:
    import socket
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture
def neighbours():
    # not pytest's tmp_path (0700 parents): Postfix's daemons, as user postfix, pass through
    tmp_path = Path(tempfile.mkdtemp(prefix="edgemail-postfix-"))
    tmp_path.chmod(0o755)
    crt, key = _cert(tmp_path, "gw.edge.example")
    pf_port = free_port()
    d = start(tmp_path, {
        "listen": [{"name": "lan", "address": "127.0.0.1", "port": 0, "strict": False,
                    "tls_cert": str(crt), "tls_key": str(key)}],
        "routes": {"far.example": {"route": f"relay:[127.0.0.1]:{pf_port}"}},
        "LogLevel": 9,
    })
    status = json.loads(cli(d, "edgemail", "--json", "status").stdout)
    edge_port = int(status["listeners"][0].rsplit(":", 1)[1])
    (tmp_path / "pf").mkdir()
    pf = PrivatePostfix(tmp_path / "pf", pf_port, edge_port)
    try:
        pf.start()
        yield d, pf, tmp_path
    finally:
        pf.stop()
        d.stop()
        shutil.rmtree(tmp_path, ignore_errors=True)


def _maildir(tmp_path: Path, user: str) -> list[bytes]:
    new = tmp_path / "mail" / user / "Maildir" / "new"
    files = wait_for(lambda: sorted(new.iterdir()) if new.is_dir() and any(new.iterdir()) else None,
                     f"a message in {user}'s Maildir", tmp_path / "daemon.log", timeout=60)
    return [f.read_bytes() for f in files]


def test_postfix_relays_to_edgemail_with_tls_8bit_dsn(neighbours):
    d, pf, tmp_path = neighbours
    body = "Grüße: 8-bit über Postfix\n"
    with smtplib.SMTP("127.0.0.1", pf.port, timeout=30) as s:
        s.ehlo("lan-host.far.example")
        s.sendmail("x@far.example", ["bob@edge.example"],
                   f"From: x@far.example\nTo: bob@edge.example\nSubject: via postfix\n"
                   f"MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
                   f"Content-Transfer-Encoding: 8bit\n\n{body}".encode(),
                   mail_options=["BODY=8BITMIME", "RET=HDRS", "ENVID=pf-env-1"],
                   rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;bob@edge.example"])
    got = _maildir(tmp_path, "bob")[0]
    assert body.encode() in got
    head = got.split(b"\n\n", 1)[0]
    assert b"by gw.edge.example" in head and b"ESMTPS" in head        # Postfix used STARTTLS to us
    assert b"from mx.far.example" in head
    # NOTIFY=SUCCESS made it across: edgemail's "delivered" DSN goes back through Postfix
    dsn = pf.mail("x")[0]
    assert b"multipart/report" in dsn and b"report-type=delivery-status" in dsn
    assert b"Original-Envelope-Id: pf-env-1" in dsn and b"Action: delivered" in dsn
    assert b"Original-Recipient: rfc822; bob@edge.example" in dsn and b"/Maildir/" not in dsn
    assert "status=sent" in pf.log()
    # Postfix's client side (debug_peer_list): its DSN parameters, and MAIL, RCPT, DATA in one
    # pipelined group (all sent before our first reply), as our listener offers PIPELINING
    said = [line.split("]: ", 1)[1] for line in pf.log().splitlines() if "postfix/smtp[" in line and "]: " in line]
    sent = [x for x in said if x[2:].startswith("127.0.0.1[127.0.0.1]")]
    mail = next(i for i, x in enumerate(sent) if x.startswith("> ") and "MAIL FROM:<x@far.example>" in x)
    assert "BODY=8BITMIME ENVID=pf-env-1 RET=HDRS" in sent[mail] and "SIZE=" in sent[mail]
    assert "RCPT TO:<bob@edge.example> ORCPT=rfc822;bob@edge.example NOTIFY=SUCCESS,FAILURE" in sent[mail + 1]
    assert sent[mail + 2].endswith("DATA") and "250 2.1.0 Sender <x@far.example> OK" in sent[mail + 3]


def test_edgemail_queue_run_delivers_to_postfix_with_tls_and_smtputf8(neighbours):
    d, pf, tmp_path = neighbours
    r = cli(d, "sendmail", "-i", "-f", "alice@edge.example", "anna@far.example",
            input="From: alice@edge.example\nTo: anna@far.example\nSubject: 8bit\n"
                  "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
                  "Zürich, 5 °C\n".encode())
    assert r.returncode == 0, r.stderr
    got = pf.mail("anna")[0]
    assert "Zürich, 5 °C".encode() in got
    assert b"by mx.far.example (Postfix) with ESMTPS" in got           # we used STARTTLS to Postfix
    assert b"Return-Path: <alice@edge.example>" in got
    with smtplib.SMTP("127.0.0.1", d.port, timeout=30) as s:        # SMTPUTF8 sender and recipient
        s.ehlo("lan-host.edge.example")
        s.sendmail("jörg@edge.example", ["jörg@far.example"],
                   "From: jörg@edge.example\nSubject: utf8\n\nhallo\n".encode(),
                   mail_options=["SMTPUTF8", "BODY=8BITMIME"])
    got = pf.mail("joerg")[0]
    heard = [line for line in pf.log().splitlines() if "postfix/smtpd[" in line and ": < localhost" in line]
    assert any("MAIL FROM:<alice@edge.example> SIZE=" in x and "BODY=8BITMIME" in x for x in heard), heard
    assert any("MAIL FROM:<jörg@edge.example> SIZE=" in x and x.endswith("SMTPUTF8") for x in heard), heard
    assert any(x.endswith(": STARTTLS") for x in heard)
    assert "Return-Path: <jörg@edge.example>".encode() in got
    assert b"by mx.far.example (Postfix) with UTF8SMTPS" in got         # SMTPUTF8 on, over TLS
