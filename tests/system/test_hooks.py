"""The ppp hooks (etc/ppp/ip-up.d/edgemail, ip-down.d/edgemail) run as pppd
runs them: run-parts over the directory, pppd's arguments (iface tty speed
local remote ipparam) and environment (ip-down: CONNECT_TIME, BYTES_SENT,
BYTES_RCVD), EDGEMAIL pointing at the venv's console script.

With the daemon up (link mode "external": pppd is someone else's, the hooks
are how the daemon hears of it) the manager sees link_up / link_down, and a
second run changes nothing; an ip-up whose claim netlink contradicts (the
interface carries only pppd's demand-mode placeholder) is refused; with the
daemon down the hooks exit 0 and return (bounded by the subprocess timeout,
no timing assertion).  The interface is a veth in a namespace of the
test's own (root), brought up as pppd does (address and peer, then up), so
netlink confirms what the hook says; the daemon-down cases need no root.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from daemon_harness import BIN, Daemon, write_config

ROOT = Path(__file__).resolve().parents[2]
IFACE = "emhook0"
ARGS = [IFACE, "/dev/ttyS0", "115200", "10.64.0.2", "10.64.0.1", "edgemail"]


@pytest.fixture
def hookdirs(tmp_path):
    """/etc/ppp/ip-up.d and ip-down.d as installed, with a neighbour script that must run too."""
    dirs = {}
    for which in ("ip-up", "ip-down"):
        d = tmp_path / f"{which}.d"
        d.mkdir()
        shutil.copy(ROOT / "etc" / "ppp" / f"{which}.d" / "edgemail", d / "edgemail")
        (d / "zz-witness").write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/{which}.witness\n")
        for f in d.iterdir():
            f.chmod(0o755)
        dirs[which] = d
    return dirs


def run_parts(directory: Path, config: Path, **extra_env) -> subprocess.CompletedProcess:
    """Debian's /etc/ppp/ip-up: run-parts with pppd's arguments; pppd's environment."""
    env = {"PATH": os.environ["PATH"], "EDGEMAIL": str(BIN / "edgemail"), "EDGEMAIL_CONFIG": str(config),
           "PPP_IFACE": IFACE, "IFNAME": IFACE, "IPLOCAL": ARGS[3], "IPREMOTE": ARGS[4],
           "PPP_IPPARAM": "edgemail", "LINKNAME": "edgemail", "DNS1": "192.0.2.53", **extra_env}
    argv = ["run-parts", *[f"--arg={a}" for a in ARGS], str(directory)]
    return subprocess.run(argv, env=env, capture_output=True, timeout=10)


