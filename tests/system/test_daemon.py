"""The whole daemon as a subprocess, driven by the real console scripts and
smtplib: submission, listing, queue-run requests, maildrop pickup after a
restart, sd_notify, shutdown."""

from __future__ import annotations

import json
import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import time

import pytest

from daemon_harness import Daemon, cli, control, start, wait_for, write_config
from edgemail.daemon.control import RequestFailed

pytestmark = pytest.mark.timeout(60)


def _smtp(port: int, sender: str, rcpts: list[str], body: str) -> str:
    """One message over SMTP; returns the queue id from the 250 reply."""
    with smtplib.SMTP("127.0.0.1", port, local_hostname="till-3.lan", timeout=10) as s:
        s.ehlo("till-3.lan")
        s.mail(sender)
        for r in rcpts:
            s.rcpt(r)
        code, reply = s.data(body.encode())
        assert code == 250, reply
        return reply.split()[1].decode()


@pytest.fixture
def daemon(tmp_path):
    d = start(tmp_path)
    yield d
    d.kill()


def mailq_without(daemon, rcpt: bytes) -> subprocess.CompletedProcess | None:
    """mailq's answer once it lists no RCPT (or once it fails: the caller asserts on it)."""
    m = cli(daemon, "mailq")
    return m if m.returncode != 0 or rcpt not in m.stdout else None


def test_submit_list_show_run_stop(daemon):
    qid1 = _smtp(daemon.port, "till-3@edge.example", ["alice@example.net"],
                 "Subject: z-report\r\nMessage-ID: <z1@till-3.lan>\r\n\r\ntotals\r\n")
    r = cli(daemon, "sendmail", "-t", "-oi", "-F", "Backup job",
            input=b"To: ops@example.org\nBcc: audit@edge.example\nSubject: backup\n\nlast line\n.\n")
    assert r.returncode == 0, r.stderr

    # the Bcc's local delivery runs in the background after sendmail's 250: wait for it to leave mailq
    mailq = wait_for(lambda: mailq_without(daemon, b"<audit@edge.example>"), "audit's delivery leaving mailq",
                     daemon.log)
    assert mailq.returncode == 0, mailq.stderr
    text = mailq.stdout.decode()
    assert "Total requests: 2" in text and qid1 in text
    assert "<alice@example.net>" in text and "<ops@example.org>" in text
    assert "<audit@edge.example>" not in text        # delivered to its Maildir at once
    assert cli(daemon, "sendmail", "-bp").stdout == mailq.stdout

    listing = json.loads(cli(daemon, "edgemail", "queue", "list", "--json").stdout)
    assert {e["qid"] for e in listing} >= {qid1}
    qid2 = next(e["qid"] for e in listing if e["qid"] != qid1)
    entry2 = next(e for e in listing if e["qid"] == qid2)
    assert [x["address"] for x in entry2["recipients"]] == ["ops@example.org", "audit@edge.example"]
    assert entry2["from"].startswith(f"{os.environ.get('USER', 'root')}@") or entry2["from"].endswith("@edge.example")

    show = cli(daemon, "edgemail", "queue", "show", qid2)
    assert show.returncode == 0, show.stderr
    assert b"Subject: backup" in show.stdout and b"last line" in show.stdout
    assert b"Bcc" not in show.stdout.split(b"\n\n", 1)[1]   # stripped from the message itself
    assert b"From: Backup job <" in show.stdout
    envelope = show.stdout.split(b"\n\n", 1)[0].decode()
    assert f"queue id:     {qid2}" in envelope and "recipients:   2" in envelope
    assert "  <ops@example.org>" in envelope and "[{" not in envelope      # one recipient a line, no JSON
    shown = json.loads(cli(daemon, "edgemail", "queue", "show", "--json", qid2).stdout)
    assert [x["address"] for x in shown["recipients"]] == ["ops@example.org", "audit@edge.example"]
    missing = cli(daemon, "edgemail", "queue", "show", "kAAAAAAA000000")
    assert missing.returncode == 65 and b"no such queue id" in missing.stderr

    run = cli(daemon, "sendmail", "-qR@example.org", "-q!Sfoo")
    assert run.returncode == 0, run.stderr
    assert cli(daemon, "edgemail", "queue", "run", "Iabc").returncode == 0
    assert cli(daemon, "edgemail", "queue", "run", "Xabc").returncode == 64

    status = json.loads(cli(daemon, "edgemail", "status", "--json").stdout)
    assert status["queued"] == 2 and status["link"] == {"state": "none"}
    text = cli(daemon, "edgemail", "status", "-c", str(daemon.config)).stdout.decode()
    assert "queue:       2 message(s), 0 held" in text and "link:        none (no link manager" in text

    assert daemon.stop() == 0
    log = daemon.log.read_text()
    for want in (f"{qid1}: from=<till-3@edge.example>, size=", "nrcpts=1, msgid=<z1@till-3.lan>, proto=ESMTP",
                 f"{qid2}: from=<", "nrcpts=2", "proto=local, relay=localhost (uid",
                 "control: queue run requested: filters=R@example.org,!Sfoo",
                 "control: queue run requested: filters=Iabc",
                 "daemon: stopping, reason=SIGTERM", "daemon: stopped"):
        assert want in log, f"missing log line part {want!r} in:\n{log}"
    assert not os.path.exists(daemon.socket)


