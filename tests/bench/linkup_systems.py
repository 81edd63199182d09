"""linkup_systems — the two contestants of the link-up benchmark, set up in the world's edge namespace.

SYNOPSIS
    edge = EdgeExec(world.edge_ns)                  # argv prefix: edge netns + UTS gw.edge.example
    em = EdgemailSide(state / "edgemail", world, SINK_IP)
    cl = ClassicSide(state / "sendmail", peers_root, edge, SINK_IP)
    for side in (em, cl): side.prepare(); side.start()
    side.queue_one("linkup-3-edgemail")             # one message, line down, for the sink
    side.ip_up_script()                             # what fakepppd runs as ip-up for this side
    side.queued()                                   # messages still in the queue

Owns: bench-out/state/linkup/ (configs, queues, the edgemail daemon's log,
the ip-up scripts) and the edgemail daemon it starts.

* EdgemailSide: `python -m edgemail run` in the edge namespace (ip netns
  exec), [link] mode = "external" (pppd is someone else's: the bench runs
  fakepppd), interface ppp0, a policy that never dials (no rules, urgent =
  schedule), no ETRN; one route `"*" = relay:[SINK]:25, expensive`, the
  world's DNS as nameserver (the runner waits for a route to it: the
  default route via ppp0).  The daemon hears of the link from netlink and
  from the installed hooks (etc/ppp/ip-up.d/edgemail as fakepppd's ip-up,
  ip-down likewise) unless hooks=False.
* ClassicSide: sendmail 8.17 (peers.py's private install and its .cf:
  DeliveryMode=deferred) plus SMART_HOST `[SINK]`; no daemon is needed for
  the measurement (mail is queued with the command line, as cron jobs and
  `mail` do, and the seed recipe's ip-up script runs `sendmail -q`).
  Every sendmail command runs in the edge namespace with the UTS hostname
  gw.edge.example and /etc/netns/<edge>/hosts naming it (sendmail sleeps
  60 s at start when it cannot qualify its own name).

Never does: touch /etc/mail, /etc/ppp or the machine's resolv.conf.

Failures: RuntimeError naming the side and the step (queueing, start) with
the tool's stderr.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import peers

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from edgemail.daemon.control import ControlClient  # noqa: E402
from demo.run import BIN, Daemon, write_config  # noqa: E402

HOSTNAME = "gw.edge.example"
#: a policy that never dials: the bench brings the line up itself
POLICY = "# linkup bench: no rules, urgent mail waits too; the bench dials.\nset urgent = schedule\nset idle_hangup = 1h\n"


class EdgeExec:
    """argv prefix for a program in the edge namespace (and its /etc/netns files) with the gateway's hostname."""

    def __init__(self, ns: str) -> None:
        self.ns = ns

    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.ns, "unshare", "--uts", "--",
                "sh", "-c", 'hostname "$0" && exec "$@"', HOSTNAME]

    def __call__(self, argv: list[str]) -> list[str]:
        return [*self.prefix(), *argv]


def message(tag: str, sender: str) -> bytes:
    return (f"From: {sender}\nTo: carol@remote1.example\nSubject: {tag}\nMessage-ID: <{tag}@{HOSTNAME}>\n\n"
            f"queued while the line was down ({tag})\n").encode()


def write_script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


