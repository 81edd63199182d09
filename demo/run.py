"""demo/run.py - ``make demo`` (``python -m demo``): the appliance on its embedded default, end to end.

What it does, in a temporary directory that is removed afterwards (unless
``--keep``):

  1. writes a config: etc/edgemail.toml with the spool, the control socket
     and the mailboxes moved into the temporary directory and one LAN
     listener on 127.0.0.1 (a free port; no link: ``link.mode = "none"``);
  2. starts the daemon as a subprocess (``python -m edgemail run -c ...``)
     and waits until its control socket answers;
  3. submits sample mail over SMTP (smtplib) and with ``sendmail -t`` (the
     console script next to this Python);
  4. shows ``mailq``;
  5. stops the daemon with SIGTERM and prints its log.

Exit 0 when every step worked and both messages are in mailq.  With
``--keep`` the daemon stays up and the commands to talk to it are printed.

``write_config()`` and ``Daemon`` are reused by tests/system.
"""

from __future__ import annotations

import argparse
import email.utils
import os
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import time
import tomllib
from email.message import EmailMessage
from pathlib import Path

from edgemail.config.loader import _merge
from edgemail.daemon.control import ControlClient
from edgemail.errors import ControlError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "etc" / "edgemail.toml"
BIN = Path(sys.executable).parent


# ------------------------------------------------------------------ config

def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {v!r} as TOML")


def _toml_key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else _toml_value(k)


def to_toml(data: dict) -> str:
    """A small TOML writer: scalars first, then tables, then arrays of tables."""
    out = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in data.items()
           if not isinstance(v, dict) and not (isinstance(v, list) and v and isinstance(v[0], dict))]
    for k, v in data.items():
        if isinstance(v, dict):
            out += ["", f"[{_toml_key(k)}]"] + [f"{_toml_key(k2)} = {_toml_value(v2)}" for k2, v2 in v.items()]
    for k, v in data.items():
        if isinstance(v, list) and v and isinstance(v[0], dict):
            for item in v:
                out += ["", f"[[{_toml_key(k)}]]"] + [f"{_toml_key(k2)} = {_toml_value(v2)}" for k2, v2 in item.items()]
    return "\n".join(out) + "\n"


def write_config(directory: Path, overrides: dict | None = None) -> Path:
    """The example config with everything moved into `directory`; returns the file."""
    directory = Path(directory)
    data = tomllib.loads(EXAMPLE.read_text())
    base = {
        "spool": {"directory": str(directory / "spool")},
        "control": {"socket": str(directory / "control.sock")},
        "listen": [{"name": "lan", "address": "127.0.0.1", "port": 0, "strict": False}],
        # the example's users and the demo's audit mailbox: anyone else is refused at RCPT
        "local": {"aliases": str(ROOT / "etc" / "aliases"), "maildir": str(directory / "mail" / "%u" / "Maildir"),
                  "users": ["admin", "alice", "bob", "audit"]},
        "link": {"mode": "none", "policy": "", "state_file": str(directory / "link.json")},
        "SmartHostAuthFile": "",
        # The example's smart host is the hardware-sim ISP (192.0.2.25): on the
        # loopback demo it is a refused loopback port, so mail for the
        # Internet stays queued and nothing leaves this machine.
        "SmartHost": "[127.0.0.1]:1",
    }
    data = _merge(_merge(data, base), overrides or {})
    path = directory / "edgemail.toml"
    path.write_text(to_toml(data))
    return path


# ------------------------------------------------------------------ the daemon

class Daemon:
    """``python -m edgemail run -c CONFIG`` as a subprocess, its log in a file.

    prefix: argv run in front (``["ip", "netns", "exec", NS]``: the daemon in
    a namespace; ip execs, so the pid is the daemon's)."""

    def __init__(self, config: Path, *, env: dict | None = None, log: Path | None = None,
                 prefix: list[str] | None = None) -> None:
        self.config = Path(config)
        self.env = {**os.environ, **(env or {})}
        self.log = log or self.config.with_name("daemon.log")
        self.socket = tomllib.loads(self.config.read_text())["control"]["socket"]
        self.prefix = list(prefix or [])
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def start(self, timeout: float = 20.0) -> dict:
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen([*self.prefix, sys.executable, "-m", "edgemail", "run", "-c", str(self.config)],
                                         stdout=logf, stderr=logf, env=self.env, cwd=str(ROOT),
                                         start_new_session=bool(self.prefix))
        return self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                status = ControlClient(self.socket, timeout=5).request("status")
            except ControlError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"daemon not ready after {timeout}s:\n{self.log.read_text()[-3000:]}") from None
                time.sleep(0.02)
                continue
            self.port = int(status["listeners"][0].rsplit(":", 1)[1])
            return status

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


