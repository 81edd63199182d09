#!/usr/bin/env python3
"""simworld.py - bring the simulated modem, PPP link and ISP up and down.

SYNOPSIS
    from simworld import World
    w = World.up(modem={"busy": 1}, link={"down_bps": 200000})
    proc = w.start_fakepppd("idle", "30"); w.wait_ppp_up()
    w.dns_query_count(); w.sink_messages(); w.inject_held_mail(...); w.modem_control("drop", mode="hard")
    w.relay_cert; w.relay_credentials; w.write_auth_file(path); w.relay_log()
    w.down()

    simworld.py reap --state RUN_DIR/state.json --owner PID     (internal: the reaper)

DESCRIPTION
    A world is two network namespaces with unique names (emedge-<id>,
    emisp-<id>), a run directory, and processes started in their own
    sessions: modemsim.py (pty + isp0 TUN in the ISP namespace), isp.py
    (DNS, relay, sinks in the ISP namespace) and any fakepppd started
    through start_fakepppd().  The edge namespace holds nothing until
    fakepppd makes ppp0 there; its only route is then `default dev ppp0`.

    Everything the world creates is written to <run_dir>/state.json
    before it is created, and teardown() removes exactly that: process
    sessions (SIGTERM, then SIGKILL after 2 s), any process left in the
    two namespaces, the namespaces, the run directory.  A world owned by
    a process (World.up(owner=pid), the default: the caller) gets a
    reaper process that runs teardown() as soon as the owner dies, even
    by SIGKILL; `world up` from the command line has no owner and lives
    until `world down`.

    Sockets into the namespaces: `with w.in_edge(): s = socket.create_connection(...)`
    moves only the calling thread, and the socket stays in the namespace.

ADDRESSES (defaults)
    edge ppp0 10.64.0.2 peer 10.64.0.1      ISP isp0 10.64.0.1 peer 10.64.0.2
    DNS 192.0.2.53:53 (UDP+TCP)             relay 192.0.2.25:25 and :587
    sinks 198.51.100.10:25 (mx.remote1.example), 198.51.100.11:25 (mx.remote2.example)

THE RELAY'S TLS AND AUTH
    isp.py makes the relay's self-signed certificate at world-up in the
    run directory: relay_cert (PEM; use it as the client's CA file: its
    subjectAltName has relay.isp.example and 192.0.2.25) and its key
    (0600, never printed).  AUTH needs STARTTLS first; relay_credentials
    is (user, password), "edge"/"secret" unless isp={"user": ...} says
    otherwise; write_auth_file(path) writes them as edgemail's
    SmartHostAuthFile ("user password", mode 0600).

DIAGNOSTICS
    WorldError with the tail of the failing program's log.  Needs root
    (namespaces, TUN): NotRoot otherwise.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import ctlsock  # noqa: E402
import netns  # noqa: E402

BASE = os.environ.get("HWSIM_BASE", "/run/hwsim")
EDGE_IP, ISP_IP = "10.64.0.2", "10.64.0.1"
DNS_IP, RELAY_IP = "192.0.2.53", "192.0.2.25"
SINKS = {"198.51.100.10": "mx.remote1.example", "198.51.100.11": "mx.remote2.example"}
DIAL_NUMBER = "5551234"


def isp_python() -> str:
    """An interpreter with dnspython and aiosmtpd: this one, else the repo's .venv."""
    probe = "import dns.message, aiosmtpd.smtp"
    candidates = [sys.executable, os.path.join(os.path.dirname(HERE), ".venv", "bin", "python")]
    for py in candidates:
        if os.path.exists(py) and subprocess.run([py, "-c", probe], capture_output=True).returncode == 0:
            return py
    raise WorldError("isp.py needs dnspython and aiosmtpd: run `make venv` (or pip install them)")


class WorldError(RuntimeError):
    pass


class NotRoot(WorldError):
    pass


