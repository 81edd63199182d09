"""Fixtures for system tests: a hardware-sim world (root) and the real daemon wired to it.

`world(**opts)` is simworld.World.up (fast line, no ISP unless with_isp=True).
`netns_iface(name)` is a network namespace of the test's own with a veth NAME
in it (down, no address; root), for a link whose interface netlink can see.
`edge_daemon(world, policy=..., overrides=None)` is the real daemon configured for the world as the example configuration
is: its link manager dials the simulated modem (fakepppd as pppd, the ppp
hooks as ip-up/ip-down), `"*" = smarthost` to the ISP relay (STARTTLS
verified with the world's certificate as SmartHostCAFile, AUTH from a 0600
SmartHostAuthFile), remote2.example by MX, edge.example local, ETRN to the
relay.  Not started (the test calls .start()); stopped at teardown.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HWSIM = Path(__file__).resolve().parents[2] / "hardware-sim"
ROOT = HWSIM.parent
sys.path.insert(0, str(HWSIM))

PEERS = "115200\nnodetach\nnoauth\ndefaultroute\nusepeerdns\nipparam edgemail\nlinkname edgemail\n"


@pytest.fixture
def world():
    """world(**opts) -> simworld.World (fast link unless told otherwise); always torn down."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, TUN); CI runs as root")
    import simworld
    made = []

    def up(**opts):
        opts.setdefault("link", {"down_bps": 2_000_000, "up_bps": 2_000_000, "delay_ms": 5})
        opts.setdefault("with_isp", False)
        w = simworld.World.up(**opts)
        made.append(w)
        return w

    yield up
    for w in made:
        w.down()



class NetnsIface:
    """A namespace NS with the veth IFACE (its peer up, itself down and without an address)."""

    def __init__(self, iface: str) -> None:
        import secrets
        self.ns, self.iface = f"emt-{os.getpid()}-{secrets.token_hex(3)}", iface
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        self.ip("link", "add", iface, "type", "veth", "peer", "name", f"{iface}p")
        self.ip("link", "set", f"{iface}p", "up")

    def ip(self, *args: str) -> None:
        subprocess.run(["ip", "-n", self.ns, *args], check=True, capture_output=True, timeout=10)

    def up(self, local: str = "10.64.0.2", peer: str = "10.64.0.1") -> None:
        """As pppd does at IPCP up: the address with its peer, then the link up."""
        self.ip("addr", "add", local, "peer", f"{peer}/32", "dev", self.iface)
        self.ip("link", "set", self.iface, "up")

    def remove(self) -> None:
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, timeout=10)


@pytest.fixture
def netns_iface():
    """netns_iface(iface) -> NetnsIface; every namespace made is removed at teardown."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces); CI runs as root")
    made: list[NetnsIface] = []

    def make(iface: str) -> NetnsIface:
        made.append(NetnsIface(iface))
        return made[-1]

    yield make
    for n in made:
        n.remove()


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def hook_script(path: Path, which: str, env: dict) -> str:
    """/etc/ppp/ip-up as Debian's: run-parts over ip-up.d with pppd's arguments (env passed through)."""
    exports = "".join(f"export {k}='{v}'\n" for k, v in env.items())
    path.write_text(f"#!/bin/sh\n{exports}"
                    f"exec {ROOT}/etc/ppp/{which}.d/edgemail \"$@\"\n")
    path.chmod(0o755)
    return str(path)


def _config(world, tmp_path: Path, policy: str, overrides: dict | None):
    from daemon_harness import BIN, write_config

    (tmp_path / "dial.policy").write_text(policy)
    Path(world.peers_dir, "edgemail").write_text(PEERS)
    cfg = write_config(tmp_path, _merge({
        "hostname": "gw.edge.example",
        "listen": [{"name": "lan", "address": "127.0.0.1", "port": 0, "strict": False},
                   {"name": "wan", "address": world.edge_ip, "port": 25, "strict": True}],
        "SmartHost": f"[{world.relay_ip}]:25",
        "SmartHostAuthFile": world.write_auth_file(str(tmp_path / "smarthost.auth")),
        "SmartHostCAFile": world.relay_cert,
        "routes": {"edge.example": "local",
                   "remote2.example": {"route": "mx", "expensive": True, "dialdelay": True},
                   "*": {"route": "smarthost", "expensive": True, "dialdelay": True}},
        "dns": {"nameservers": [world.dns_ip], "peer_dns_file": str(tmp_path / "none")},
        "Timeout": {"connect": "10s", "iconnect": "10s"},
        "link": {"mode": "modem", "interface": "ppp0", "policy": str(tmp_path / "dial.policy"),
                 "etrn_host": f"{world.relay_ip}:25", "etrn_domains": ["edge.example"],
                 "device": world.tty, "numbers": [world.dial_number], "pppd": world.fakepppd_path,
                 "pppd_args": ["call", "edgemail"], "state_file": str(tmp_path / "link.json"),
                 "dial_timeout": "10s", "dial_retries": 1, "command_timeout": "1s",
                 "dial_backoff": "1s", "dtr_drop": 0.1, "escape_guard": 0.2},
    }, overrides or {}))
    hook_env = {"EDGEMAIL": str(BIN / "edgemail"), "EDGEMAIL_CONFIG": str(cfg)}
    env = {**world.fakepppd_env(), **hook_env,
           "FAKEPPPD_IP_UP": hook_script(tmp_path / "ip-up", "ip-up", hook_env),
           "FAKEPPPD_IP_DOWN": hook_script(tmp_path / "ip-down", "ip-down", hook_env)}
    return cfg, env


@pytest.fixture
def edge_daemon(tmp_path):
    """edge_daemon(world, policy=..., overrides=None) -> EdgeDaemon (not started; stopped at teardown)."""
    from daemon_harness import BIN, Daemon, wait_for

    class EdgeDaemon(Daemon):
        """The real daemon in the world's edge namespace, and the CLI against it."""

        def __init__(self, world, policy: str, overrides: dict | None):
            cfg, env = _config(world, tmp_path, policy, overrides)
            super().__init__(cfg, env=env, prefix=["ip", "netns", "exec", world.edge_ns])
            self.dir = tmp_path

        def cli(self, program: str, *args: str, text: str | None = None) -> subprocess.CompletedProcess:
            r = subprocess.run([str(BIN / program), *args], input=text.encode() if text else None,
                               capture_output=True, timeout=30,
                               env={**os.environ, "EDGEMAIL_CONFIG": str(self.config)})
            assert r.returncode == 0, (program, args, r.stdout, r.stderr)
            return r

        def sendmail(self, text: str) -> None:
            self.cli("sendmail", "-t", "-i", text=text)

        def status(self) -> dict:
            return json.loads(self.cli("edgemail", "status", "--json").stdout)

        def maildir(self, user: str = "*") -> list[Path]:
            return sorted(self.dir.glob(f"mail/{user}/Maildir/new/*"))

        def until(self, pred, timeout: float, what: str):
            return wait_for(pred, what, self.log, timeout)

    made = []

    def make(world, *, policy: str, overrides: dict | None = None) -> EdgeDaemon:
        d = EdgeDaemon(world, policy, overrides)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()