def status(config: Path) -> dict:
    r = subprocess.run([str(BIN / "edgemail"), "-c", str(config), "status", "--json"], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.fixture
def line(netns_iface):
    return netns_iface(IFACE)


@pytest.fixture
def daemon(tmp_path, line):
    (tmp_path / "dial.policy").write_text("set idle_hangup = 1h\n")
    cfg = write_config(tmp_path, {"link": {"mode": "external", "interface": IFACE, "netns": line.ns,
                                           "policy": str(tmp_path / "dial.policy"), "etrn_host": ""}})
    d = Daemon(cfg)
    d.start()
    yield d
    d.stop()


def test_hooks_report_up_and_down_to_the_daemon_idempotently(daemon, line, hookdirs, tmp_path):
    assert status(daemon.config)["link"]["state"] == "down"
    line.up(ARGS[3], ARGS[4])
    for _ in range(2):                              # pppd may run a hook twice
        r = run_parts(hookdirs["ip-up"], daemon.config)
        assert r.returncode == 0, r.stderr
        assert status(daemon.config)["link"]["state"] == "up"
    assert (tmp_path / "ip-up.witness").read_text().split() == ARGS
    log = daemon.log.read_text()
    assert log.count(f"link: state=UP, reason={IFACE}-up(10.64.0.2)") == 1

    down_env = {"CONNECT_TIME": "42", "BYTES_SENT": "1234", "BYTES_RCVD": "5678"}
    for _ in range(2):
        r = run_parts(hookdirs["ip-down"], daemon.config, **down_env)
        assert r.returncode == 0, r.stderr
        assert status(daemon.config)["link"]["state"] == "down"
    call = status(daemon.config)["last_call"]
    assert (call["connect_s"], call["bytes_sent"], call["bytes_rcvd"]) == (42.0, 1234, 5678)
    assert daemon.log.read_text().count("link: call=ended") == 1


def test_an_ip_up_netlink_contradicts_is_refused(daemon, line):
    """pppd in demand mode: the interface is up with the placeholder address, no call is made."""
    line.up("10.64.64.64", "10.112.112.112")
    r = subprocess.run([str(BIN / "edgemail"), "-c", str(daemon.config), "link", "hook", "ip-up", "--", *ARGS],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and r.stdout == (f"ip-up: ignored: {IFACE} has no address 10.64.0.2 (it has 10.64.64.64): "
                                              "netlink does not confirm the hook\n"), r.stdout
    r = subprocess.run([str(BIN / "edgemail"), "-c", str(daemon.config), "link", "hook", "ip-up", "--",
                        *ARGS[:3], "10.64.64.64", *ARGS[4:]], capture_output=True, text=True, timeout=10)
    assert "10.64.64.64 is pppd's demand-mode placeholder, not a connection" in r.stdout, r.stdout
    st = status(daemon.config)
    assert st["link"]["state"] == "down" and st["last_call"] is None
    assert "link: state=UP" not in daemon.log.read_text()


def test_hooks_exit_0_when_the_daemon_is_down(hookdirs, tmp_path):
    cfg = write_config(tmp_path, {"link": {"mode": "external", "interface": IFACE, "policy": ""}})
    for which in ("ip-up", "ip-down"):
        r = run_parts(hookdirs[which], cfg)         # returns (the timeout bounds it), exit 0
        assert r.returncode == 0, r.stderr
        assert (tmp_path / f"{which}.witness").exists()


def test_hook_command_says_why_when_the_daemon_is_down(tmp_path):
    cfg = write_config(tmp_path, {})
    r = subprocess.run([str(BIN / "edgemail"), "-c", str(cfg), "link", "hook", "ip-up", "--", *ARGS],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and "daemon not reachable" in r.stderr


def test_status_and_link_commands_against_the_manager(daemon, line):
    """In words, the phase only while up (the manager's reply carries LINGER
    outside UP, its resting value), global options after the command."""
    def edgemail(*args, code=0):
        r = subprocess.run([str(BIN / "edgemail"), args[0], "-c", str(daemon.config), *args[1:]],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == code, (args, r.stdout, r.stderr)
        return r.stdout
    assert "link is down (mode external)" in edgemail("link", "explain")
    text = edgemail("status")
    assert "link:        down (mode external" in text and "queue:       0 message(s), 0 held;" in text
    assert "last call:   none" in text and "linger" not in text
    assert edgemail("link", "hangup") == "nothing to hang up: link is down\n"
    assert edgemail("link", "dial").startswith("dialing now, whatever the policy says (link dialing)")
    assert edgemail("link", "dial") == "not dialing: link is dialing\n"          # already on its way: exit 0
    line.up(ARGS[3], ARGS[4])                      # someone else's pppd brings it up
    assert edgemail("link", "hook", "ip-up", "--", *ARGS).startswith("ip-up: link up")
    up = next(line for line in edgemail("status").splitlines() if line.startswith("link:"))
    assert up.startswith("link:        up (mode external") and any(
        p in up for p in ("queue run", "waiting for the ETRN answers", "lingering until the line is quiet")), up
    assert json.loads(edgemail("status", "--json"))["link"]["state"] == "up"
    assert edgemail("link", "hook", "ip-down", "--", *ARGS).startswith("ip-down: link down")
    assert "linger" not in edgemail("status")
