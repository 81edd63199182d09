"""edgemail.daemon.mtaport (the MTA side of the link port) on a real Store and Runner:
demand counts only due mail on expensive routes, the link-up run reaches the
smart host, stop_run cuts without backoff, ETRN goes to link.etrn_host with our
host name, inbound sessions are counted on ISP-facing listeners only."""

from __future__ import annotations

import asyncio
import os
import smtplib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgemail.clock import FakeClock
from edgemail.envelope import RcptStatus
from edgemail.daemon.mtaport import MtaPort
from edgemail.smtpd.listener import SmtpListener
from runner_helpers import HoldingPeer, make_cfg, make_runner, make_store, submit, until
from test_etrn import server as etrn_server
from upstream import upstream_factory  # noqa: F401  (fixture)


ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def clock():
    return FakeClock()


def rig(cfg, clock, **kw):
    store = make_store(cfg, clock)
    runner = make_runner(cfg, store, clock)
    return store, runner, MtaPort(cfg, store, runner, clock=clock, **kw)


async def test_demand_counts_due_expensive_mail_and_urgent(example_config, clock):
    cfg = make_cfg(example_config, routes={"hold.test": "hold"})
    store, runner, port = rig(cfg, clock)
    assert port.queue_summary().queued == 0
    await submit(store, ["bob@edge.example"])                 # local: cheap, not link demand
    await submit(store, ["x@hold.test"])                      # hold: waits for someone's ETRN
    await submit(store, ["far@x.test"])
    clock.advance(30)
    await submit(store, ["boss@y.test"], precedence=100)      # Precedence: urgent
    s = port.queue_summary()
    assert (s.queued, s.urgent, s.expensive, s.total) == (2, 1, 2, 4), s
    assert s.oldest_age_s == pytest.approx(30, abs=1)
    assert s.as_dict()["count"] == 4


async def test_deferred_mail_is_not_due_until_its_next_attempt(example_config, clock):
    cfg = make_cfg(example_config)                            # smart host 127.0.0.1:1: refused
    store, runner, port = rig(cfg, clock)
    q = await submit(store, ["far@x.test"])
    report = await port.run_queue()
    assert report.deferred == 1 and store.get(q).next_attempt > clock.wall()
    s = port.queue_summary()
    assert s.queued == 0 and s.expensive == 1 and s.next_due == store.get(q).next_attempt
    woke = []
    watcher = asyncio.create_task(port.watch(lambda: woke.append(clock.wall())))
    await clock.wait_for_sleepers(1)                          # the watcher is asleep on the clock
    clock.advance(s.next_due - clock.wall() + 1)
    await until(lambda: woke)
    watcher.cancel()
    assert port.queue_summary().queued == 1


async def test_link_up_run_delivers_to_the_smart_host(example_config, clock, upstream_factory):
    up = await upstream_factory()
    cfg = make_cfg(example_config, SmartHost=f"[127.0.0.1]:{up.port}")
    store, runner, port = rig(cfg, clock)
    await submit(store, ["far@x.test"])
    runner.hosts.record("dead.example", clock.wall(), False, dsn="4.4.1", text="refused")   # an earlier call
    report = await port.run_queue()                           # the link-up run clears it (once)
    assert "dead.example" not in runner.hosts.entries and not hasattr(port, "clear_host_status")
    assert report.sent == 1 and [m.rcpt_tos for m in up.messages] == [["far@x.test"]]
    assert store.entries() == [] and port.queue_summary().queued == 0


async def test_a_routing_bug_is_said_with_its_traceback_and_makes_no_call(example_config, clock, caplog):
    cfg = make_cfg(example_config)
    store, runner, port = rig(cfg, clock)
    await submit(store, ["far@x.test"])
    await submit(store, ["near@y.test"])
    route = runner.router.route

    def broken(address):                                      # a bug in routing, for one address
        if address == "far@x.test":
            raise RuntimeError("routing bug")
        return route(address)
    runner.router.route = broken
    s = port.queue_summary()
    assert (s.queued, s.expensive) == (1, 1), s               # the bug's message makes no call
    said = [r for r in caplog.records if "cannot route for the link demand" in r.getMessage()]
    assert said and said[0].levelname == "ERROR" and said[0].exc_info is not None


async def test_a_second_run_on_the_call_sends_what_is_due_and_keeps_host_status(
        example_config, clock, upstream_factory, caplog):
    """MailWaiting's run (run_due): the new mail goes; mail a failed host left deferred
    earlier in the call is not retried, and the host status is not cleared."""
    caplog.set_level("INFO", logger="edgemail.runner")
    up = await upstream_factory()
    cfg = make_cfg(example_config, SmartHost=f"[127.0.0.1]:{up.port}")
    store, runner, port = rig(cfg, clock)
    old = await submit(store, ["far@x.test"])
    await store.update(old, {"far@x.test": deferred_attempt(clock)}, next_attempt=clock.wall() + 900)
    runner.hosts.record("dead.example", clock.wall(), False, dsn="4.4.1", text="refused")  # earlier in this call
    new = await submit(store, ["near@y.test"])
    report = await port.run_due()
    assert report.sent == 1 and [m.rcpt_tos for m in up.messages] == [["near@y.test"]]
    assert [e.qid for e in store.entries()] == [old] and new != old
    assert "dead.example" in runner.hosts.entries
    assert any("reason=mail-waiting" in r.getMessage() for r in caplog.records)


