"""NOTIFY=SUCCESS (RFC 3461 / 3464): a return receipt when the message is
delivered into a local mailbox ("Action: delivered"), or relayed to a host
that does not advertise DSN ("Action: relayed"); none when the next hop
advertises DSN (NOTIFY went on with the message: it reports), and none with
PrivacyOptions noreceipts.  The daemon runs for real, the client speaks SMTP
over a real socket (smtplib), the next hops are upstream.py on loopback."""

from __future__ import annotations

import smtplib
import subprocess
import sys
import threading
import time

import pytest

from daemon_harness import ROOT, free_port, start, wait_for
from test_delivery import maildir_new

pytestmark = pytest.mark.timeout(90)


class Upstream:
    """hardware-sim/upstream.py on a free loopback port, its output read as it comes."""

    def __init__(self, *faults: str) -> None:
        self.port = free_port()
        args = [a for f in faults for a in ("--fault", f)]
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "hardware-sim" / "upstream.py"),
                                      "--port", str(self.port), *args], stdout=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(line.strip() for line in self.proc.stdout),
                         daemon=True).start()

    def received(self) -> list[str]:
        return [line for line in self.lines if line.startswith("from=")]

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _send(port: int, rcpt: str, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
        c.ehlo("client.edge.example")
        assert "dsn" in c.esmtp_features
        c.sendmail("alice@edge.example", [rcpt],
                   f"From: alice@edge.example\r\nTo: {rcpt}\r\nSubject: {subject}\r\n\r\nbody\r\n".encode(),
                   rcpt_options=["NOTIFY=SUCCESS,FAILURE", f"ORCPT=rfc822;{rcpt}"])


def _receipts(tmp_path) -> list[str]:
    return [p.read_text() for p in maildir_new(tmp_path, "alice")]


def _up(port: int) -> None:
    end = time.monotonic() + 20
    while True:
        try:
            smtplib.SMTP("127.0.0.1", port, timeout=5).quit()
            return
        except OSError:
            assert time.monotonic() < end, f"upstream on {port} never listened"
            time.sleep(0.05)


def test_success_reports_delivered_relayed_and_none_past_a_dsn_host(tmp_path):
    plain, with_dsn = Upstream("no_dsn"), Upstream()
    for up in (plain, with_dsn):
        _up(up.port)
    d = start(tmp_path, {"routes": {"plain.test": f"relay:[127.0.0.1]:{plain.port}",
                                    "dsn.test": f"relay:[127.0.0.1]:{with_dsn.port}"}})
    try:
        _send(d.port, "bob@edge.example", "local")
        wait_for(lambda: len(_receipts(tmp_path)) == 1, "the receipt for bob", d.log)
        (local,) = _receipts(tmp_path)
        assert "Subject: Return receipt" in local and "Action: delivered" in local, local
        assert "Final-Recipient: rfc822; bob@edge.example" in local, local
        assert "Return-Path: <>" in local and "Subject: local" in local      # header only, null sender
        assert "Diagnostic-Code: x-local; delivered to maildir\n" in local and str(tmp_path) not in local, local
        assert "Status: 2." in local

        _send(d.port, "far@dsn.test", "past a DSN host")
        wait_for(lambda: with_dsn.received(), "the DSN host's copy", d.log)
        _send(d.port, "far@plain.test", "past a plain host")
        wait_for(lambda: len(_receipts(tmp_path)) == 2, "the receipt for far@plain.test", d.log)
        relayed = next(t for t in _receipts(tmp_path) if t != local)
        assert "Action: relayed" in relayed and "Final-Recipient: rfc822; far@plain.test" in relayed, relayed
        assert "Remote-MTA: dns; 127.0.0.1" in relayed and "Diagnostic-Code: smtp; 250" in relayed
        assert "Original-Recipient: rfc822; far@plain.test" in relayed and "Subject: past a plain host" in relayed
        log = d.log.read_text()
        assert log.count("dsn=success") == 2, log[-3000:]
        assert not any("far@dsn.test" in line for line in log.splitlines() if "dsn=success" in line)
    finally:
        d.stop()
        plain.close()
        with_dsn.close()


def test_noreceipts_sends_none(tmp_path):
    d = start(tmp_path, {"PrivacyOptions": ["authwarnings", "noreceipts"]})
    try:
        _send(d.port, "bob@edge.example", "no receipt")
        wait_for(lambda: maildir_new(tmp_path, "bob"), "bob's copy", d.log)
        _send(d.port, "carol@edge.example", "a second one")
        wait_for(lambda: maildir_new(tmp_path, "carol"), "carol's copy", d.log)
    finally:
        d.stop()
    assert _receipts(tmp_path) == [] and "dsn=success" not in d.log.read_text()
