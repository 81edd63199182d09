"""Runner failure paths against real peers: DialDelay, host status, bounces and
delay warnings as DSNs, expiry, stop_run, MX via the test DNS server, hold
routes and ETRN, RCPT-time refusal."""

from __future__ import annotations

import asyncio
import smtplib
import socket

import pytest

from dnsserver import DnsServer
from edgemail.clock import FakeClock
from edgemail.config.model import DnsConfig
from edgemail.envelope import RcptStatus
from edgemail.delivery.mx import MxResolver
from edgemail.smtpd.listener import SmtpListener
from runner_helpers import FakeLink, HoldingPeer, make_cfg, make_runner, make_store, maildir, submit, until
from upstream import Faults, Upstream, upstream_factory  # noqa: F401  (fixture)


@pytest.fixture
def clock():
    return FakeClock()


def refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dsn_reports(cfg, user="alice") -> list[bytes]:
    return [m for m in maildir(cfg, user) if b"multipart/report" in m]


# ------------------------------------------------------------------ DialDelay

async def test_lan_route_refused_fails_fast_without_dialdelay(example_config, clock):
    port = refused_port()
    cfg = make_cfg(example_config, routes={"lan.test": f"relay:[127.0.0.1]:{port}"})
    store = make_store(cfg, clock)
    runner = make_runner(cfg, store, clock, link=FakeLink(state="dialing"))
    q = await submit(store, ["x@lan.test"])
    runner.on_commit(q)
    await runner.idle()        # a DialDelay sleep on the FakeClock would never return
    assert store.get(q).rcpt_status["x@lan.test"] is RcptStatus.DEFERRED
    assert runner.link.waits == [] and clock.deadlines() == []


async def test_dialdelay_route_waits_for_link_up_then_succeeds(example_config, clock, upstream_factory):
    port = refused_port()
    started = []

    async def link_comes_up():
        started.append(await upstream_factory(port=port))

    link = FakeLink(state="dialing", on_wait=link_comes_up)
    cfg = make_cfg(example_config, SmartHost=f"[127.0.0.1]:{port}",
                   routes={"*": {"route": "smarthost", "expensive": True, "dialdelay": True}})
    store = make_store(cfg, clock)
    runner = make_runner(cfg, store, clock, link=link)
    await submit(store, ["far@x.test"])
    report = await runner.queue_run()
    assert link.waits == [cfg.DialDelay] and link.holds
    assert report.sent == 1 and [m.rcpt_tos for m in started[0].messages] == [["far@x.test"]]


async def test_dialdelay_sleeps_when_link_is_not_coming_up(example_config, clock):
    port = refused_port()
    cfg = make_cfg(example_config, SmartHost=f"[127.0.0.1]:{port}",
                   routes={"*": {"route": "smarthost", "expensive": True, "dialdelay": True}})
    store = make_store(cfg, clock)
    runner = make_runner(cfg, store, clock)
    q = await submit(store, ["far@x.test"])
    run = asyncio.create_task(runner.queue_run())
    assert await clock.wait_for_sleepers(1) == [clock.monotonic() + cfg.DialDelay]
    clock.advance(cfg.DialDelay)
    report = await run
    assert report.deferred == 1 and store.get(q).attempts == 1


# ------------------------------------------------------------------ host status

