"""Queue visibility (issue 17 §7): mailq with the daemon down lists the spool and the
maildrop read-only (root, the daemon's user and group; anyone else is told why not),
`queue list --json` carries priority, attempts, next attempt and the last reply, mailq
shows the deferral reason as sendmail does, and a reader that goes away (`mailq | head`)
ends every command quietly.  The real daemon and console scripts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from daemon_harness import BIN, ROOT, cli, control, start

pytestmark = pytest.mark.timeout(90)

#: a LAN relay that refuses: the message is tried at once and deferred with a reason
REFUSING = {"routes": {"far.example": {"route": "relay:[127.0.0.1]:1"}}}


def _tree(root: Path) -> dict:
    """Every file under ROOT with its size, mtime and mode: what a read-only listing must not change."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_mode)
            for p in sorted(root.rglob("*"))}


def _deferred(d) -> str:
    r = cli(d, "sendmail", "-f", "cron@edge.example", "ops@far.example", "kim@other.example",
            input=b"Subject: nightly\n\nran\n")
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 20
    while True:
        rows = control(d).request("queue_show", qid=_only_qid(d))
        if rows["attempts"] >= 1:
            return rows["qid"]
        assert time.monotonic() < deadline, rows
        time.sleep(0.05)


def _only_qid(d) -> str:
    listing = json.loads(cli(d, "edgemail", "queue", "list", "--json").stdout)
    (entry,) = listing
    return entry["qid"]


def test_mailq_with_the_daemon_down_reads_the_spool_and_the_maildrop(tmp_path):
    d = start(tmp_path, REFUSING)
    try:
        qid = _deferred(d)
        up = cli(d, "mailq").stdout.decode()
        assert f"{qid} " in up and "(Deferred: connect to 127.0.0.1:1" in up, up   # sendmail's reason line
        assert up.index("(Deferred:") < up.index("<ops@far.example>")
        listed = json.loads(cli(d, "edgemail", "queue", "list", "--json").stdout)[0]
    finally:
        assert d.stop() == 0
    assert listed["attempts"] == 1 and listed["next_attempt"] > listed["created"] and listed["priority"] > 0
    ops = listed["recipients"][0]
    assert ops["status"] == "deferred" and ops["last_reply"].startswith("connect to 127.0.0.1:1")
    assert ops["relay"] and ops["dsn"].startswith("4.") and ops["last_attempt"] >= listed["created"]
    assert listed["recipients"][1]["last_attempt"] is None                # never tried: waits for the link

    drop = cli(d, "sendmail", "-t", input=b"To: lee@other.example\nSubject: while down\n\nx\n")
    assert drop.returncode == 0 and b"maildrop" in drop.stderr
    before = _tree(tmp_path / "spool")
    r = cli(d, "mailq")
    assert r.returncode == 0, r.stderr
    text = r.stdout.decode()
    assert r.stderr.decode() == f"mailq: the daemon is not running: the queue as it stands in {tmp_path}/spool, read-only\n"
    assert text.startswith(f"Maildrop status (queued when the daemon starts)...\n\t\t{tmp_path}/spool/maildrop (1 request)\n")
    assert "<lee@other.example>" in text.split("Queue status...")[0]
    queue_part = text.split("Queue status...\n")[1]
    assert queue_part.startswith(f"\t\t{tmp_path}/spool (1 request)\n") and f"{qid} " in queue_part
    assert "(Deferred: connect to 127.0.0.1:1" in queue_part and queue_part.endswith("\t\tTotal requests: 1\n")
    assert cli(d, "sendmail", "-bp").stdout == r.stdout

    offline = json.loads(cli(d, "edgemail", "queue", "list", "--json").stdout)
    assert [e.get("maildrop", False) for e in offline] == [True, False]
    assert {k: v for k, v in offline[1].items()} == listed                # the daemon's rows, read from disk
    assert _tree(tmp_path / "spool") == before                            # nothing written, moved or cut

    d.start()                                                             # the maildrop is queued now
    try:
        text = cli(d, "mailq").stdout.decode()
        assert "Total requests: 2" in text and "<lee@other.example>" in text and "Maildrop" not in text
    finally:
        d.kill()


