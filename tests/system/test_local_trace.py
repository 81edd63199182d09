"""A Received: line on every local submission, as sendmail and Postfix add one (issue 13
§5): the control socket's submit op (sendmail, or any other local client), sendmail with
the daemon down (the maildrop), and sendmail -bs (below the listener's own SMTP line).
USER is the uid the kernel names, never what the client says.  The real daemon."""

from __future__ import annotations

import base64
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from daemon_harness import BIN, cli, control, start

pytestmark = pytest.mark.timeout(60)

ME = pwd.getpwuid(os.getuid()).pw_name
#: the expensive "*" route keeps the messages queued (no link), so queue show can read them
TO = "ops@far.example"


def local_trace(user: str) -> re.Pattern:
    return re.compile(rb"^Received: \(from " + user.encode() + rb"@localhost\)\r\n\tby gw\.edge\.example "
                      rb"\(edgemail\);\r\n\t\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}\r\n")


def data_of(d, qid: str) -> bytes:
    return base64.b64decode(control(d).request("queue_show", qid=qid, data=True)["data_b64"])


def qids(d) -> list[str]:
    import json
    return [e["qid"] for e in json.loads(cli(d, "edgemail", "queue", "list", "--json").stdout)]


def test_submit_op_sendmail_and_the_maildrop_each_get_one_trace_line(tmp_path):
    d = start(tmp_path)
    try:
        raw = control(d).request("submit", mail_from="app@edge.example", recipients=[{"address": TO}],
                                 data_b64=base64.b64encode(b"Subject: from a program\r\n\r\nx\r\n").decode())
        data = data_of(d, raw["qid"])
        assert local_trace(ME).match(data), data[:200]
        assert data.endswith(b"Subject: from a program\r\n\r\nx\r\n") and data.count(b"Received:") == 1

        assert cli(d, "sendmail", "-t", input=f"To: {TO}\nSubject: cron\n\nran\n".encode()).returncode == 0
        (sent,) = [q for q in qids(d) if q != raw["qid"]]
        data = data_of(d, sent)
        assert local_trace(ME).match(data) and data.count(b"Received:") == 1, data[:300]
    finally:
        assert d.stop() == 0

    r = cli(d, "sendmail", "-t", input=f"To: {TO}\nSubject: while down\n\nx\n".encode())
    assert r.returncode == 0 and b"maildrop" in r.stderr
    d.start()
    try:
        (dropped,) = [q for q in qids(d) if q not in (raw["qid"], sent)]
        data = data_of(d, dropped)
        assert local_trace(ME).match(data) and data.count(b"Received:") == 1, data[:300]
    finally:
        d.kill()


def test_sendmail_bs_adds_the_local_line_below_the_listeners(tmp_path):
    d = start(tmp_path)
    try:
        dialogue = (b"EHLO php.lan\r\nMAIL FROM:<web@edge.example>\r\nRCPT TO:<" + TO.encode() + b">\r\n"
                    b"DATA\r\nSubject: bs one\r\n\r\nhi\r\n.\r\n"
                    b"MAIL FROM:<web@edge.example>\r\nRCPT TO:<" + TO.encode() + b">\r\n"
                    b"DATA\r\nSubject: bs two\r\n\r\n..dotted\r\n.\r\nQUIT\r\n")
        r = cli(d, "sendmail", "-bs", input=dialogue)
        assert r.returncode == 0, r.stderr
        replies = r.stdout.decode().splitlines()
        accepted = [line.split()[2] for line in replies if line.startswith("250 2.0.0 ")]
        assert len(accepted) == 2 and replies[-1].startswith("221 "), replies
        for qid, subject in zip(accepted, (b"bs one", b"bs two")):
            data = data_of(d, qid)
            first, _, rest = data.partition(b"\r\n\t")
            assert first.startswith(b"Received: from php.lan ([127.0.0.1])"), data[:300]
            below = data[data.index(b"Received: (from"):]
            assert local_trace(ME).match(below), data[:400]
            assert data.count(b"Received:") == 2 and b"Subject: " + subject in data
        assert data.endswith(b"\r\n.dotted\r\n")                    # dot-stuffing as the client sent it
    finally:
        d.kill()


@pytest.mark.parametrize("end", [b"\n.\n", b"\r\n.\n"], ids=["LF.LF", "CRLF.LF"])
def test_sendmail_bs_with_lf_line_ends_is_answered_and_queued(tmp_path, end):
    """QA-4: a script speaking SMTP with LF line ends through sendmail -bs (its final dot too):
    the LAN listener ends DATA there, so the 250 comes and the message is queued, CRLF only."""
    d = start(tmp_path)
    try:
        dialogue = (b"HELO script.lan\nMAIL FROM:<web@edge.example>\nRCPT TO:<" + TO.encode() + b">\n"
                    b"DATA\nSubject: lf only\n\nfirst\nlast" + end + b"QUIT\n")
        r = cli(d, "sendmail", "-bs", input=dialogue)
        assert r.returncode == 0, r.stderr
        replies = r.stdout.decode().splitlines()
        accepted = [line.split()[2] for line in replies if line.startswith("250 2.0.0 ")]
        assert len(accepted) == 1 and replies[-1].startswith("221 "), replies
        data = data_of(d, accepted[0])
        assert data.endswith(b"\r\nSubject: lf only\r\n\r\nfirst\r\nlast\r\n"), data
        print("\nsendmail -bs, LF only:\n" + r.stdout.decode())
    finally:
        d.kill()


def test_the_user_is_the_kernels_word(tmp_path):
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to play another user")
    shared = Path(tempfile.mkdtemp(prefix="edgemail-trace-"))
    shared.chmod(0o755)
    d = start(shared)
    try:
        d.config.chmod(0o644)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "EDGEMAIL_CONFIG": str(d.config),
               "LOGNAME": "root", "USER": "root"}                 # what it claims changes nothing
        r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--",
                            str(BIN / "sendmail"), "-t"], input=f"To: {TO}\nSubject: u\n\nx\n".encode(),
                           capture_output=True, env=env, timeout=30)
        if r.returncode and b"Permission denied" in r.stderr:
            pytest.skip(f"nobody cannot run the virtualenv: {r.stderr.decode()[-200:]}")
        assert r.returncode == 0, r.stderr
        (qid,) = qids(d)
        assert local_trace("nobody").match(data_of(d, qid))
    finally:
        d.kill()
        shutil.rmtree(shared, ignore_errors=True)