async def test_host_status_skips_within_run_and_link_up_clears_it(example_config, clock):
    port = refused_port()
    cfg = make_cfg(example_config, SmartHost=f"[127.0.0.1]:{port}")
    store = make_store(cfg, clock)
    runner = make_runner(cfg, store, clock, link=FakeLink())
    q1 = await submit(store, ["a@x.test"])
    q2 = await submit(store, ["b@x.test"])
    report = await runner.queue_run()
    assert report.deferred == 2 and report.skipped_hosts == ["127.0.0.1"]
    replies = [store.get(q1).last_reply["a@x.test"], store.get(q2).last_reply["b@x.test"]]
    # one message met the refused port; the other (whichever the run took second:
    # equal priority, queue ids may wrap) was skipped by the host status
    assert sorted("host status" in r for r in replies) == [False, True], replies
    assert "127.0.0.1" in runner.hoststat()
    up = await Upstream(port=port).start()
    try:
        again = await runner.queue_run()         # still skipped: Timeout.hoststatus
        assert again.sent == 0 and up.stats.connections == 0
        report = await runner.link_up(iface="ppp0")
        assert report.sent == 2 and store.entries() == []
        assert {m.rcpt_tos[0] for m in up.messages} == {"a@x.test", "b@x.test"}
        assert q1 and "127.0.0.1" in runner.hoststat()     # now recorded as OK
    finally:
        await up.close()


async def test_purgestat(example_config, clock):
    cfg = make_cfg(example_config, SmartHost=f"[127.0.0.1]:{refused_port()}")
    store = make_store(cfg, clock)
    runner = make_runner(cfg, store, clock)
    await submit(store, ["a@x.test"])
    await runner.queue_run()
    assert await runner.purgestat() == []             # not expired yet
    clock.advance(cfg.Timeout.hoststatus + 1)
    assert await runner.purgestat() == ["127.0.0.1"]
    assert "127.0.0.1" not in runner.hoststat()


# ------------------------------------------------------------------ DSNs

async def test_one_rcpt_refused_bounces_that_one_to_local_sender(example_config, clock, upstream_factory):
    up = await upstream_factory(faults=Faults(rcpt_replies={"bad@x.test": "550 5.1.1 no such user"}))
    cfg = make_cfg(example_config, SmartHost=f"[127.0.0.1]:{up.port}")
    store = make_store(cfg, clock)
    runner = make_runner(cfg, store, clock)
    await submit(store, ["good@x.test", "bad@x.test"])
    report = await runner.queue_run()
    await runner.idle()
    assert report.sent == 1 and report.bounced == 1
    assert [m.rcpt_tos for m in up.messages] == [["good@x.test"]]
    (dsn,) = dsn_reports(cfg)
    assert dsn.startswith(b"Return-Path: <>\n")
    assert b"Final-Recipient: rfc822; bad@x.test" in dsn and b"Status: 5.1.1" in dsn
    assert b"good@x.test" not in dsn.split(b"message/delivery-status")[1].split(b"--")[0]
    assert store.entries() == []


async def test_delay_warning_only_for_notify_delay_and_once(example_config, clock):
    # issue 17 §6: each message's warning has its own timer (no sweep): it
    # goes out at Timeout.queuewarn, and says "4 hours", not the seconds waited
    cfg = make_cfg(example_config, SmartHost=f"[127.0.0.1]:{refused_port()}")
    store = make_store(cfg, clock)
    runner = make_runner(cfg, store, clock)
    loop = asyncio.create_task(runner.run())
    try:
        qd = await submit(store, ["d@x.test"], notify=("DELAY", "FAILURE"))
        runner.on_commit(qd)
        runner.on_commit(await submit(store, ["f@x.test"], notify=("FAILURE",)))
        warn = cfg.Timeout.queuewarn["normal"]
        assert warn == 4 * 3600
        (when,) = set(await clock.wait_for_sleepers(1))
        assert when == pytest.approx(clock.monotonic() + warn), "the loop sleeps until the warn time"
        clock.advance(warn - 1)
        await runner.idle()
        assert dsn_reports(cfg) == []
        clock.advance(1)
        await until(lambda: dsn_reports(cfg))
        await runner.idle()
        clock.advance(warn)
        await runner.idle()
        (warning,) = dsn_reports(cfg)
        assert b"Action: delayed" in warning and b"d@x.test" in warning and b"f@x.test" not in warning
        assert b"Subject: Warning: could not send message for past 4 hours\n" in warning
        assert b"Will keep trying until message is 5 days old" in warning
        assert store.get(qd).warned
    finally:
        loop.cancel()