class EdgemailSide:
    name = "edgemail"

    def __init__(self, state: Path, world, sink_ip: str, hooks: bool = True) -> None:
        self.state, self.world, self.sink_ip, self.hooks = state, world, sink_ip, hooks
        self.daemon: Daemon | None = None
        self.config = state / "edgemail.toml"

    def prepare(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        (self.state / "dial.policy").write_text(POLICY)
        w = self.world
        self.config = write_config(self.state, {
            "hostname": HOSTNAME, "local_domains": ["edge.example"],
            "listen": [{"name": "lan", "address": "127.0.0.1", "port": 0, "strict": False}],
            "routes": {"edge.example": "local",
                       "*": {"route": f"relay:[{self.sink_ip}]:25", "expensive": True}},
            "dns": {"nameservers": [w.dns_ip], "peer_dns_file": w.resolv_conf},
            "link": {"mode": "external", "interface": "ppp0", "policy": str(self.state / "dial.policy"),
                     "etrn_host": "", "state_file": str(self.state / "link.json")},
        })
        env = f"export EDGEMAIL='{BIN / 'edgemail'}' EDGEMAIL_CONFIG='{self.config}'\n"
        for which in ("ip-up", "ip-down"):
            write_script(self.state / which, env + f'exec {REPO}/etc/ppp/{which}.d/edgemail "$@"\n')

    def start(self) -> None:
        log = self.state / "daemon.log"
        log.unlink(missing_ok=True)
        self.daemon = Daemon(self.config, env={"EDGEMAIL_CONFIG": str(self.config)}, log=log,
                             prefix=["ip", "netns", "exec", self.world.edge_ns])
        self.daemon.start()

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()

    def scripts(self) -> dict[str, str]:
        """FAKEPPPD_IP_UP / _IP_DOWN for this side's calls."""
        if not self.hooks:
            return {"FAKEPPPD_IP_UP": "/nonexistent", "FAKEPPPD_IP_DOWN": "/nonexistent"}
        return {"FAKEPPPD_IP_UP": str(self.state / "ip-up"), "FAKEPPPD_IP_DOWN": str(self.state / "ip-down")}

    def queue_one(self, tag: str) -> None:
        r = subprocess.run([str(BIN / "sendmail"), "-t", "-i"], input=message(tag, "bob@edge.example"),
                           capture_output=True, env={**os.environ, "EDGEMAIL_CONFIG": str(self.config)},
                           timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"edgemail: queueing {tag}: sendmail exited {r.returncode}: {r.stderr!r}")

    def status(self) -> dict:
        return ControlClient(self.daemon.socket, timeout=10).request("status")

    def queued(self) -> int:
        return self.status()["queued"]

    def link_state(self) -> str:
        return self.status()["link"]["state"]

    def log_tail(self, n: int = 4000) -> str:
        return (self.state / "daemon.log").read_text(errors="replace")[-n:]


class LinkupSendmail(peers.Sendmail):
    """peers.py's sendmail (.cf from m4, deferred), sending everything to the smart host [SINK]."""

    def __init__(self, state: Path, root: Path, sink_ip: str, wrapper: Path) -> None:
        super().__init__(state, root)
        self.real_binary, self.sink_ip = self.binary, sink_ip
        self.binary = wrapper                     # prepare()'s newaliases runs in the edge namespace too

    def mc(self) -> str:
        smart = f"define(`SMART_HOST', `[{self.sink_ip}]')dnl\n"
        return super().mc().replace("MAILER(`local')dnl", smart + "MAILER(`local')dnl")


class ClassicSide:
    name = "sendmail"

    def __init__(self, state: Path, root: Path, edge: EdgeExec, sink_ip: str) -> None:
        self.state = state
        wrapper = state.parent / "sendmail-in-edge"
        self.sm = LinkupSendmail(state, root, sink_ip, wrapper)
        self.edge = edge
        self.wrapper = wrapper

    def prepare(self) -> None:
        self.state.parent.mkdir(parents=True, exist_ok=True)
        argv = " ".join(f"'{a}'" for a in self.edge([str(self.sm.real_binary)]))
        write_script(self.wrapper, f'exec {argv} "$@"\n')
        self.sm.prepare()
        lib = peers.lib_path(self.sm.root)
        # The seed recipe (000_...: "do sendmail -q ... every time you bring up your ppp connection").
        write_script(self.state / "ip-up",
                     f"# /etc/ppp/ip-up.d/sendmail, the classic recipe: flush the queue when the link is up\n"
                     f"LD_LIBRARY_PATH='{lib}' exec '{self.sm.real_binary}' -C '{self.sm.cf}' -q\n")

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def scripts(self) -> dict[str, str]:
        return {"FAKEPPPD_IP_UP": str(self.state / "ip-up"), "FAKEPPPD_IP_DOWN": "/nonexistent"}

    def queue_one(self, tag: str) -> None:
        r = subprocess.run([str(self.wrapper), "-C", str(self.sm.cf), "-t", "-i"],
                           input=message(tag, "bob@edge.example"), capture_output=True,
                           env=self.sm.env(), timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"sendmail: queueing {tag}: exited {r.returncode}: {r.stderr!r}")

    def queued(self) -> int:
        return sum(1 for p in (self.state / "mqueue").iterdir() if p.name.startswith("qf"))

    def wait_empty(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while self.queued():
            if time.monotonic() > end:
                return False
            time.sleep(0.05)
        return True
