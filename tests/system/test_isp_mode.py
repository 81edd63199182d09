"""edgemail in ISP mode, the whole daemon: two customers (each an edgemail daemon of
its own, on loopback), mail held for both, fetchmail's ``protocol ETRN`` for an
authorised and an unauthorised node (by network, and by AUTH user: esmtpname),
each customer's ETRN flushing only its own domains into its own Maildirs,
``mailq`` and ``queue list --json`` per customer."""

from __future__ import annotations

import json
import shutil
import smtplib
import subprocess
import time
from pathlib import Path

import pytest

from daemon_harness import Daemon, cli, free_port, write_config
from demo.run import to_toml
from edgemail.smtpd.credentials import hash_password

pytestmark = pytest.mark.timeout(120)
FETCHMAIL = shutil.which("fetchmail")


def customer_daemon(base: Path, domain: str) -> Daemon:
    """A customer's own edgemail: DOMAIN delivered into its Maildirs."""
    base.mkdir()
    d = Daemon(write_config(base, {"hostname": f"gw.{domain}", "local_domains": [domain],
                                   "routes": {domain: "local"},
                                   "listen": [{"name": "wan", "address": "127.0.0.1", "port": free_port(),
                                               "strict": True}]}))
    d.start()
    return d


def isp_daemon(base: Path, customers: list[dict]) -> Daemon:
    """The ISP: customers' mail held; AUTH in clear on loopback (fetchmail's ETRN session has no
    STARTTLS; the passwords are test ones), shopkeeper's password "shop-secret"."""
    base.mkdir()
    path = base / "edgemail.toml"
    (base / "passwd").write_text(f"shopkeeper:{hash_password('shop-secret', log2n=4)}\n")
    path.write_text(to_toml({
        "hostname": "mx.isp.example", "local_domains": ["isp.example"], "lan_networks": ["192.168.0.0/16"],
        "spool": {"directory": str(base / "spool")}, "control": {"socket": str(base / "control.sock")},
        "local": {"maildir": str(base / "mail" / "%u"), "create_mailboxes": True}, "dns": {"peer_dns_file": ""},
        "routes": {"*": {"route": "mx", "expensive": True}}, "link": {"mode": "none"},
        "smtpd": {"auth_file": str(base / "passwd")},
        "listen": [{"name": "isp", "address": "127.0.0.1", "port": free_port(), "strict": True,
                    "greet_pause": 0, "auth_plaintext": True}],
        "customer": customers}))
    d = Daemon(path)
    d.start()
    return d


def held(isp: Daemon, *rcpts: str) -> None:
    """Mail from the Internet for the customers, sent to the ISP."""
    with smtplib.SMTP("127.0.0.1", isp.port, local_hostname="far.test") as s:
        for rcpt in rcpts:
            s.sendmail("someone@far.test", [rcpt], f"Subject: for {rcpt}\r\n\r\nheld for {rcpt}\r\n".encode())


def fetchmail_etrn(isp: Daemon, domain: str, home: Path, auth: tuple[str, str] | None = None):
    """fetchmail's protocol ETRN for DOMAIN; with AUTH (esmtpname/esmtppassword) it authenticates first."""
    rc = home / "fetchmailrc"
    rc.write_text(f"poll 127.0.0.1 protocol etrn port {isp.port}"
                  + (f' esmtpname "{auth[0]}" esmtppassword "{auth[1]}"' if auth else "")
                  + f" fetchdomains {domain}\n")
    rc.chmod(0o600)
    return subprocess.run([FETCHMAIL, "--nosyslog", "--nodetach", "-v", "-f", str(rc)],
                          capture_output=True, text=True, timeout=60,
                          env={"HOME": str(home), "PATH": "/usr/bin:/bin", "FETCHMAILUSER": "edge"})


def maildirs(d: Daemon) -> dict[str, list[str]]:
    root = d.config.parent / "mail"
    return {p.parent.parent.name: sorted(f.read_text() for f in p.iterdir())
            for p in root.glob("*/Maildir/new") if any(p.iterdir())}


def queue_list(d: Daemon) -> list[dict]:
    return json.loads(cli(d, "edgemail", "queue", "list", "--json").stdout)