async def test_expiry_bounces_with_4_4_7_after_a_failed_attempt(example_config, clock):
    cfg = make_cfg(example_config, SmartHost=f"[127.0.0.1]:{refused_port()}")
    store = make_store(cfg, clock)
    runner = make_runner(cfg, store, clock)
    qid = await submit(store, ["gone@x.test"], notify=("FAILURE",))
    clock.advance(cfg.Timeout.queuereturn["normal"] + 1)
    runner.dsn_check(qid)                      # the timer: waiting for the link, not attempted
    await runner.idle()
    assert dsn_reports(cfg) == [] and store.get(qid).attempts == 0
    await runner.queue_run()                   # the attempt fails: now it is returned
    await runner.idle()
    (dsn,) = dsn_reports(cfg)
    assert b"Status: 4.4.7" in dsn and b"Action: failed" in dsn
    assert b"Cannot send message for 5 days (Timeout.queuereturn); last attempt: " in dsn
    assert store.entries() == []


async def test_bounce_of_a_bounce_goes_to_postmaster_not_to_the_null_sender(example_config, clock, upstream_factory):
    up = await upstream_factory(faults=Faults(rcpt_replies={"x@x.test": "550 5.1.1 no"}))
    cfg = make_cfg(example_config, SmartHost=f"[127.0.0.1]:{up.port}")
    store = make_store(cfg, clock)
    runner = make_runner(cfg, store, clock)
    await submit(store, ["x@x.test"], sender="")
    await runner.queue_run()
    await runner.idle()
    assert dsn_reports(cfg, "alice") == []
    (double,) = dsn_reports(cfg, "admin")           # postmaster -> root -> admin (etc/aliases)
    assert b"Postmaster notify" in double


# ------------------------------------------------------------------ stop_run

async def test_stop_run_during_slow_transfer_defers_without_backoff(example_config, clock):
    peer = await HoldingPeer().start()
    cfg = make_cfg(example_config, SmartHost=f"[127.0.0.1]:{peer.port}")
    store = make_store(cfg, clock)
    runner = make_runner(cfg, store, clock)
    q = await submit(store, ["far@x.test"])
    q2 = await submit(store, ["near@x.test"])
    before = store.get(q)
    run = asyncio.create_task(runner.queue_run())
    try:
        # both in flight: the first sent its message and waits for the reply
        # to its final dot, the second waits for the run's first contact with
        # the host to be over
        await peer.holding(1)
        await until(lambda: runner.in_flight == 2)
        assert runner.stop_run()
        report = await run
    finally:
        await peer.close()
    assert report.stopped == "stop" and report.cut == 2 and report.sent == 0
    after = store.get(q)
    assert after.attempts == before.attempts == 0 and store.get(q2).attempts == 0
    assert after.next_attempt == before.next_attempt and after.priority == before.priority
    assert after.rcpt_status["far@x.test"] is RcptStatus.QUEUED
    assert peer.connections == 1 and runner.in_flight == 0


# ------------------------------------------------------------------ MX via DNS

ZONES = {
    "ok.test": {"MX": [(10, "mx.ok.test")]},
    "mx.ok.test": {"A": ["127.0.0.1"]},
    "null.test": {"MX": [(0, ".")]},
    "held.test": {"MX": [(10, "mx.ok.test")]},
}


@pytest.fixture
async def dns():
    srv = await DnsServer(ZONES, servfail={"broken.test"}).start()
    yield srv
    await srv.close()


def mx_runner(cfg, store, clock, dns, tmp_path, port, **kw):
    resolver = MxResolver(DnsConfig(nameservers=("127.0.0.1",), port=dns.port, timeout=2.0),
                          cache_file=str(tmp_path / "dns.json"), clock=clock)
    return make_runner(cfg, store, clock, resolver=resolver, mx_port=port, **kw)