def test_sendmail_bs_speaks_the_daemons_smtp(daemon):
    dialogue = (b"EHLO php.lan\r\nMAIL FROM:<web@edge.example>\r\nRCPT TO:<x@example.net>\r\n"
                b"DATA\r\nSubject: bs\r\n\r\nhi\r\n.\r\nQUIT\r\n")
    r = cli(daemon, "sendmail", "-bs", input=dialogue)
    assert r.returncode == 0, r.stderr
    replies = r.stdout.decode().splitlines()
    assert replies[0].startswith("220 ") and replies[-1].startswith("221 ")
    accepted = next(line for line in replies if line.startswith("250 2.0.0 "))
    qid = accepted.split()[2]
    assert control(daemon).request("queue_show", qid=qid)["from"] == "web@edge.example"


def test_control_refuses_bad_submit(daemon):
    with pytest.raises(RequestFailed, match="bad envelope"):
        control(daemon).request("submit", mail_from="a@x.example", recipients=[{"address": "a@@b"}],
                                data_b64="")
    with pytest.raises(RequestFailed, match="recipients must be a non-empty list"):
        control(daemon).request("submit", mail_from="a@x.example", recipients=[], data_b64="")


def test_mailq_empty_then_maildrop_pickup_after_restart(tmp_path):
    d = start(tmp_path)
    assert cli(d, "mailq").stdout == b"Mail queue is empty\n"
    assert d.stop() == 0
    # a recipient on an expensive route: it stays queued (no link), so mailq shows it
    r = cli(d, "sendmail", "-f", "cron@edge.example", "ops@far.example", input=b"Subject: cron\n\nran\n")
    assert r.returncode == 0, r.stderr
    assert b"daemon not running" in r.stderr and b"maildrop" in r.stderr
    down = cli(d, "mailq")                            # still down: the maildrop, read from disk
    assert down.returncode == 0 and b"the daemon is not running" in down.stderr, down.stderr
    assert b"Maildrop status" in down.stdout and b"<ops@far.example>" in down.stdout
    d.start()
    try:
        text = cli(d, "mailq").stdout.decode()
        assert "Total requests: 1" in text and "<cron@edge.example>" in text and "<ops@far.example>" in text
        log = d.log.read_text()
        assert "spool: recovered entries=1, tmp_removed=0, corrupt=0, maildrop=1" in log
        qid = text.split("\n")[2].split()[0].rstrip("*!")
        assert f"{qid}: from=<cron@edge.example>, size=" in log and f"{qid}: imported from maildrop/" in log, log
        assert re.search(rf"{qid}: from=<cron@edge\.example>, .*relay=localhost \(uid {os.getuid()}\)", log), log
        assert os.listdir(os.path.join(tmp_path, "spool", "maildrop")) == []
    finally:
        d.kill()


def test_second_daemon_refuses_the_same_socket(daemon, tmp_path):
    second = subprocess.run([sys.executable, "-m", "edgemail", "run", "-c", str(daemon.config)],
                            capture_output=True, timeout=30)
    assert second.returncode == 71
    assert b"is in use by another edgemail daemon" in second.stderr
    assert control(daemon).request("status")["queued"] == 0     # the first one is unharmed