def until(pred, timeout: float, what: str):
    end = time.monotonic() + timeout
    while not (got := pred()):
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return got


@pytest.mark.skipif(FETCHMAIL is None, reason="fetchmail not installed (make debs installs it)")
def test_fetchmail_etrn_flushes_each_customers_own_domains_only(tmp_path):
    edge = customer_daemon(tmp_path / "edge", "edge.example")
    shop = customer_daemon(tmp_path / "shop", "shop.example")
    isp = isp_daemon(tmp_path / "isp", [
        {"name": "edge", "domains": ["edge.example"], "networks": ["127.0.0.1/32"],
         "deliver": f"[127.0.0.1]:{edge.port}"},
        {"name": "shop", "domains": ["shop.example"], "networks": ["192.0.2.0/24"], "user": "shopkeeper",
         "deliver": f"[127.0.0.1]:{shop.port}"}])
    try:
        held(isp, "alice@edge.example", "bob@shop.example", "carol@edge.example")
        listing = json.loads(cli(isp, "edgemail", "queue", "list", "--json").stdout)
        held_for = sorted((r["address"], r.get("customer")) for m in listing for r in m["recipients"])
        assert held_for == [("alice@edge.example", "edge"), ("bob@shop.example", "shop"),
                            ("carol@edge.example", "edge")]
        mailq = cli(isp, "mailq").stdout.decode()
        assert mailq.count("(Held for customer edge: waiting for its ETRN or ATRN)") == 2, mailq
        assert "(Held for customer shop: waiting for its ETRN or ATRN)" in mailq

        refused = fetchmail_etrn(isp, "shop.example", tmp_path)       # 127.0.0.1 is not shop's network
        assert refused.returncode == 3, refused                          # fetchmail's PS_AUTHFAIL
        assert "Node shop.example not allowed" in refused.stderr + refused.stdout
        ok = fetchmail_etrn(isp, "edge.example", tmp_path)
        assert ok.returncode == 0 and "Pending messages for edge.example started" in ok.stdout, ok
        got = until(lambda: len(maildirs(edge)) == 2 and maildirs(edge), 30, "edge's mail")
        assert sorted(got) == ["alice", "carol"] and "held for alice@edge.example" in got["alice"][0]
        assert "Received: from mx.isp.example" in got["alice"][0]
        assert maildirs(shop) == {}                                     # shop's stays at the ISP
        # edge's Maildir file is written as edge's 250 goes back; the ISP drops the entry after it
        left = until(lambda: len(q := queue_list(isp)) == 1 and q, 10, "the ISP's queue emptied of edge's")
        assert [r["address"] for m in left for r in m["recipients"]] == ["bob@shop.example"]
        again = fetchmail_etrn(isp, "edge.example", tmp_path)
        assert again.returncode == 0 and "No messages waiting for edge.example" in again.stdout, again
        wrong = fetchmail_etrn(isp, "shop.example", tmp_path, auth=("shopkeeper", "guess"))
        assert wrong.returncode == 3 and maildirs(shop) == {}, wrong     # a wrong password is no one
        as_user = fetchmail_etrn(isp, "shop.example", tmp_path, auth=("shopkeeper", "shop-secret"))
        assert as_user.returncode == 0 and "Pending messages for shop.example started" in as_user.stdout, as_user
        assert "235 2.7.0" in as_user.stdout
        got = until(lambda: maildirs(shop), 30, "shop's mail, asked for by its AUTH user")
        assert list(got) == ["bob"] and len(maildirs(edge)) == 2
        log = isp.log.read_text()
        assert "NOQUEUE: etrn=edge.example, relay=[127.0.0.1], customers=edge, reply=253" in log
        assert "ruleset=check_etrn, arg1=shop.example" in log and "reject=459 4.7.1" in log
        assert "shop-secret" not in log and "guess" not in log
        print("\nfetchmail (unauthorised):\n" + (refused.stdout + refused.stderr).strip()
              + "\nfetchmail (authorised by network):\n" + ok.stdout.strip()
              + "\nfetchmail (authorised by AUTH user):\n" + as_user.stdout.strip())
    finally:
        for d in (isp, edge, shop):
            d.stop()