async def test_mx_route_against_dns_server(example_config, clock, upstream_factory, dns, tmp_path):
    up = await upstream_factory()
    cfg = make_cfg(example_config, routes={"*": {"route": "mx", "expensive": True}})
    store = make_store(cfg, clock)
    runner = mx_runner(cfg, store, clock, dns, tmp_path, up.port)
    qids = {}
    for domain in ("ok.test", "nx.test", "broken.test", "null.test"):
        qids[domain] = await submit(store, [f"u@{domain}"], notify=("FAILURE",))
        runner.on_commit(qids[domain])
    await runner.idle()
    assert dns.queries == []                     # accepting and cheap routes: no DNS
    report = await runner.queue_run()
    await runner.idle()
    assert [m.rcpt_tos for m in up.messages] == [["u@ok.test"]]
    assert report.sent == 1 and report.bounced == 2 and report.deferred == 1
    assert store.get(qids["broken.test"]).rcpt_status["u@broken.test"] is RcptStatus.DEFERRED
    statuses = sorted(line for m in dsn_reports(cfg) for line in m.split(b"\n") if line.startswith(b"Status:"))
    assert statuses == [b"Status: 5.1.10", b"Status: 5.1.2"]


async def test_hold_route_only_by_filtered_run_or_etrn(example_config, clock, upstream_factory, dns, tmp_path):
    up = await upstream_factory()
    cfg = make_cfg(example_config, routes={"held.test": "hold"})
    store = make_store(cfg, clock)
    runner = mx_runner(cfg, store, clock, dns, tmp_path, up.port)
    q = await submit(store, ["u@held.test"])
    runner.on_commit(q)
    await runner.idle()
    report = await runner.queue_run(flush=True)
    assert report.selected == 0 and up.messages == [] and dns.queries == []
    lst_cfg = cfg.listeners[0]
    listener = SmtpListener(cfg, lst_cfg, store, on_etrn=runner.etrn, on_commit=runner.on_commit)
    await listener.start()
    try:
        def etrn(node):
            with smtplib.SMTP("127.0.0.1", listener.port, local_hostname="lan.test") as s:
                s.ehlo()
                return s.docmd("ETRN", node)
        code, text = await asyncio.to_thread(etrn, "held.test")
        assert code == 253 and b"1 pending" in text
        await runner.idle()
        assert [m.rcpt_tos for m in up.messages] == [["u@held.test"]] and store.entries() == []
        code, _ = await asyncio.to_thread(etrn, "held.test")
        assert code == 251
    finally:
        await listener.close()


async def test_hold_route_by_filtered_queue_run(example_config, clock, upstream_factory, dns, tmp_path):
    up = await upstream_factory()
    cfg = make_cfg(example_config, routes={"held.test": "hold"})
    store = make_store(cfg, clock)
    runner = mx_runner(cfg, store, clock, dns, tmp_path, up.port)
    await submit(store, ["u@held.test"])
    report = await runner.queue_run(["R@held.test"])
    assert report.sent == 1 and [m.rcpt_tos for m in up.messages] == [["u@held.test"]]


# ------------------------------------------------------------------ RCPT time

async def test_unknown_local_user_refused_at_rcpt(example_config, clock):
    cfg = make_cfg(example_config, local={"users": ["alice", "bob", "admin"], "create_mailboxes": False})
    store = make_store(cfg, clock)
    runner = make_runner(cfg, store, clock)
    listener = SmtpListener(cfg, cfg.listeners[0], store, on_commit=runner.on_commit,
                            check_rcpt=runner.check_rcpt)
    await listener.start()
    try:
        def send():
            with smtplib.SMTP("127.0.0.1", listener.port, local_hostname="lan.test") as s:
                s.ehlo()
                s.mail("alice@edge.example")
                # not "nobody": it is in passwd (local.system_users)
                return s.rcpt("nosuchuser@edge.example"), s.rcpt("bob@edge.example")
        (c1, t1), (c2, _) = await asyncio.to_thread(send)
        assert c1 == 550 and t1.startswith(b"5.1.1") and c2 == 250
    finally:
        await listener.close()