def deferred_attempt(clock):
    from edgemail.envelope import Attempt
    return Attempt(RcptStatus.DEFERRED, "4.4.1", "connect failed", "x", clock.wall())


async def test_stop_run_cuts_the_transfer_without_backoff(example_config, clock):
    peer = await HoldingPeer().start()
    cfg = make_cfg(example_config, SmartHost=f"[127.0.0.1]:{peer.port}")
    store, runner, port = rig(cfg, clock)
    q = await submit(store, ["far@x.test"])
    run = asyncio.create_task(port.run_queue())
    try:
        await peer.holding(1)                                 # the transfer waits for its reply
        assert runner.in_flight == 1
        port.stop_run()
        report = await run
    finally:
        await peer.close()
    assert report.cut == 1 and report.sent == 0
    e = store.get(q)
    assert e.attempts == 0 and e.rcpt_status["far@x.test"] is RcptStatus.QUEUED
    assert port.queue_summary().queued == 1                   # still due: the next call takes it


async def test_etrn_goes_to_the_configured_isp_with_our_name(example_config, clock):
    srv, p, seen = await etrn_server({"edge.example": "250 2.0.0 Queuing for node edge.example started"})
    async with srv:
        cfg = make_cfg(example_config, link={"etrn_host": f"127.0.0.1:{p}"})
        _, _, port = rig(cfg, clock)
        (r,) = await port.etrn(("edge.example",))
    assert (r.domain, r.code, r.ok) == ("edge.example", 250, True)
    assert seen[:2] == ["EHLO gw.edge.example", "ETRN edge.example"]


async def test_etrn_without_an_isp_host_says_so(example_config, clock):
    cfg = make_cfg(example_config, link={"etrn_host": ""})
    _, _, port = rig(cfg, clock)
    (r,) = await port.etrn(("edge.example",))
    assert r.code == 0 and "etrn_host" in r.text


async def test_inbound_sessions_counted_on_isp_facing_listeners_only(example_config, clock):
    cfg = make_cfg(example_config, listen=[
        {"name": "lan", "address": "127.0.0.1", "port": 0, "strict": False},
        {"name": "wan", "address": "127.0.0.1", "port": 0, "strict": True}])
    store = make_store(cfg, clock)
    runner = make_runner(cfg, store, clock)
    listeners = [SmtpListener(cfg, lst, store) for lst in cfg.listeners]
    for lst in listeners:
        await lst.start()
    port = MtaPort(cfg, store, runner, listeners=listeners, clock=clock)
    try:
        assert port.inbound_active() == 0
        lan = await asyncio.to_thread(smtplib.SMTP, "127.0.0.1", listeners[0].port)
        assert port.inbound_active() == 0
        wan = await asyncio.to_thread(smtplib.SMTP, "127.0.0.1", listeners[1].port)
        await until(lambda: port.inbound_active() == 1)
        await asyncio.to_thread(wan.quit)
        await until(lambda: port.inbound_active() == 0)
        await asyncio.to_thread(lan.quit)
    finally:
        for lst in listeners:
            await lst.close()


async def test_wait_fresh_file_waits_for_this_calls_peer_dns_file(tmp_path):
    from edgemail.daemon.routewait import wait_fresh_file
    path = tmp_path / "resolv.conf"
    assert not await wait_fresh_file(str(path), 0.2)         # not there: gives up
    path.write_text("nameserver 192.0.2.53\n")
    os.utime(path, (time.time() - 3600, time.time() - 3600))                 # left from the last call
    assert not await wait_fresh_file(str(path), 0.2)

    async def pppd_writes_it():
        await asyncio.sleep(0.2)
        path.write_text("nameserver 192.0.2.53\n")
    writer = asyncio.create_task(pppd_writes_it())
    assert await wait_fresh_file(str(path), 5.0)
    await writer


WAIT_ROUTE = """
import asyncio, sys
from edgemail.daemon.routewait import wait_route
print(asyncio.run(wait_route(sys.argv[1:], 0.3)))
"""


@pytest.mark.root
def test_wait_route_needs_every_first_hop(tmp_path):
    # in a namespace of our own: loopback is routable at once, the nameserver
    # behind "ppp0" only once the default route exists
    ns = f"emroute-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        probe = ["ip", "netns", "exec", ns, sys.executable, "-c", WAIT_ROUTE, "127.0.0.1", "192.0.2.53"]
        r = subprocess.run(probe, capture_output=True, text=True, timeout=30, cwd=ROOT)
        assert r.stdout.strip() == "False", r.stderr
        assert "no route to 192.0.2.53" in r.stderr
        subprocess.run(["ip", "-n", ns, "route", "add", "192.0.2.0/24", "dev", "lo"], check=True)
        r = subprocess.run(probe, capture_output=True, text=True, timeout=30, cwd=ROOT)
        assert r.stdout.strip() == "True", r.stderr
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