def odmr_isp(base: Path, cram: str) -> tuple[Daemon, int]:
    """The ISP with an ODMR listener on which CRAM-MD5 is offered in clear (fetchmail's ODMR has
    no STARTTLS and speaks only CRAM-MD5); shop's customer user ``shop`` has the CRAM secret CRAM."""
    base.mkdir()
    secrets = base / "cram.secrets"
    secrets.write_text(f"# CRAM-MD5 only\nshop:{cram}\n")
    secrets.chmod(0o600)
    path, odmr_port = base / "edgemail.toml", free_port()
    path.write_text(to_toml({
        "hostname": "odmr.isp.example", "local_domains": ["isp.example"],
        "spool": {"directory": str(base / "spool")}, "control": {"socket": str(base / "control.sock")},
        "local": {"maildir": str(base / "mail" / "%u")}, "dns": {"peer_dns_file": ""},
        "routes": {"*": {"route": "mx", "expensive": True}}, "link": {"mode": "none"},
        "smtpd": {"cram_secrets": str(secrets)},
        "listen": [{"name": "isp", "address": "127.0.0.1", "port": free_port(), "strict": True,
                    "greet_pause": 0},
                   {"name": "odmr", "address": "127.0.0.1", "port": odmr_port, "odmr": True,
                    "greet_pause": 0, "cram_plaintext": True}],
        "customer": [{"name": "shop", "domains": ["shop.example"], "user": "shop"}]}))
    d = Daemon(path)
    d.start()
    return d, odmr_port


def fetchmail_odmr(port: int, sink: int, home: Path, secret: str):
    """fetchmail's protocol ODMR for shop.example: CRAM-MD5 as shop, the push piped to SINK."""
    rc = home / "fetchmailrc-odmr"
    rc.write_text(f'poll 127.0.0.1 protocol odmr port {port} user "shop" password "{secret}"'
                  f" fetchdomains shop.example smtphost 127.0.0.1/{sink}\n")
    rc.chmod(0o600)
    return subprocess.run([FETCHMAIL, "--nosyslog", "--nodetach", "-v", "-f", str(rc)],
                          capture_output=True, text=True, timeout=60,
                          env={"HOME": str(home), "PATH": "/usr/bin:/bin", "FETCHMAILUSER": "shop"})


@pytest.mark.skipif(FETCHMAIL is None, reason="fetchmail not installed (make debs installs it)")
def test_fetchmail_odmr_fetches_held_mail_into_the_local_sink(tmp_path):
    """issue 11 §4 with the real client: fetchmail's protocol ODMR (CRAM-MD5, ATRN) against our 366
    listener; the held mail is pushed through fetchmail into its smtphost (a customer edgemail)."""
    shop = customer_daemon(tmp_path / "shop", "shop.example")
    isp, odmr_port = odmr_isp(tmp_path / "isp", cram="odmr cram secret")
    try:
        held(isp, "bob@shop.example", "eve@shop.example")
        wrong = fetchmail_odmr(odmr_port, shop.port, tmp_path, "not the secret")
        assert wrong.returncode != 0 and "535 5.7.8" in wrong.stdout, wrong    # refused, nothing pushed
        assert "Turnaround" not in wrong.stdout and maildirs(shop) == {}
        ok = fetchmail_odmr(odmr_port, shop.port, tmp_path, "odmr cram secret")
        out = ok.stdout + ok.stderr
        assert ok.returncode == 0, out
        assert "AUTH CRAM-MD5" in out and "235 2.7.0" in out and "ATRN shop.example" in out, out
        got = until(lambda: len(maildirs(shop)) == 2 and maildirs(shop), 30, "shop's mail over ODMR")
        assert sorted(got) == ["bob", "eve"] and "held for bob@shop.example" in got["bob"][0]
        # shop's Maildir file is written as shop's 250 goes back; the ISP drops the entry after it
        until(lambda: queue_list(isp) == [], 10, "the ISP's queue emptied")
        log = isp.log.read_text()
        assert "AUTH=server, relay=[127.0.0.1]" in log and "authid=shop, mech=CRAM-MD5" in log, log
        assert "odmr cram secret" not in log and "not the secret" not in log
        print("\nfetchmail protocol ODMR:\n" + out.strip())
    finally:
        for d in (isp, shop):
            d.stop()