# ------------------------------------------------------------------ DNS timeout without a link (issue 16 §12)

@pytest.fixture
def silent_dns():
    """A nameserver on loopback that never answers: every query times out."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


@pytest.mark.parametrize("link,expensive,cut", [(None, True, False), ("up", False, False), ("up", True, True)],
                         ids=["no-link-manager", "cheap-mx-route", "link-route-is-cut"])
async def test_dns_timeout_is_a_link_failure_only_on_a_route_for_the_link(
        example_config, clock, upstream_factory, silent_dns, tmp_path, caplog, link, expensive, cut):
    from runner_helpers import FakeLink
    caplog.set_level("INFO", logger="edgemail")
    up = await upstream_factory()
    cfg = make_cfg(example_config, SmartHost=f"[127.0.0.1]:{up.port}", QueueSortOrder="time",
                   routes={"slow.test": {"route": "mx", "expensive": expensive}})
    store = make_store(cfg, clock)
    resolver = MxResolver(DnsConfig(nameservers=("127.0.0.1",), port=silent_dns, timeout=0.5),
                          cache_file=str(tmp_path / "dns.json"), clock=clock)
    runner = make_runner(cfg, store, clock, resolver=resolver,
                         link=FakeLink(link) if link else None)
    slow = [await submit(store, [f"u{n}@slow.test"]) for n in range(2)]
    clock.advance(1)
    fine = [await submit(store, [f"v{n}@far.test"]) for n in range(2)]
    report = await runner.queue_run()
    if cut:      # the line's DNS is silent: the run stops, nothing counted, no backoff grows
        assert report.stopped == "link" and report.cut == 2 and up.messages == [], report.message()
        assert {store.get(q).attempts for q in slow + fine} == {0}
        said = [m for m in (r.getMessage() for r in caplog.records) if "slow.test" in m and "stat=" in m]
        assert said and all(f"timed out after 0.5s (no answer from 127.0.0.1:{silent_dns}): link down?" in m
                            for m in said), said
        return
    assert (report.stopped, report.deferred, report.sent, report.cut) == ("", 2, 2, 0), report.message()
    assert sorted(m.rcpt_tos[0] for m in up.messages) == ["v0@far.test", "v1@far.test"]
    assert {q for q in fine if q in {e.qid for e in store.entries()}} == set()
    for q in slow:
        e = store.get(q)
        (rcpt,) = e.envelope.recipients
        assert e.attempts == 1 and e.rcpt_status[rcpt.address] is RcptStatus.DEFERRED, e
        said = e.last_reply[rcpt.address]
        assert said == f"DNS lookup of slow.test/MX timed out after 0.5s (no answer from 127.0.0.1:{silent_dns})", \
            "no link to blame (mode none, or a cheap route): the text says what happened, not 'link down?'"
        assert e.next_attempt > clock.wall(), e


# ------------------------------------------------------------------ addresses over the limits (a queue file no submission checked)

async def test_an_address_over_the_limits_in_a_queue_file_is_never_sent(example_config, clock, upstream_factory):
    up = await upstream_factory()
    cfg = make_cfg(example_config, SmartHost=f"[127.0.0.1]:{up.port}")
    store = make_store(cfg, clock)
    runner = make_runner(cfg, store, clock)
    long_local = await submit(store, ["x" * 5000 + "@far.test"])           # store.commit: no submission's checks
    long_label = await submit(store, ["u@" + "b" * 64 + ".far.test"])
    good = await submit(store, ["ok@far.test"])
    report = await runner.queue_run()
    assert [m.rcpt_tos for m in up.messages] == [["ok@far.test"]], "only the good address reached the smart host"
    assert good not in {e.qid for e in store.entries()} and report.sent == 1, report.message()
    for qid, why in ((long_local, "local part longer than 128 octets (5000)"),
                     (long_label, "of 64 octets, longer than 63")):
        e = store.get(qid)
        (said,) = e.last_reply.values()
        assert "recipient address not sent: " in said and why in said, said