def test_sd_notify_ready_after_bind_watchdog_stopping(tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(20)
    d = Daemon(write_config(tmp_path), env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    try:
        d.proc = subprocess.Popen([sys.executable, "-m", "edgemail", "run", "-c", str(d.config)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=d.env)
        first = sock.recv(4096).decode()
        assert first.startswith("READY=1"), first
        status = control(d).request("status")          # READY means: control socket up ...
        port = int(status["listeners"][0].rsplit(":", 1)[1])
        socket.create_connection(("127.0.0.1", port), timeout=5).close()   # ... and SMTP bound
        seen = {sock.recv(4096).decode() for _ in range(3)}
        assert "WATCHDOG=1" in seen
        d.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if sock.recv(4096).decode() == "STOPPING=1":
                break
        else:
            pytest.fail("no STOPPING=1")
        assert d.proc.wait(10) == 0
    finally:
        d.kill()
        sock.close()


# ---------------------------------------------------------------- in process: the seams

class FakeRunner:
    """What the delivery runner offers the daemon (a fake at the edge of this test)."""

    def __init__(self) -> None:
        import asyncio
        self.committed: list[str] = []
        self.runs: list[list[str]] = []
        self.running = asyncio.Event()      # run() was started
        self.ran = asyncio.Event()          # a queue run was asked for

    async def run(self) -> None:
        import asyncio
        self.running.set()
        await asyncio.Event().wait()

    def on_commit(self, qid: str) -> None:
        self.committed.append(qid)

    async def queue_run(self, filters: list[str], reason: str = "", flush: bool = False) -> None:
        self.runs.append(list(filters))
        self.ran.set()


class RecordingNotifier:
    watchdog_interval = None

    def __init__(self) -> None:
        import asyncio
        self.sent: list[str] = []
        self.readied = asyncio.Event()

    def ready(self, status: str = "") -> None:
        self.sent.append("READY=1")
        self.readied.set()

    def stopping(self) -> None:
        self.sent.append("STOPPING=1")

    async def watchdog(self, clock=None) -> None:
        return None


async def test_serve_in_process_wires_runner_and_stops_on_trigger(example_config, tmp_path):
    import asyncio
    import base64

    from edgemail.daemon.run import serve
    cfg = example_config()
    runner, notifier, stop = FakeRunner(), RecordingNotifier(), asyncio.Event()

    async def trigger() -> str:
        await stop.wait()
        return "test"

    task = asyncio.create_task(serve(cfg, runner=runner, notifier=notifier, shutdown=trigger))
    c = control(type("D", (), {"socket": cfg.control_socket})())
    await asyncio.wait_for(notifier.readied.wait(), 10)
    await asyncio.wait_for(runner.running.wait(), 10)       # the task group started the runner
    assert notifier.sent == ["READY=1"]
    status = await asyncio.to_thread(c.request, "status")
    port = int(status["listeners"][0].rsplit(":", 1)[1])
    qid1 = await asyncio.to_thread(_smtp, port, "a@edge.example", ["b@example.net"], "Subject: x\r\n\r\ny\r\n")
    reply = await asyncio.to_thread(c.request, "submit", mail_from="", recipients=[{"address": "c@example.net"}],
                                    data_b64=base64.b64encode(b"Subject: z\r\n\r\nz\r\n").decode())
    assert runner.committed == [qid1, reply["qid"]]
    run = await asyncio.to_thread(c.request, "queue_run", filters=["R@example.net"])
    assert run["message"] == "queue run started (R@example.net)"
    await asyncio.wait_for(runner.ran.wait(), 10)      # the run starts in the background
    assert runner.runs == [["R@example.net"]]
    stop.set()
    await asyncio.wait_for(task, 10)
    assert notifier.sent[-1] == "STOPPING=1"
    assert not os.path.exists(cfg.control_socket)


def test_notifier_without_systemd_is_a_no_op(monkeypatch):
    import asyncio

    from edgemail.daemon.notify import Notifier
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    n = Notifier()
    assert not n.enabled and n.watchdog_interval is None
    n.ready("x")
    n.stopping()
    asyncio.run(asyncio.wait_for(n.watchdog(), 1))     # returns at once


@pytest.mark.parametrize("env_pid, want", [("", 0.25), ("self", 0.25), ("1", None)],
                         ids=["no-pid", "our-pid", "other-pid"])
def test_notifier_messages_and_watchdog_interval(tmp_path, monkeypatch, env_pid, want):
    from edgemail.daemon.notify import Notifier
    path = str(tmp_path / "n.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(5)
        pid = str(os.getpid()) if env_pid == "self" else env_pid
        for key, value in {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "500000", "WATCHDOG_PID": pid}.items():
            monkeypatch.setenv(key, value)
        n = Notifier()
        assert n.watchdog_interval == want
        n.ready("3 queued")
        n.status("busy")
        n.stopping()
        got = [sock.recv(4096).decode() for _ in range(3)]
    assert got == ["READY=1\nSTATUS=3 queued", "STATUS=busy", "STOPPING=1"]


def test_mailq_shows_what_is_on_disk_no_ghost_and_counts_corrupt(tmp_path):
    """A queue file removed by hand leaves mailq (logged); a damaged one is moved to corrupt/ at start,
    logged, and mailq counts it (with the daemon up and down), as Postfix keeps its corrupt queue."""
    d = start(tmp_path)
    try:
        for n in range(3):      # an expensive route: they stay queued (no link)
            assert cli(d, "sendmail", "-f", "a@edge.example", f"x{n}@far.example", input=b"Subject: s\n\nb\n").returncode == 0
        qids = [line.split()[0].rstrip("*!") for line in cli(d, "mailq").stdout.decode().splitlines()[2:-1:2]]
        assert len(qids) == 3, qids
        os.unlink(tmp_path / "spool" / "queue" / qids[0])
        text = cli(d, "mailq").stdout.decode()
        assert qids[0] not in text and "Total requests: 2" in text, text
        assert f"{qids[0]}: queue file gone (removed by hand?), dropped from the queue" in d.log.read_text()
    finally:
        assert d.stop() == 0
    (tmp_path / "spool" / "queue" / qids[1]).write_bytes(b"garbage\n")
    down = cli(d, "mailq")
    assert b"damaged, left for the daemon to move to corrupt/" in down.stderr, down.stderr
    d.start()
    try:
        up = cli(d, "mailq").stdout.decode()
        log = d.log.read_text()
    finally:
        d.kill()
    line = f"\t\t1 damaged queue file in {tmp_path}/spool/corrupt/ (kept for inspection, not listed)\n"
    assert "Total requests: 1\n" + line in up and qids[2] in up and qids[1] not in up, up
    assert "corrupt=1" in log and os.listdir(tmp_path / "spool" / "corrupt") == [qids[1]]
    after = cli(d, "mailq")
    assert line in after.stdout.decode(), after.stdout       # the daemon down: read from disk, counted too


def test_the_command_line_reads_the_daemons_config_snapshot(daemon):
    """issue 15 §2: the running daemon publishes what sendmail and mailq
    need (config/snapshot.py); they use it, see an edit of the file at the
    next call, and the snapshot goes when the daemon stops."""
    from edgemail.config import snapshot
    where = snapshot.snapshot_path(str(daemon.config))
    assert where and os.path.dirname(where) == os.environ["EDGEMAIL_RUNTIME_DIR"]
    assert os.path.exists(where) and snapshot.read(str(daemon.config)) is not None
    r = cli(daemon, "sendmail", "-t", input=b"To: ops@example.org\nSubject: via the snapshot\n\nx\n")
    assert r.returncode == 0, r.stderr
    assert "Total requests: 1" in cli(daemon, "mailq").stdout.decode()
    daemon.config.write_text(daemon.config.read_text() + "\n# edited by the admin\n")
    assert snapshot.read(str(daemon.config)) is None                # stale: the calls load the file
    mailq = cli(daemon, "mailq")
    assert mailq.returncode == 0 and "Total requests: 1" in mailq.stdout.decode(), mailq.stderr
    assert daemon.stop() == 0
    assert not os.path.exists(where)
