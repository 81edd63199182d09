"""Issue 16 §4-7, QA-3 and QA-6 against the real daemon and its ``sendmail``:
routes in disguise refused at submission, our own names and literals and a
local domain without a route entry delivered to the Maildir (never queued for
the smart host), unqualified header addresses of local submission completed
(sendmail ADDR, -t, -bs), an SMTP client's left as they came."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from daemon_harness import cli, control, start, wait_for

pytestmark = pytest.mark.timeout(60)


def maildir(tmp_path: Path, user: str) -> list[bytes]:
    new = tmp_path / "mail" / user / "Maildir" / "new"
    return [p.read_bytes() for p in sorted(new.iterdir())] if new.is_dir() else []


def queue(d) -> list[dict]:
    return json.loads(cli(d, "edgemail", "queue", "list", "--json").stdout)


def data_of(d, qid: str) -> bytes:
    return base64.b64decode(control(d).request("queue_show", qid=qid, data=True)["data_b64"])


def test_sendmail_refuses_routes_in_disguise_and_queues_nothing(tmp_path):
    d = start(tmp_path)
    try:
        for rcpt in ("ann%far.example@edge.example", "far.example!ann@edge.example",
                     "ann%far.example@[127.0.0.1]", "ann%far.example@localhost"):
            r = cli(d, "sendmail", rcpt, input=b"Subject: x\n\nx\n")
            assert r.returncode == 65, (rcpt, r.returncode, r.stderr)       # EX_DATAERR
            assert (b"the daemon refused the message: submit: recipient refused: 550 5.7.1 <" + rcpt.encode()
                    + b">... Sender-specified routing refused") in r.stderr, r.stderr
        assert queue(d) == []
    finally:
        assert d.stop() == 0


def test_our_names_literals_and_a_domain_without_a_route_entry_are_delivered_locally(tmp_path):
    d = start(tmp_path, {"local_domains": ["edge.example", "branch.example"]})   # branch: no [routes] entry
    try:
        rcpts = ["alice@localhost", "alice@[127.0.0.1]", "alice@gw.edge.example", "alice@branch.example",
                 "postmaster@[127.0.0.1]"]
        for rcpt in rcpts:
            r = cli(d, "sendmail", rcpt, input=f"Subject: to {rcpt}\n\nx\n".encode())
            assert r.returncode == 0, r.stderr
        got = wait_for(lambda: len(maildir(tmp_path, "alice")) == 4 and maildir(tmp_path, "admin"),
                       "local delivery of every recipient", d.log)
        assert got
        subjects = sorted(m.split(b"Subject: ", 1)[1].split(b"\n", 1)[0] for m in maildir(tmp_path, "alice"))
        assert subjects == sorted(f"to {r}".encode() for r in rcpts[:4])
        assert b"Subject: to postmaster@[127.0.0.1]" in maildir(tmp_path, "admin")[0]   # postmaster -> root -> admin
        # nothing held for the smart host (the last Maildir file is written before its entry leaves)
        wait_for(lambda: queue(d) == [], "the queue emptied by the local deliveries", d.log)
    finally:
        assert d.stop() == 0


def test_local_submission_qualifies_header_addresses_smtp_clients_keep_theirs(tmp_path):
    d = start(tmp_path)
    try:
        r = cli(d, "sendmail", "-t", "-f", "root", input=b"From: root\nTo: ops@far.example, alice\n"
                b"Cc: Bob <bob>\nSubject: From: root\n\nTo: root\n")
        assert r.returncode == 0, r.stderr
        r = cli(d, "sendmail", "ops@far.example", input=b"From: Charlie Root <root>\nTo: ops\n\nx\n")
        assert r.returncode == 0, r.stderr
        r = cli(d, "sendmail", "-bs", input=b"EHLO php.lan\r\nMAIL FROM:<root>\r\nRCPT TO:<ops@far.example>\r\n"
                b"DATA\r\nFrom: root\r\nTo: ops@far.example\r\nSubject: bs\r\n\r\nbody\r\n.\r\nQUIT\r\n")
        assert r.returncode == 0 and b"250 2.0.0 " in r.stdout, r.stdout
        held = {e["qid"]: data_of(d, e["qid"]) for e in queue(d)}       # "*" is expensive: held, no link
        assert len(held) == 3, held
        texts = b"\n--\n".join(held.values())
        assert b"\r\nFrom: root@edge.example\r\nTo: ops@far.example, alice@edge.example\r\n" \
               b"Cc: Bob <bob@edge.example>\r\nSubject: From: root\r\nDate: " in texts
        assert texts.count(b"\r\n\r\nTo: root\r\n") == 1        # the body is not looked into, texts
        assert b"\r\nFrom: Charlie Root <root@edge.example>\r\nTo: ops@edge.example\r\n" in texts, texts
        assert b"\r\nFrom: root@edge.example\r\nTo: ops@far.example\r\nSubject: bs\r\n" in texts, texts
        assert {e["from"] for e in queue(d)} == {"root@edge.example"}, queue(d)
    finally:
        assert d.stop() == 0