# ------------------------------------------------------------------ the show

def _step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def _sample_smtp(port: int, to: str = "alice@example.net, bob@edge.example") -> None:
    msg = EmailMessage()
    msg["From"] = "till-3@edge.example"
    msg["To"] = to
    msg["Subject"] = "Z-report for today"
    msg["Date"] = email.utils.formatdate(localtime=True)
    msg["Message-ID"] = email.utils.make_msgid(domain="till-3.lan")
    msg.set_content("Totals attached in the next message.\n" + "till-3 sales 0042.17\n" * 40)
    with smtplib.SMTP("127.0.0.1", port, local_hostname="till-3.lan", timeout=30) as s:
        s.send_message(msg)


def _sample_sendmail(env: dict, to: str = "ops@example.org") -> None:
    text = (f"To: {to}\nBcc: audit@edge.example\nSubject: nightly backup done\n\n"
            "backup of /srv finished, 2.1 GB\n")
    subprocess.run([str(BIN / "sendmail"), "-t", "-i", "-F", "Backup job"], input=text.encode(),
                   env=env, check=True, timeout=30)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="make demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--keep", action="store_true", help="leave the daemon (and the world) running")
    p.add_argument("--loopback", action="store_true", help="the loopback demo of the MTA core, even as root")
    p.add_argument("--out", default="demo-out", help="where the story writes its timeline (default demo-out)")
    args = p.parse_args(argv)
    if args.loopback:
        return loopback(args.keep)
    why = story_unavailable()
    if why:
        print(f"note: skipping the hardware-sim story (modem dial, PPP, queue run, ETRN, the ISP "
              f"pushing held mail): {why}.\nShowing the MTA core on loopback instead; "
              f"`sudo make demo` tells the whole story.")
        return loopback(args.keep)
    from demo.story import story  # noqa: PLC0415  (needs hardware-sim on the path)
    return story(Path(args.out), keep=args.keep)


def story_unavailable() -> str | None:
    """Why the hardware-sim story cannot run here (None: it can)."""
    if os.geteuid() != 0:
        return "it needs root (network namespaces and TUN devices)"
    if shutil.which("ip") is None:
        return "`ip` (Debian package iproute2) is missing"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing"
    return None


def loopback(keep: bool) -> int:
    """The MTA core on loopback: no link, mail for the Internet stays queued."""
    tmp = Path(tempfile.mkdtemp(prefix="edgemail-demo-"))
    config = write_config(tmp)
    env = {**os.environ, "EDGEMAIL_CONFIG": str(config)}
    daemon = Daemon(config)
    ok = False
    try:
        _step(f"starting the daemon: {sys.executable} -m edgemail run -c {config}")
        daemon.start()
        print(f"    listening on 127.0.0.1:{daemon.port}, control socket {daemon.socket}")
        _step("submitting over SMTP (smtplib) from till-3.lan")
        _sample_smtp(daemon.port)
        _step("submitting with `sendmail -t -i` (Bcc: is removed, recipients taken from the headers)")
        _sample_sendmail(env)
        _step("mailq")
        out = subprocess.run([str(BIN / "mailq")], env=env, capture_output=True, text=True, timeout=30)
        print(out.stdout, end="")
        ok = out.returncode == 0 and "Total requests: 2" in out.stdout
        if keep:
            _keep_note(config, daemon)
            return 0 if ok else 1
        _step("stopping the daemon (SIGTERM)")
        code = daemon.stop()
        ok = ok and code == 0
        print(daemon.log.read_text(), end="")
    finally:
        if not keep:
            daemon.stop()
            shutil.rmtree(tmp, ignore_errors=True)
    print("\ndemo " + ("OK: both messages are queued, waiting for the link" if ok else "FAILED"))
    return 0 if ok else 1


def _keep_note(config: Path, daemon: Daemon) -> None:
    print(f"""
The daemon keeps running (pid {daemon.proc.pid}); its log is {daemon.log}.
    export EDGEMAIL_CONFIG={config}
    {BIN}/mailq
    echo hello | {BIN}/sendmail -i you@example.org
    swaks --server 127.0.0.1:{daemon.port} --to alice@edge.example     # you@edge.example: 550 5.1.1
    {BIN}/edgemail status
    kill {daemon.proc.pid}          # stop it; then rm -r {config.parent}""")


if __name__ == "__main__":
    sys.exit(main())
