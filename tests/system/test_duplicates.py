"""QA-7: one delivery per final mailbox per message (sendmail removes
duplicates after alias expansion), local and remote, and still a DSN entry
for each original recipient.  The real daemon; one SMTP session on its
loopback listener (a real socket) gives the same mailboxes by an alias and
directly, in two cases of the local part and domain, by a repeated RCPT, and
by an IDN domain as U-label and A-label; upstream.py is the smart host and
refuses gone@far.test."""

from __future__ import annotations

import email
import json
import smtplib
import subprocess
import sys
import threading

import pytest

from daemon_harness import ROOT, cli, control, free_port, start, wait_for

pytestmark = pytest.mark.timeout(90)

ALIASES = "postmaster: root\nteam: bob, ext@far.test, gone@far.test\n"
RCPTS = ["<Bob@EDGE.example>", "<bob@edge.example>", "<team@edge.example> ORCPT=rfc822;team@edge.example",
         "<ext@far.test>", "<ext@far.test>", "<user@bücher.example>", "<user@xn--bcher-kva.example>",
         "<gone@far.test> ORCPT=rfc822;gone@far.test"]


class Upstream:
    """hardware-sim/upstream.py refusing gone@far.test; its lines as printed."""

    def __init__(self, port: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "hardware-sim" / "upstream.py"), "--port", str(port),
             "--fault", "rcpt_replies=gone@far.test:550 5.1.1 No such user"], stdout=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(line.strip() for line in self.proc.stdout),
                         daemon=True).start()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def maildir(tmp_path, user: str) -> list:
    new = tmp_path / "mail" / user / "Maildir" / "new"
    return sorted(new.iterdir()) if new.is_dir() else []


def send(port: int) -> tuple[list[str], str]:
    """The session: each RCPT's reply, and the qid from the reply to the dot."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        s.ehlo("lan.edge.example")
        s.command_encoding = "utf-8"
        assert s.docmd("MAIL FROM:<alice@edge.example> SMTPUTF8")[0] == 250
        replies = [s.docmd(f"RCPT TO:{r}")[1].decode() for r in RCPTS]
        code, text = s.data(b"Subject: dup\r\n\r\nonce each\r\n")
        assert code == 250, text
        return replies, text.decode().split()[1]


def test_each_final_mailbox_gets_one_copy_and_each_original_recipient_its_dsn(tmp_path):
    port = free_port()
    up = Upstream(port)
    (tmp_path / "aliases").write_text(ALIASES)
    d = start(tmp_path, {"SmartHost": f"[127.0.0.1]:{port}", "local": {"aliases": str(tmp_path / "aliases")}})
    try:
        wait_for(lambda: up.lines, "upstream listening", d.log)
        replies, qid = send(d.port)
        assert all(r.startswith("2.1.5 ") for r in replies), replies
        wait_for(lambda: maildir(tmp_path, "bob"), "bob's delivery", d.log)
        report = control(d).request("queue_run", filters=[], wait=True)["report"]
        # counted per recipient: team>ext, ext, user sent; team>gone, gone bounced (one RCPT each)
        assert (report["sent"], report["bounced"], report["deferred"]) == (3, 2, 0), report
        wait_for(lambda: maildir(tmp_path, "alice"), "the failure report", d.log)
        wait_for(lambda: len(up.lines) > 1, "the upstream message", d.log)
        # the report's Maildir file is written before the report leaves the queue
        wait_for(lambda: json.loads(cli(d, "edgemail", "queue", "list", "--json").stdout) == [],
                 "the queue emptied of the report", d.log)
    finally:
        d.stop()
        up.close()
    log = d.log.read_text()
    assert len(maildir(tmp_path, "bob")) == 1, log
    (line,) = up.lines[1:]
    assert line.startswith("from=<alice@edge.example> to=['ext@far.test', 'user@xn--bcher-kva.example']"), up.lines
    (report_file,) = maildir(tmp_path, "alice")
    dsn = email.message_from_bytes(report_file.read_bytes())
    status = next(p for p in dsn.walk() if p.get_content_type() == "message/delivery-status")
    blocks = [str(b) for b in status.get_payload()[1:]]
    assert sorted(b.split("\n")[1] for b in blocks) == ["Original-Recipient: rfc822; gone@far.test",
                                                          "Original-Recipient: rfc822; team@edge.example"], blocks
    for b in blocks:
        assert b.startswith("Final-Recipient: rfc822; gone@far.test\n") and "\nAction: failed\nStatus: 5.1.1\n" in b, b