@pytest.fixture
def shared_dir():
    """A directory every user may pass through, and an unprivileged user who can run the venv."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to play another user")
    d = Path(tempfile.mkdtemp(prefix="edgemail-mailq-"))
    d.chmod(0o755)
    r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--",
                        str(BIN / "python"), "-c", "import edgemail"], capture_output=True, timeout=30)
    if r.returncode:
        shutil.rmtree(d, ignore_errors=True)
        pytest.skip(f"nobody cannot run the virtualenv: {r.stderr.decode()[-200:]}")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _as_nobody(d, *groups: int):
    d.config.chmod(0o644)
    who = ["--groups=" + ",".join(map(str, groups))] if groups else ["--clear-groups"]
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", *who, "--", str(BIN / "mailq"),
                           "-C", str(d.config)], capture_output=True, text=True, timeout=30)


def test_who_may_read_the_queue_from_disk(shared_dir):
    d = start(shared_dir, REFUSING)
    try:
        qid = _deferred(d)
    finally:
        d.stop()
    spool = shared_dir / "spool"
    os.chown(spool, 0, 0)
    denied = _as_nobody(d)
    assert denied.returncode == 75 and denied.stdout == ""
    assert (f"the queue in {spool} may be read only by root and group root; uid 65534 is none of them: "
            "run mailq as one of them, or start the daemon") in denied.stderr, denied.stderr
    assert "Traceback" not in denied.stderr

    member = _as_nobody(d, 0)                      # in the daemon's group (root's here): the queue, not the maildrop
    assert member.returncode == 0, member.stderr
    assert f"{qid} " in member.stdout and "Maildrop status" not in member.stdout
    assert f"maildrop/ not shown: {spool}/maildrop may be listed by root and its owner only" in member.stderr


@pytest.fixture(scope="module")
def queued_daemon(tmp_path_factory):
    d = start(tmp_path_factory.mktemp("pipe"), REFUSING)
    try:
        _deferred(d)
        yield d
    finally:
        d.kill()


@pytest.mark.parametrize("argv", [
    ["mailq"], ["sendmail", "-bp"], ["edgemail", "queue", "list", "--json"], ["edgemail", "--help"],
    ["edgemail", "config", "check"], ["sendmail", "--help"], ["newaliases", "--help"], ["mailq", "--help"],
    ["hoststat", "--help"], ["purgestat", "--help"], ["edgemail", "policy", "check", str(ROOT / "etc/dial.policy")],
])
def test_a_reader_that_went_away_ends_every_command_quietly(queued_daemon, argv):
    read, write = os.pipe()
    os.close(read)                                 # `| head` that has already gone
    env = {**os.environ, "EDGEMAIL_CONFIG": str(queued_daemon.config)}
    try:
        r = subprocess.run([str(BIN / argv[0]), *argv[1:]], stdout=write, stderr=subprocess.PIPE, env=env,
                           timeout=30)
    finally:
        os.close(write)
    # 141 as a shell reports a C program SIGPIPE killed; argparse's --help drops what it cannot print (0)
    want = 0 if "--help" in argv and argv[0] in ("edgemail", "hoststat", "purgestat") else 141
    assert r.stderr == b"" and r.returncode == want, (r.returncode, r.stderr.decode())


def test_status_counts_the_mail_kept_for_etrn_apart_from_mail_on_hold(tmp_path):
    """`edgemail status` said "3 message(s), 0 held" while two of them waited
    for their customer's ETRN: `held` counts what is put on hold; mail kept
    for ETRN/ATRN (a hold route, a customer's domain) is counted on its own."""
    d = start(tmp_path, {"routes": {"held.example": "hold", "far.example": {"route": "relay:[127.0.0.1]:1"}},
                         "customer": [{"name": "shop", "domains": ["shop.example"], "networks": ["192.0.2.0/24"]}]})
    try:
        for rcpt in ("a@held.example", "b@shop.example", "c@far.example"):
            r = cli(d, "sendmail", "-f", "cron@edge.example", rcpt, input=b"Subject: s\n\nx\n")
            assert r.returncode == 0, r.stderr
        status = json.loads(cli(d, "edgemail", "status", "--json").stdout)
        text = cli(d, "edgemail", "status").stdout.decode()
    finally:
        d.stop()
    assert status["queued"] == 3 and status["held"] == 0 and status["held_for_etrn"] == 2, status
    assert "queue:       3 message(s), 0 held, 2 kept for ETRN/ATRN" in text, text
