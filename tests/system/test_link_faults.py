"""The link manager's fault matrix in hardware-sim (root).

Real parts: the simulated modem on a pty, fakepppd making ppp0 in the edge
namespace, netlink, a real spool (edgemail Store) and a sink plus an ETRN
server listening in the ISP namespace, reached over ppp0.  The port (what
the MTA provides) is the test's: its queue run sends each queued message
over ppp0 to the sink and removes it only after the sink's ack, so a carrier
loss mid-transfer leaves the message queued.  Every case ends with nothing
lost and the manager idle or retrying per policy.

"ISP refusing AUTH", "ISP answering 458/459 to ETRN", "busy then success"
and "carrier loss during DATA" also run the real daemon
(tests/system/conftest.py edge_daemon: runner, MtaPort, link manager,
smart host with STARTTLS and AUTH) against the simulated ISP relay and its
faults: there the MTA side is the product's, not the test's.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from edgemail.clock import SystemClock
from edgemail.config.model import LinkConfig
from edgemail.envelope import Envelope, Recipient
from edgemail.delivery.etrn import etrn
from edgemail.spool.store import Store
from link.accounting import Ledger
from link.manager import LinkManager
from link.port import QueueSummary
from link.policy import parse
from link.ppp import Pppd

pytestmark = [pytest.mark.root, pytest.mark.timeout(60)]
POLICY = "set idle_hangup = 1s\nset max_connect = 60s\nset dial_when_queued = 1\nset redial_gap = 1s\n"


class Sink:
    """In the ISP namespace: a message sink (acks 'OK' per message) and an ETRN server."""

    def __init__(self, world, etrn_reply: str = "250 2.0.0 Queuing for node example.org started"):
        self.world, self.etrn_reply = world, etrn_reply
        self.messages: list[bytes] = []
        self.received = 0
        self.etrns: list[str] = []
        with world.in_isp():
            self.data_sock = socket.create_server(("0.0.0.0", 0))
            self.etrn_sock = socket.create_server(("0.0.0.0", 0))
        self.data_port = self.data_sock.getsockname()[1]
        self.etrn_port = self.etrn_sock.getsockname()[1]
        for target in (self._data, self._etrn):
            threading.Thread(target=target, daemon=True).start()

    def _data(self):
        while True:
            try:
                c, _ = self.data_sock.accept()
            except OSError:
                return
            buf = b""
            with c:
                while not buf.endswith(b"\r\n.\r\n"):
                    chunk = c.recv(65536)
                    if not chunk:
                        break
                    self.received += len(chunk)
                    buf += chunk
                if buf.endswith(b"\r\n.\r\n"):
                    self.messages.append(buf)
                    with contextlib.suppress(OSError):
                        c.sendall(b"OK\n")

    def _etrn(self):
        while True:
            try:
                c, _ = self.etrn_sock.accept()
            except OSError:
                return
            with c, c.makefile("rwb", buffering=0) as f:
                f.write(b"220 isp.example ESMTP\r\n")
                for line in f:
                    cmd = line.decode().strip()
                    if cmd.upper().startswith("EHLO"):
                        f.write(b"250-isp.example\r\n250 ETRN\r\n")
                    elif cmd.upper().startswith("ETRN"):
                        self.etrns.append(cmd)
                        f.write(self.etrn_reply.encode() + b"\r\n")
                    else:
                        f.write(b"221 bye\r\n")
                        break

    def close(self):
        for s in (self.data_sock, self.etrn_sock):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)        # wakes the accept() threads (close() alone does not)
            s.close()


class SpoolPort:
    """The MTA side of the link port, on a real Store; transfers go over ppp0 from the edge namespace."""

    def __init__(self, store: Store, world, sink: Sink):
        self.store, self.world, self.sink = store, world, sink
        self.calls: list[str] = []
        self.deferred: set[str] = set()      # failed this run: next_attempt in the future, not "waiting"
        self._sock: socket.socket | None = None
        self._stop = False

    def queue_summary(self) -> QueueSummary:
        waiting = [e for e in self.store.entries() if e.qid not in self.deferred]
        now = SystemClock().wall()
        return QueueSummary(len(waiting), max((now - e.created for e in waiting), default=0.0), 0)

    def clear_host_status(self) -> None:
        self.calls.append("clear_host_status")

    async def run_due(self) -> None:
        await self.run_queue()

    async def run_queue(self) -> None:
        self.calls.append("run_queue")
        self._stop = False
        for e in self.store.entries():
            if self._stop:
                break
            ok = await asyncio.to_thread(self._send, self.store.read_data(e.qid))
            if ok:
                await self.store.remove(e.qid)
            elif not self._stop:
                self.deferred.add(e.qid)

    def _send(self, data: bytes) -> bool:
        with self.world.in_edge():
            s = socket.socket()
        s.settimeout(20)
        self._sock = s
        try:
            s.connect((self.world.isp_ip, self.sink.data_port))
            s.sendall(data + b"\r\n.\r\n")
            return s.recv(3) == b"OK\n"
        except OSError:
            return False
        finally:
            self._sock = None
            s.close()

    def stop_run(self) -> None:
        self.calls.append("stop_run")
        self._stop = True
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)

    async def etrn(self, domains):
        self.calls.append("etrn")

        def call():
            with self.world.in_edge():
                return asyncio.run(etrn(self.world.isp_ip, self.sink.etrn_port, domains,
                                        helo_name="edge.example", timeout=10))
        return await asyncio.to_thread(call)

    def inbound_active(self) -> int:
        return 0


class Rig:
    def __init__(self, world, tmp_path, *, policy=POLICY, size=1000, **cfgkw):
        self.world = world
        open(os.path.join(world.peers_dir, "edgemail"), "w").write(
            "115200\nnodetach\nnoauth\ndefaultroute\nusepeerdns\nipparam edgemail\nlinkname edgemail\n")
        base = dict(mode="modem", device=world.tty, numbers=(world.dial_number,),
                    netns=world.edge_ns, etrn_host="isp", etrn_domains=("example.org",),
                    dial_timeout=5.0, dial_retries=1, command_timeout=1.0, dial_backoff=0.2,
                    dtr_drop=0.1, escape_guard=0.2)
        self.cfg = replace(LinkConfig(), **{**base, **cfgkw})
        self.store = Store(str(tmp_path / "spool"))
        self.store.recover()
        self.sink = Sink(world)
        self.port = SpoolPort(self.store, world, self.sink)
        self.ledger = Ledger(str(tmp_path / "link.json"))
        pppd = Pppd(world.fakepppd_path, ("netns", world.edge_ns, "call", "edgemail"),
                    env={**os.environ, **world.fakepppd_env()}, grace_s=3.0,
                    log_path=os.path.join(world.run_dir, "fakepppd.log"))
        self.mgr = LinkManager(self.cfg, parse(policy), clock=SystemClock(), port=self.port,
                               ledger=self.ledger, pppd=pppd, sample_s=0.2,
                               fsm_overrides=dict(backoff_base_s=1.0, hangup_timeout_s=5.0, pppd_timeout_s=10.0))
        self.size = size
        self.task: asyncio.Task | None = None

    async def queue(self, n: int = 1) -> list[str]:
        body = b"Subject: t\r\n\r\n" + b"x" * 70 + b"\r\n"
        data = body * max(self.size // len(body), 1)
        env = Envelope("a@example.org", (Recipient("b@remote1.example"),), size=len(data))
        return [await self.store.commit(env, data) for _ in range(n)]

    def start(self):
        self.task = asyncio.create_task(self.mgr.run())
        self.mgr.demand_changed()

    async def until(self, pred, timeout=20.0, what=""):
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not pred():
            if loop.time() > end:
                raise AssertionError(f"timed out waiting for {what}: state={self.mgr.state}, "
                                     f"log={self.mgr.recent}\n{self.world.log_tail('modemsim')}")
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.05)

    async def stop(self):
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        self.sink.close()
        assert self.world.ppp_address() is None, "ppp0 left up"

    def queued(self) -> list[str]:
        return sorted(e.qid for e in self.store.entries())


@pytest.fixture
async def rig(world, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="link")
    made = []

    def make(modem=None, link=None, **kw):
        opts = {"modem": modem or {}, **({"link": link} if link else {})}
        r = Rig(world(**opts), tmp_path, **kw)
        made.append(r)
        return r

    yield make
    for r in made:
        if r.task is not None and not r.task.done():
            await r.stop()


def lines(caplog, needle: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if needle in r.getMessage()]


async def test_busy_then_success_delivers_and_hangs_up_idle(rig, caplog):
    r = rig(modem={"busy": 1}, dial_retries=2)
    qids = await r.queue(2)
    r.start()
    await r.until(lambda: r.mgr.state == "up", what="up")
    await r.until(lambda: r.mgr.state == "down" and not r.queued(), what="idle hang-up with the queue empty")
    assert len(r.sink.messages) == 2 and r.queued() == [] and qids
    assert r.port.calls[:2] == ["clear_host_status", "run_queue"] and "etrn" in r.port.calls
    assert r.sink.etrns == ["ETRN example.org"] and r.mgr.status()["last_etrn"]["ok"] is True
    assert lines(caplog, "result=BUSY") and lines(caplog, "state=UP, reason=ppp0-up(10.64.0.2)")
    assert lines(caplog, "state=HANGING_UP, reason=idle") and lines(caplog, "state=IDLE, reason=")
    assert r.ledger.usage(datetime.now(timezone.utc)).calls == 1
    assert r.mgr.status()["last_call"]["connect_s"] > 0
    await r.stop()


@pytest.mark.parametrize("fault,reason", [({"result": "NO DIALTONE"}, "NO DIALTONE"),
                                          ({"result": "NO ANSWER"}, "NO ANSWER"),
                                          ({"silent": True}, "TIMEOUT")])
async def test_failed_dial_backs_off_keeps_mail_then_retries(rig, caplog, fault, reason):
    r = rig(modem=fault)
    qids = await r.queue(1)
    r.start()
    await r.until(lambda: r.mgr.state == "backoff", what="backoff")
    assert r.mgr.fsm.failed_dials == 1 and r.queued() == qids and "run_queue" not in r.port.calls
    assert lines(caplog, f"state=BACKOFF, reason={reason}")
    assert "backing off after 1 failed dial" in r.mgr.explain()
    r.world.modem_control("clear")
    await r.until(lambda: not r.queued(), timeout=25, what="delivery after backoff")
    await r.until(lambda: r.mgr.state == "down", what="idle hang-up")
    assert len(r.sink.messages) == 1 and r.mgr.fsm.failed_dials == 0
    await r.stop()


async def test_carrier_loss_during_data_defers_without_backoff(rig, caplog):
    r = rig(link={"down_bps": 40_000, "up_bps": 40_000, "delay_ms": 20}, size=300_000)
    qids = await r.queue(1)
    r.start()
    await r.until(lambda: r.sink.received > 20_000, what="transfer under way")
    r.world.modem_control("drop", mode="soft")
    await r.until(lambda: "stop_run" in r.port.calls, what="stop_run")
    assert r.queued() == qids and r.sink.messages == []           # nothing lost, nothing half-delivered
    assert r.mgr.fsm.failed_dials == 0                            # carrier loss grows no backoff
    # netlink usually reports ppp0 gone before pppd's exit status (16, or 5 when our SIGTERM wins);
    # stop_run may come with the hang-up, before the line is IDLE: wait for the IDLE line itself
    await r.until(lambda: lines(caplog, "state=IDLE, reason=ppp0-down")
                  or lines(caplog, "state=IDLE, reason=pppd-exit(16"), what="the line IDLE after the carrier loss")
    r.world.modem_control("link", down_bps=2_000_000, up_bps=2_000_000, delay_ms=5)
    await r.until(lambda: not r.queued(), timeout=30, what="redial per policy and delivery")
    assert len(r.sink.messages) == 1
    await r.stop()


async def test_pppd_dying_ends_the_call_and_nothing_is_lost(rig, caplog):
    r = rig(policy=POLICY.replace("idle_hangup = 1s", "idle_hangup = 30s"))
    await r.queue(1)
    r.start()
    await r.until(lambda: not r.queued() and r.mgr.fsm.phase.value == "linger", what="linger")
    asked = r.mgr.policy_driver.asked                            # the loop asks only while the line is down
    os.killpg(r.mgr.calls.line.pppd.pid, signal.SIGKILL)
    await r.until(lambda: r.mgr.state == "down", what="down after pppd died")
    # ppp0's going (netlink) may end the call before pppd's exit is reaped and logged
    await r.until(lambda: lines(caplog, "pppd=exited, status=-9, cause=killed(SIGKILL)"), what="pppd's exit")
    assert lines(caplog, "state=IDLE, reason=ppp0-down") or lines(caplog, "state=IDLE, reason=pppd-exit(-9")
    assert r.mgr.fsm.failed_dials == 0 and len(r.sink.messages) == 1
    await r.until(lambda: r.mgr.policy_driver.asked > asked, what="the policy asked after the call")
    assert r.mgr.policy_driver.decision.dial is False            # empty queue: the policy does not redial
    assert r.mgr.state == "down"
    await r.stop()


async def test_ppp0_flapping_ends_the_call_once(rig, caplog):
    r = rig(policy=POLICY.replace("idle_hangup = 1s", "idle_hangup = 30s"))
    await r.queue(1)
    r.start()
    await r.until(lambda: not r.queued() and r.mgr.fsm.phase.value == "linger", what="linger")
    r.world.run_in(r.world.edge_ns, ["ip", "link", "set", "ppp0", "down"], check=True)
    r.world.run_in(r.world.edge_ns, ["ip", "link", "set", "ppp0", "up"], check=False)
    await r.until(lambda: r.mgr.state == "down" and not r.mgr.calls.line.pppd.running, what="down")
    assert lines(caplog, "state=IDLE, reason=ppp0-down")
    assert len(r.sink.messages) == 1 and r.queued() == []
    await r.stop()


@pytest.mark.parametrize("code", [459, 458])
def test_isp_refusing_etrn_is_reported_and_the_line_still_idles_down(world, edge_daemon, code):
    """The real relay answers ETRN 458/459: reported (log, status), the mail it holds stays
    there, our outbound mail went out in the same call, and the line idles down."""
    w = world(with_isp=True, isp={"etrn_reply": code})
    w.inject_held_mail("alice@edge.example")
    daemon = edge_daemon(w, policy=POLICY.replace("idle_hangup = 1s", "idle_hangup = 2s"))
    daemon.start()
    daemon.sendmail("From: bob@edge.example\nTo: carol@remote1.example\nSubject: out\n\nhello\n")
    daemon.until(lambda: daemon.status()["last_etrn"], 20, "etrn")
    daemon.until(lambda: daemon.status()["link"]["state"] == "down", 20, "idle hang-up")
    st = daemon.status()
    assert st["last_etrn"]["ok"] is False and st["last_etrn"]["replies"][0]["code"] == code
    assert f"etrn=edge.example, reply={code}" in daemon.log.read_text()
    assert [e["reply"] for e in w.relay_log("etrn")] == [code]
    # the relay's 250 comes before its onward send to the sink (a task of its own): wait for the sink
    sunk = daemon.until(lambda: w.sink_messages(), 20, "the relay's onward delivery to the sink")
    assert st["queue"]["count"] == 0 and [m["rcpts"] for m in sunk] == [["carol@remote1.example"]]
    assert len(w.held_messages()) == 1 and daemon.maildir() == []   # still held at the ISP, not lost
    assert st["link"]["failed_dials"] == 0


def test_isp_refusing_auth_defers_without_bounce_or_redial_then_delivers(world, edge_daemon):
    """AUTH refused (535 5.7.8) is a temporary failure of the site: the mail stays queued
    (deferred, 4.7.8, next attempt after the backoff), no bounce, the call idles down and
    the policy does not redial at once; once the ISP takes our AUTH again, a call delivers it."""
    w = world(with_isp=True, isp={"refuse_auth": True})
    daemon = edge_daemon(w, policy=POLICY.replace("idle_hangup = 1s", "idle_hangup = 2s"))
    daemon.start()
    daemon.sendmail("From: bob@edge.example\nTo: carol@remote1.example\nSubject: via the ISP\n\nhello\n")
    asked = asked_while_up(daemon)
    daemon.until(lambda: w.relay_log("auth"), 20, "our AUTH at the relay")
    daemon.until(lambda: daemon.status()["link"]["state"] == "down", 20, "idle hang-up")
    auths = w.relay_log("auth")
    assert [(a["user"], a["ok"], a["tls"], a["refused_by_fault"]) for a in auths] == [("edge", False, True, True)]
    st = daemon.status()
    assert (st["queue"]["count"], st["queue"]["expensive"], st["queue"]["due"]) == (1, 1, 0)
    assert st["queue"]["next_due"] > time.time() + 60          # deferred by the backoff, not due again at once
    assert st["link"]["failed_dials"] == 0                      # the call worked; the ISP said no
    log = daemon.log.read_text()
    deferred = [ln for ln in log.splitlines() if "to=<carol@remote1.example>" in ln]
    assert len(deferred) == 1 and "dsn=4.7.8" in deferred[0] and "stat=Deferred" in deferred[0], deferred
    assert "report=" not in log and daemon.maildir() == []     # no DSN, no bounce
    assert "secret" not in log
    decided = asked_after(daemon, asked)                        # the policy, asked after the call: no redial loop
    assert decided["dial"] is False and decided["queued"] == 0, decided
    assert daemon.status()["link"]["state"] == "down"
    assert daemon.log.read_text().count("link: state=DIALING") == 1
    assert w.sink_messages() == [] and w.relay_log("relay") == []

    w.relay_faults(refuse_auth=False)                           # the ISP fixed its accounts: call again
    daemon.cli("edgemail", "link", "dial")
    sunk = daemon.until(lambda: w.sink_messages(), 20, "delivery on the next call")
    assert [m["rcpts"] for m in sunk] == [["carol@remote1.example"]]
    daemon.until(lambda: daemon.status()["queue"]["count"] == 0, 10, "the queue emptied")
    daemon.until(lambda: daemon.status()["link"]["state"] == "down", 20, "idle hang-up")
    relayed = daemon.until(lambda: w.relay_log("relay"), 10, "the relay's log of its onward send")
    assert [(r["auth"], r["tls"], r["status"]) for r in relayed] == [("edge", True, "sent")]
    assert daemon.log.read_text().count("link: state=DIALING") == 2


def test_busy_then_success_with_the_whole_daemon(world, edge_daemon):
    """The real daemon (runner, smtpc over ppp0 with STARTTLS and AUTH, link manager): the
    first dial meets BUSY, the retry connects, the ISP relay takes the mail, the line idles
    down after one call."""
    w = world(with_isp=True, modem={"busy": 1})
    daemon = edge_daemon(w, policy=POLICY.replace("idle_hangup = 1s", "idle_hangup = 2s"),
                         overrides={"link": {"dial_retries": 2}})
    daemon.start()
    daemon.sendmail("From: bob@edge.example\nTo: carol@remote1.example\nSubject: busy\n\nhello\n")
    sunk = daemon.until(lambda: w.sink_messages(), 30, "delivery through the relay")
    daemon.until(lambda: daemon.status()["link"]["state"] == "down", 20, "idle hang-up")
    log = daemon.log.read_text()
    assert [m["rcpts"] for m in sunk] == [["carol@remote1.example"]]
    assert "result=BUSY" in log and log.count("link: state=DIALING, reason=") == 1, log[-3000:]
    st = daemon.status()
    assert st["queue"]["count"] == 0 and st["link"]["failed_dials"] == 0
    relayed = daemon.until(lambda: w.relay_log("relay"), 10, "the relay's log of its onward send")
    assert [(r["auth"], r["tls"], r["status"]) for r in relayed] == [("edge", True, "sent")]


def test_carrier_loss_during_data_with_the_whole_daemon(world, edge_daemon):
    """The modem loses carrier while our SMTP client is in DATA to the ISP relay: the message
    stays queued (deferred, no bounce), the relay never took it, the line grows no backoff;
    the next call delivers it exactly once."""
    w = world(with_isp=True, link={"down_bps": 200_000, "up_bps": 200_000, "delay_ms": 10})
    daemon = edge_daemon(w, policy=POLICY.replace("idle_hangup = 1s", "idle_hangup = 2s"))
    daemon.start()
    line = "The quick brown fox jumps over the lazy dog, again and again and again.\n"
    daemon.sendmail("From: bob@edge.example\nTo: carol@remote1.example\nSubject: big\n\n" + line * 4000)
    daemon.until(lambda: daemon.status()["link"]["state"] == "up", 20, "the policy's dial")
    daemon.until(lambda: w.modem_control("status")["counters"]["up_bytes"] > 60_000, 20, "DATA under way")
    w.modem_control("drop", mode="soft")
    # the call's end, not state "down": the policy may redial for the deferred mail at once
    daemon.until(lambda: "link: call=ended" in daemon.log.read_text(), 20, "the call's end")
    daemon.until(lambda: "stat=Deferred" in daemon.log.read_text(), 20, "the attempt deferred")
    st = daemon.status()
    assert st["queue"]["count"] == 1 and st["link"]["failed_dials"] == 0
    assert w.sink_messages() == [] and w.relay_log("relay") == []      # the relay never took it
    assert daemon.maildir() == [] and "report=" not in daemon.log.read_text()   # no bounce

    w.modem_control("link", down_bps=2_000_000, up_bps=2_000_000, delay_ms=5)
    daemon.cli("edgemail", "link", "dial")
    sunk = daemon.until(lambda: w.sink_messages(), 30, "delivery on the next call")
    daemon.until(lambda: daemon.status()["queue"]["count"] == 0, 10, "the queue emptied")
    assert [m["rcpts"] for m in sunk] == [["carol@remote1.example"]]
    relayed = daemon.until(lambda: w.relay_log("relay"), 10, "the relay's log of its onward send")
    assert [r["status"] for r in relayed] == ["sent"]      # exactly once


def test_failed_dial_backs_off_and_keeps_the_mail_with_the_whole_daemon(world, edge_daemon):
    """The real daemon: a failed dial (NO DIALTONE) is a backoff: the mail stays queued,
    nothing bounces, status and explain say why.  (The retry after the backoff, 60 s in
    the daemon, is the stand-in port's case above, with a 1 s backoff.)"""
    w = world(with_isp=True, modem={"result": "NO DIALTONE"})
    daemon = edge_daemon(w, policy=POLICY)
    daemon.start()
    daemon.sendmail("From: bob@edge.example\nTo: carol@remote1.example\nSubject: backoff\n\nhello\n")
    daemon.until(lambda: daemon.status()["link"]["state"] == "backoff", 20, "backoff")
    st = daemon.status()
    assert st["link"]["failed_dials"] == 1 and st["queue"]["count"] == 1
    assert "state=BACKOFF, reason=NO DIALTONE" in daemon.log.read_text()
    assert "backing off after 1 failed dial" in daemon.cli("edgemail", "link", "explain").stdout.decode()
    assert w.sink_messages() == [] and daemon.maildir() == [] and "report=" not in daemon.log.read_text()


def asked_while_up(daemon) -> int:
    """How often the daemon's loop has asked the policy, read while a call is up
    (the loop asks only while the line is down: any later ask is after the call)."""
    st = daemon.until(lambda: (s := daemon.status())["link"]["state"] == "up" and s, 20, "the line up")
    return st["policy"]["asked"]


def asked_after(daemon, asked: int) -> dict:
    """The policy's first decision after `asked` (a positive event: it was asked)."""
    return daemon.until(lambda: (p := daemon.status()["policy"])["asked"] > asked and p, 20,
                        "the policy asked after the call")


def _pppd_pid(daemon) -> int:
    started = [ln for ln in daemon.log.read_text().splitlines() if "link: pppd=started, pid=" in ln]
    return int(started[-1].split("pid=")[1].split(",")[0])


def test_pppd_dying_and_ppp0_flapping_with_the_whole_daemon(world, edge_daemon):
    """The real daemon, lingering after delivery: pppd killed ends the call (the
    policy does not redial for an empty queue); on a second call, mail queued while
    the line lingers goes out on that call (no third call), and ppp0 set down and
    up under it ends the call without a redial.  Nothing is lost either time."""
    w = world(with_isp=True)
    daemon = edge_daemon(w, policy=POLICY.replace("idle_hangup = 1s", "idle_hangup = 30s"))
    daemon.start()
    daemon.sendmail("From: bob@edge.example\nTo: carol@remote1.example\nSubject: one\n\nhello\n")
    daemon.until(lambda: w.sink_messages() and daemon.status()["queue"]["count"] == 0, 30, "delivery")
    pid = _pppd_pid(daemon)
    asked = asked_while_up(daemon)
    os.kill(pid, signal.SIGKILL)
    daemon.until(lambda: daemon.status()["link"]["state"] == "down", 20, "down after pppd died")
    assert "pppd=exited, status=-9, cause=killed(SIGKILL)" in daemon.log.read_text()
    assert asked_after(daemon, asked)["dial"] is False            # empty queue: no redial
    assert daemon.status()["link"]["state"] == "down"
    assert daemon.status()["link"]["failed_dials"] == 0

    daemon.cli("edgemail", "link", "dial")
    daemon.until(lambda: daemon.status()["link"]["state"] == "up", 20, "the second call")
    daemon.sendmail("From: bob@edge.example\nTo: carol@remote1.example\nSubject: two\n\nhello\n")
    daemon.until(lambda: len(w.sink_messages()) == 2, 30, "the second delivery")
    asked = asked_while_up(daemon)
    w.run_in(w.edge_ns, ["ip", "link", "set", "ppp0", "down"], check=True)
    w.run_in(w.edge_ns, ["ip", "link", "set", "ppp0", "up"], check=False)
    daemon.until(lambda: daemon.status()["link"]["state"] == "down", 20, "down after the flap")
    assert asked_after(daemon, asked)["dial"] is False            # the flap ended the call, no redial
    log = daemon.log.read_text()
    assert daemon.status()["link"]["state"] == "down"
    assert log.count("link: state=DIALING, reason=") == 2, log[-3000:]   # the policy's and ours
    assert daemon.status()["queue"]["count"] == 0 and len(w.sink_messages()) == 2
