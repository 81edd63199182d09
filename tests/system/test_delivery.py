"""The daemon-level delivery path: `edgemail run` (subprocess) + `sendmail` +
`edgemail queue run` / `sendmail -q` through the control socket, with
upstream.py (subprocess) as the smart host on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from daemon_harness import ROOT, cli, control, free_port, start

pytestmark = pytest.mark.timeout(90)

MAIL = (b"From: alice@edge.example\nTo: bob@edge.example, far@remote.test\n"
        b"Subject: hello\n\nbody\n")


class UpstreamProcess:
    def __init__(self, port: int) -> None:
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "hardware-sim" / "upstream.py"),
                                      "--port", str(port)], stdout=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_for("listening")

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for line in self.lines:
                if text in line:
                    return line
            time.sleep(0.05)
        raise AssertionError(f"upstream never printed {text!r}: {self.lines}")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def wait_until(pred, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "condition never became true"
        time.sleep(0.05)


def recipient_status(daemon) -> dict[str, str]:
    """The one queued message's recipients and their status, from `queue list --json`."""
    (entry,) = json.loads(cli(daemon, "edgemail", "queue", "list", "--json").stdout)
    return {r["address"]: r["status"] for r in entry["recipients"]}


def maildir_new(tmp_path: Path, user: str) -> list[Path]:
    new = tmp_path / "mail" / user / "Maildir" / "new"
    return sorted(new.iterdir()) if new.is_dir() else []


@pytest.mark.parametrize("run_cmd", [("edgemail", "queue", "run"), ("sendmail", "-q")])
def test_sendmail_then_queue_run_delivers_via_smart_host(tmp_path, run_cmd):
    port = free_port()
    up = UpstreamProcess(port)
    daemon = start(tmp_path, {"SmartHost": f"[127.0.0.1]:{port}"})
    try:
        sent = cli(daemon, "sendmail", "-t", "-f", "alice@edge.example", input=MAIL)
        assert sent.returncode == 0, sent.stderr
        wait_until(lambda: maildir_new(tmp_path, "bob"))              # local: at once
        # the Maildir file is written before bob's recipient is marked done in the spool
        wait_until(lambda: "sent" in recipient_status(daemon).values())
        status = recipient_status(daemon)
        assert status == {"bob@edge.example": "sent", "far@remote.test": "queued"}
        assert not any("far@remote.test" in line for line in up.lines)   # expensive: waits
        run = cli(daemon, *run_cmd)
        assert run.returncode == 0, run.stderr
        assert "alice@edge.example" in up.wait_for("far@remote.test")
        wait_until(lambda: b"Mail queue is empty" in cli(daemon, "mailq").stdout)
        hs = cli(daemon, "edgemail", "hoststat")
        assert hs.returncode == 0 and b"127.0.0.1" in hs.stdout and b"OK" in hs.stdout
        bh = cli(daemon, "sendmail", "-bh").stdout
        assert bh.split(b"\n")[0] == hs.stdout.split(b"\n")[0] and b"127.0.0.1" in bh
        assert cli(daemon, "edgemail", "purgestat").returncode == 0
        up_reply = control(daemon).request("link_up", iface="ppp0", wait=True)
        assert "link-up" in up_reply["message"]
        assert b"127.0.0.1" not in cli(daemon, "edgemail", "hoststat").stdout   # cleared on link-up
        assert control(daemon).request("link_down")["message"] == "no queue run in progress"
    finally:
        daemon.stop()
        up.close()
    log = daemon.log.read_text()
    for want in ("to=<bob@edge.example>, delay=", "mailer=local", "stat=Sent (delivered to maildir",
                 "to=<far@remote.test>", "mailer=smarthost", f"relay=127.0.0.1[127.0.0.1]:{port}",
                 "runner: queue run start", "runner: queue run end"):
        assert want in log, f"missing {want!r} in:\n{log}"
