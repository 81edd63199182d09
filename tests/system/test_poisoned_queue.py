"""Issue 16 §8 (second half): whatever a queued message contains, a failure
while delivering it is logged once with its traceback, the message is
deferred 4.3.0 with its normal backoff, and the run goes on with every other
message.  The daemon runs for real (subprocess, `[link] mode = "none"`) with
upstream.py as the smart host on loopback; the poisoned entries are queue
files written by hand before it starts (valid framing, hostile content)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from daemon_harness import cli, control, free_port, start
from edgemail.envelope import Envelope, QueueIdGenerator, Recipient
from edgemail.spool import record
from test_delivery import UpstreamProcess, wait_until

pytestmark = pytest.mark.timeout(90)

#: content no client or transport should ever have been handed: a sender
#: with CR LF (an SMTP command inside it), a recipient with NUL
POISON = {"crlf-sender": ("p@edge.example\r\nRCPT TO:<evil@far.test>", "victim@far.test"),
          "nul-recipient": ("p@edge.example", "b\x00ad@far.test")}


def write_poisoned(spool: Path, sender: str, rcpt: str, qids: QueueIdGenerator) -> str:
    """A queue file as the store writes one (record.encode: V I T P E R D X)."""
    now = time.time()
    env = Envelope(sender, (Recipient(rcpt),), size=20, arrived=now, proto="ESMTP")
    qid = qids()
    data = b"Subject: poison\r\n\r\nhi\r\n"
    (spool / "queue").mkdir(parents=True, exist_ok=True)
    (spool / "queue" / qid).write_bytes(record.encode(env, data, qid=qid, created=now))
    return qid


def write_bad_types(spool: Path, qids: QueueIdGenerator) -> str:
    """A queue file with valid framing and checksums whose envelope has a
    field of the wrong type (precedence "100", a string): it never reaches
    the runner (recovery quarantines it) and never stops the others."""
    qid = qids()
    env = Envelope("p@edge.example", (Recipient("typed@far.test"),), size=20, arrived=time.time())
    frames = record.encode(env, b"Subject: t\r\n\r\nhi\r\n", qid=qid, created=time.time())
    scalars = {name: getattr(env, name) for name in record._SCALARS}
    good_e = record.frame(b"E", json.dumps(scalars, separators=(",", ":")).encode())
    scalars["precedence"] = "100"
    bad_e = record.frame(b"E", json.dumps(scalars, separators=(",", ":")).encode())
    assert good_e in frames
    (spool / "queue" / qid).write_bytes(frames.replace(good_e, bad_e))
    return qid


def test_poisoned_entries_are_deferred_4_3_0_and_the_run_delivers_the_rest(tmp_path):
    port = free_port()
    up = UpstreamProcess(port)
    spool = tmp_path / "spool"
    qids = QueueIdGenerator(os.getpid())
    poisoned = {name: write_poisoned(spool, *addrs, qids) for name, addrs in POISON.items()}
    typed = write_bad_types(spool, qids)
    daemon = start(tmp_path, {"SmartHost": f"[127.0.0.1]:{port}", "QueueSortOrder": "filename"})
    try:
        for n in range(2):
            mail = f"From: a@edge.example\nTo: good{n}@far.test\nSubject: {n}\n\nbody\n".encode()
            assert cli(daemon, "sendmail", "-t", "-f", "a@edge.example", input=mail).returncode == 0
        reply = control(daemon).request("queue_run", filters=[], wait=True)
        report = reply["report"]
        assert (report["sent"], report["deferred"], report["stopped"]) == (2, 2, ""), report
        for n in range(2):
            up.wait_for(f"good{n}@far.test")
        assert not any("evil@far.test" in line or "victim@far.test" in line for line in up.lines)
        for qid in poisoned.values():
            shown = control(daemon).request("queue_show", qid=qid)
            (rcpt,) = shown["recipients"]
            assert rcpt["status"] == "deferred" and "internal error: LocalProtocolError" in rcpt["last_reply"], shown
            assert shown["attempts"] == 1 and shown["next_attempt"] >= time.time() + 200, shown  # min_backoff 5m
        listed = json.loads(cli(daemon, "edgemail", "queue", "list", "--json").stdout)
        assert {e["qid"] for e in listed} == set(poisoned.values())
    finally:
        daemon.stop()
        up.close()
    log = daemon.log.read_text()
    for qid in poisoned.values():
        lines = [line for line in log.splitlines() if line.startswith(f"{qid}: internal error while delivering")]
        assert len(lines) == 1 and "dsn=4.3.0" in lines[0], f"{qid}: {lines}\n{log}"
        assert f"{qid}: to=<" in log and "dsn=4.3.0, stat=Deferred: internal error" in log
    assert log.count("Traceback (most recent call last)") == len(poisoned), log
    assert "runner: queue run end, selected=4, attempted=4, sent=2, deferred=2" in log
    assert f"{typed}: moved to corrupt/{typed}: bad envelope field precedence" in log, log
    assert (spool / "corrupt" / typed).exists() and not any("typed@far.test" in line for line in up.lines)