def require_root() -> None:
    if os.geteuid() != 0:
        raise NotRoot("hardware-sim world needs root (network namespaces and TUN devices); "
                      "run it with sudo, or as root in CI")


def chat_script(number: str = DIAL_NUMBER, timeout: int = 10) -> str:
    """A connect script for fakepppd/pppd using the real chat(8)."""
    return (f"/usr/sbin/chat -t {timeout} ABORT BUSY ABORT 'NO CARRIER' ABORT 'NO DIALTONE' "
            f"ABORT 'NO ANSWER' '' ATZ OK ATDT{number} CONNECT")


# -- teardown: shared by World.down, the reaper and `world down` -------------------

def _alive_leader(pid: int) -> bool:
    """pid still leads the session we started it in (a zombie counts as dead)."""
    try:
        if os.getsid(pid) != pid:
            return False
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (ProcessLookupError, FileNotFoundError, IndexError):
        return False


def _kill_sessions(pids: list[int], grace_s: float = 2.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            if _alive_leader(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, sig)
        end = time.monotonic() + grace_s
        while time.monotonic() < end and any(_alive_leader(p) for p in pids):
            _reap(pids)
            time.sleep(0.01)
        _reap(pids)
        if not any(_alive_leader(p) for p in pids):
            return


def _reap(pids: list[int]) -> None:
    """Collect those of `pids` that are our exited children (else they stay zombies)."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def teardown(state: dict) -> None:
    """Remove what state.json says this world created; safe to call twice."""
    reaper = state.get("reaper")
    if reaper and reaper != os.getpid():
        _kill_sessions([reaper], 0.5)
    _kill_sessions(list(state.get("pids", {}).values()))
    for ns in state.get("namespaces", []):
        stragglers = netns.pids_in(ns) if netns.exists(ns) else []
        for pid in stragglers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        netns.delete(ns)
    run_dir = state.get("run_dir")
    if run_dir and state.get("own_run_dir") and os.path.isdir(run_dir):
        shutil.rmtree(run_dir, ignore_errors=True)


def _save(state: dict) -> None:
    path = os.path.join(state["run_dir"], "state.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f, indent=1)
    os.replace(tmp, path)


def load_state(run_dir: str) -> dict:
    with open(os.path.join(run_dir, "state.json")) as f:
        return json.load(f)


# -- the world ------------------------------------------------------------------

class World:
    """A running world; see the module docstring.  Build it with World.up()."""

    def __init__(self, state: dict):
        self.state = state
        self.id = state["id"]
        self.run_dir = state["run_dir"]
        self.edge_ns, self.isp_ns = state["namespaces"]
        self.tty = os.path.join(self.run_dir, "ttyS0")
        self.modem_socket = os.path.join(self.run_dir, "modem.sock")
        self.isp_socket = os.path.join(self.run_dir, "isp.sock")
        self.ppp_run_dir = os.path.join(self.run_dir, "ppp")
        self.resolv_conf = os.path.join(self.run_dir, "resolv.conf")
        self.peers_dir = os.path.join(self.run_dir, "peers")
        self.ip_up = os.path.join(self.run_dir, "ip-up")
        self.ip_down = os.path.join(self.run_dir, "ip-down")
        self.edge_ip, self.isp_ip = EDGE_IP, ISP_IP
        self.dns_ip, self.relay_ip = DNS_IP, RELAY_IP
        self.sinks = dict(SINKS)
        self.dial_number = DIAL_NUMBER
        self.fakepppd_path = os.path.join(HERE, "fakepppd")
        self.relay_cert = state.get("relay_cert") or os.path.join(self.run_dir, "relay-cert.pem")
        user, _, password = state.get("relay_user", "edge:secret").partition(":")
        self.relay_credentials = (user, password)

    # -- life cycle ---------------------------------------------------------

    @classmethod
    def up(cls, *, modem: dict | None = None, link: dict | None = None, isp: dict | None = None,
           with_isp: bool = True, base: str | None = None, owner: int | None = -1,
           timeout_s: float = 15.0) -> "World":
        """Create and start a world.  owner: pid whose death tears it down
        (-1: the caller, None: nobody).  modem: Faults fields; link:
        down_bps/up_bps/delay_ms/buffer; isp: isp.py options (see isp.py)."""
        require_root()
        wid = f"{os.getpid()}-{secrets.token_hex(3)}"
        run_dir = os.path.join(base or BASE, wid)
        os.makedirs(os.path.join(run_dir, "ppp"))
        os.makedirs(os.path.join(run_dir, "peers"))
        owner_pid = None if owner is None else (os.getpid() if owner == -1 else owner)
        users = (isp or {}).get("user") or ["edge:secret"]
        state = dict(id=wid, run_dir=run_dir, own_run_dir=True, pids={}, reaper=None, owner=owner_pid,
                     namespaces=[f"emedge-{wid}", f"emisp-{wid}"], created=time.time(),
                     relay_user=users if isinstance(users, str) else users[0],
                     relay_cert=(isp or {}).get("tls_cert") or os.path.join(run_dir, "relay-cert.pem"))
        _save(state)
        world = cls(state)
        try:
            if owner_pid is not None:
                world._start_reaper(owner_pid)
            world._build(modem or {}, link or {}, isp or {}, with_isp, timeout_s)
        except BaseException:
            teardown(state)
            raise
        return world

    def _start_reaper(self, owner: int) -> None:
        proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "simworld.py"), "reap",
             "--state", os.path.join(self.run_dir, "state.json"), "--owner", str(owner)],
            start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.run_dir, "reaper.log"), "w"))
        self.state["reaper"] = proc.pid
        _save(self.state)

    def _build(self, modem: dict, link: dict, isp: dict, with_isp: bool, timeout_s: float) -> None:
        for ns in self.state["namespaces"]:
            netns.create(ns)
        for addr in [DNS_IP, RELAY_IP, *SINKS]:
            netns.ip("addr", "add", f"{addr}/32", "dev", "lo", ns=self.isp_ns)
        args = ["--tty", self.tty, "--control", self.modem_socket, "--netns", self.isp_ns]
        for key, value in {**link, **modem}.items():
            args += _flag(key, value)
        self._spawn("modemsim", [sys.executable, os.path.join(HERE, "modemsim.py"), *args])
        if with_isp:
            isp_args = ["--netns", self.isp_ns, "--run-dir", self.run_dir, "--control", self.isp_socket]
            for key, value in isp.items():
                isp_args += _flag(key, value)
            self._spawn("isp", [isp_python(), os.path.join(HERE, "isp.py"), *isp_args])
        self._wait_ready("modemsim", lambda: self.modem_control("status"), timeout_s)
        if with_isp:
            self._wait_ready("isp", lambda: self.isp_control("status"), timeout_s)

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        logf = open(os.path.join(self.run_dir, f"{name}.log"), "ab")
        proc = subprocess.Popen(argv, start_new_session=True, stdin=subprocess.DEVNULL,
                                stdout=logf, stderr=logf)
        logf.close()
        self.state["pids"][name] = proc.pid
        _save(self.state)
        return proc

    def _wait_ready(self, name: str, probe, timeout_s: float) -> None:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            with contextlib.suppress(OSError, ValueError):
                probe()
                return
            if not _alive_leader(self.state["pids"][name]):
                break
            time.sleep(0.05)
        raise WorldError(f"{name} did not come up:\n{self.log_tail(name)}")

    def log_tail(self, name: str, n: int = 20) -> str:
        with contextlib.suppress(OSError):
            with open(os.path.join(self.run_dir, f"{name}.log"), errors="replace") as f:
                return "".join(f.readlines()[-n:])
        return "(no log)"

    def down(self) -> None:
        teardown(self.state)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.down()

    def info(self) -> dict:
        """What `world up` prints."""
        return dict(id=self.id, run_dir=self.run_dir, edge_netns=self.edge_ns, isp_netns=self.isp_ns,
                    tty=self.tty, modem_control=self.modem_socket, isp_control=self.isp_socket,
                    peers_dir=self.peers_dir, ppp_run_dir=self.ppp_run_dir, resolv_conf=self.resolv_conf,
                    dial_number=self.dial_number, edge_ip=self.edge_ip, isp_ip=self.isp_ip,
                    dns=f"{self.dns_ip}:53", relay=f"{self.relay_ip}:25", submission=f"{self.relay_ip}:587",
                    sinks={ip: f"{name} {ip}:25" for ip, name in self.sinks.items()},
                    relay_cert=self.relay_cert, relay_user=self.relay_credentials[0],
                    fakepppd=self.fakepppd_path, fakepppd_command=self.fakepppd_argv(),
                    pids=self.state["pids"], reaper=self.state["reaper"],
                    fakepppd_env=self.fakepppd_env(), connect_script=chat_script(self.dial_number))

    def status(self) -> dict:
        return status_of(self.state)

    # -- control sockets -----------------------------------------------------------

    def modem_control(self, cmd: str, **kw) -> dict:
        return control(self.modem_socket, cmd, **kw)

    def isp_control(self, cmd: str, **kw) -> dict:
        return control(self.isp_socket, cmd, **kw)

    def dns_query_count(self) -> int:
        return self.isp_control("dns_count")["count"]

    def dns_queries(self) -> list[dict]:
        return self.isp_control("dns_log")["queries"]

    def sink_messages(self, sink: str | None = None) -> list[dict]:
        return self.isp_control("sink_messages", sink=sink)["messages"]

    def held_messages(self) -> list[dict]:
        return self.isp_control("held")["messages"]

    def inject_held_mail(self, rcpt: str, mail_from: str = "someone@remote1.example",
                         data: str | None = None) -> dict:
        return self.isp_control("inject", mail_from=mail_from, rcpt=rcpt, data=data)

    def relay_faults(self, **kw) -> dict:
        return self.isp_control("relay_faults", **kw)

    def relay_log(self, event: str | None = None) -> list[dict]:
        """The relay's events (held, auth, relay, etrn, etrn-delivery), optionally one kind."""
        return [e for e in self.isp_control("relay_log")["log"] if event in (None, e["event"])]

    def write_auth_file(self, path: str) -> str:
        """The relay's credentials as edgemail's SmartHostAuthFile: "user password", mode 0600."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(" ".join(self.relay_credentials) + "\n")
        os.chmod(path, 0o600)
        return path

    # -- namespaces -----------------------------------------------------------------

    def in_edge(self):
        return netns.entered(self.edge_ns)

    def in_isp(self):
        return netns.entered(self.isp_ns)

    def run_in(self, ns: str, argv: list[str], **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", ns, *argv], **kw)

    # -- the PPP link -------------------------------------------------------------------

    def fakepppd_env(self) -> dict:
        return dict(FAKEPPPD_RUN_DIR=self.ppp_run_dir, FAKEPPPD_RESOLV_CONF=self.resolv_conf,
                    FAKEPPPD_PEERS_DIR=self.peers_dir, FAKEPPPD_IP_UP=self.ip_up,
                    FAKEPPPD_IP_DOWN=self.ip_down, FAKEPPPD_PEER_DNS=self.dns_ip)

    def fakepppd_argv(self, *extra: str, connect: str | None = None) -> list[str]:
        return [self.fakepppd_path, "netns", self.edge_ns, self.tty, "115200",
                "connect", connect or chat_script(self.dial_number), "nodetach",
                "defaultroute", "usepeerdns", *extra]

    def start_fakepppd(self, *extra: str, connect: str | None = None, env: dict | None = None,
                       stderr=None) -> subprocess.Popen:
        """fakepppd in its own session, tracked for teardown."""
        argv = self.fakepppd_argv(*extra, connect=connect)
        full_env = {**os.environ, **self.fakepppd_env(), **(env or {})}
        logf = stderr or open(os.path.join(self.run_dir, "fakepppd.log"), "ab")
        proc = subprocess.Popen(argv, env=full_env, start_new_session=True,
                                stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
        self.state["pids"][f"fakepppd-{proc.pid}"] = proc.pid
        _save(self.state)
        return proc

    def write_peers_file(self, name: str = "edgemail", *options: str, connect: str | None = None) -> str:
        """A pppd peers file in peers_dir for `fakepppd call NAME` (with fakepppd_env())."""
        path = os.path.join(self.peers_dir, name)
        script = (connect or chat_script(self.dial_number)).replace('"', '\\"')
        lines = [f"{self.tty} 115200", f'connect "{script}"', "nodetach defaultroute usepeerdns noauth",
                 *options]
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def ppp_address(self, ifname: str = "ppp0") -> str | None:
        out = netns.ip("-j", "addr", "show", "dev", ifname, ns=self.edge_ns, check=False).stdout
        with contextlib.suppress(ValueError, IndexError, KeyError):
            for info in json.loads(out)[0]["addr_info"]:
                if info.get("family") == "inet":
                    return info["local"]
        return None

    def wait_ppp_up(self, timeout_s: float = 10.0, proc: subprocess.Popen | None = None,
                    ifname: str = "ppp0") -> float:
        """Wait until ppp0 is configured (address, route, pid file); returns seconds waited."""
        t0 = time.monotonic()
        pidfile = os.path.join(self.ppp_run_dir, f"{ifname}.pid")
        while time.monotonic() - t0 < timeout_s:
            # the pid file is written after the address, the route and resolv.conf (as pppd)
            if os.path.exists(pidfile) and self.ppp_address(ifname) == self.edge_ip:
                return time.monotonic() - t0
            if proc is not None and proc.poll() is not None:
                raise WorldError(f"fakepppd exited {proc.returncode} before ppp0 came up")
            time.sleep(0.02)
        raise WorldError(f"ppp0 not up after {timeout_s} s:\n{self.log_tail('fakepppd')}")


def _flag(key: str, value) -> list[str]:
    flag = "--" + key.replace("_", "-")
    if value is True:
        return [flag]
    if value is False or value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in (flag, str(v))]
    return [flag, str(value)]


def control(path: str, cmd: str, timeout_s: float = 5.0, **kw) -> dict:
    """One JSON-line request to a control socket; raises ValueError on {"ok": false}."""
    return ctlsock.request(path, cmd, timeout_s, **kw)


def status_of(state: dict) -> dict:
    return dict(id=state["id"], run_dir=state["run_dir"], owner=state.get("owner"),
                namespaces={ns: netns.exists(ns) for ns in state["namespaces"]},
                processes={name: _alive_leader(pid) for name, pid in state["pids"].items()},
                reaper=_alive_leader(state["reaper"]) if state.get("reaper") else None)


# -- the reaper ---------------------------------------------------------------------

def reap(state_path: str, owner: int) -> int:
    """Wait for `owner` to die, then tear the world down (if still there)."""
    try:
        fd = os.pidfd_open(owner)
    except ProcessLookupError:
        fd = None
    if fd is not None:
        select.select([fd], [], [])
    try:
        with open(state_path) as f:
            state = json.load(f)
    except (OSError, ValueError):
        return 0
    state["reaper"] = None  # that is us
    teardown(state)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 5 and argv[0] == "reap" and argv[1] == "--state" and argv[3] == "--owner":
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        return reap(argv[2], int(argv[4]))
    print("usage: simworld.py reap --state STATE --owner PID   (use `world` for up/down/status)",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
