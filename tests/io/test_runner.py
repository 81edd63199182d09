"""Runner against real peers on loopback: cheap routes at once, queue runs,
filters, order, limits, collapsed requests, the smart host with STARTTLS + AUTH."""

from __future__ import annotations

import asyncio
import os

import pytest

from edgemail.clock import FakeClock
from edgemail.envelope import RcptStatus
from edgemail.smtpc.tls import TlsPolicy
from test_smtpc_session import cert  # noqa: F401  (fixture: openssl self-signed)
from runner_helpers import MSG, HoldingPeer, make_cfg, make_runner, make_store, maildir, submit, until
from upstream import Faults, upstream_factory  # noqa: F401  (fixture)


@pytest.fixture
def clock():
    return FakeClock()


async def smarthost_setup(example_config, upstream_factory, clock, faults=None, **over):
    up = await upstream_factory(faults=faults or Faults())
    cfg = make_cfg(example_config, SmartHost=f"[127.0.0.1]:{up.port}", **over)
    store = make_store(cfg, clock)
    return up, cfg, store, make_runner(cfg, store, clock)


async def test_local_user_lands_in_maildir_right_after_commit(example_config, clock):
    cfg = make_cfg(example_config)
    store = make_store(cfg, clock)
    runner = make_runner(cfg, store, clock)
    qid = await submit(store, ["bob@edge.example"])
    runner.on_commit(qid)
    await runner.idle()
    (got,) = maildir(cfg, "bob")
    assert got.startswith(b"Return-Path: <alice@edge.example>\nDelivered-To: bob@edge.example\n")
    assert b"hello" in got
    assert store.entries() == []


async def test_commit_of_mail_that_waits_for_the_link_spawns_nothing(example_config, clock):
    cfg = make_cfg(example_config)
    store = make_store(cfg, clock)
    runner = make_runner(cfg, store, clock)
    q = await submit(store, ["y@far.test"])
    runner.on_commit(q)
    assert len(runner.tasks) == 0               # no task for nothing cheap to do
    runner.on_commit(await submit(store, ["bob@edge.example", "z@far.test"]))
    assert len(runner.tasks) == 1
    await runner.idle()
    assert len(maildir(cfg, "bob")) == 1 and store.get(q).attempts == 0


async def test_alias_to_two_users_finishes_the_envelope_recipient(example_config, clock):
    cfg = make_cfg(example_config)
    store = make_store(cfg, clock)
    runner = make_runner(cfg, store, clock)
    runner.on_commit(await submit(store, ["office@edge.example"]))
    await runner.idle()
    assert len(maildir(cfg, "alice")) == 1 and len(maildir(cfg, "bob")) == 1
    assert store.entries() == []


async def test_lan_relay_at_once_and_expensive_waits_for_queue_run(example_config, upstream_factory, clock):
    lan = await upstream_factory()
    up, cfg, store, runner = await smarthost_setup(
        example_config, upstream_factory, clock,
        routes={"lan.test": f"relay:[127.0.0.1]:{lan.port}"})
    q1 = await submit(store, ["x@lan.test", "y@far.test"])
    runner.on_commit(q1)
    await runner.idle()
    assert [m.rcpt_tos for m in lan.messages] == [["x@lan.test"]]
    assert up.stats.connections == 0 and up.messages == []          # expensive: held for a run
    assert store.get(q1).rcpt_status["y@far.test"] is RcptStatus.QUEUED
    report = await runner.queue_run(reason="test")
    assert [m.rcpt_tos for m in up.messages] == [["y@far.test"]]
    assert report.sent == 1 and store.entries() == []


async def test_cheap_relay_by_name_only_from_hosts_file(example_config, upstream_factory, clock, tmp_path):
    lan = await upstream_factory()
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 lanbox.example lanbox\n")
    cfg = make_cfg(example_config, routes={"lan.test": f"relay:[lanbox]:{lan.port}",
                                           "other.test": f"relay:[nosuchbox]:{lan.port}"})
    store = make_store(cfg, clock)
    runner = make_runner(cfg, store, clock, hosts_file=str(hosts))
    q = await submit(store, ["a@lan.test", "b@other.test"])
    runner.on_commit(q)
    await runner.idle()
    assert [m.rcpt_tos for m in lan.messages] == [["a@lan.test"]]
    e = store.get(q)
    assert e.rcpt_status["b@other.test"] is RcptStatus.DEFERRED
    assert "never use DNS" in e.last_reply["b@other.test"]
    assert runner.resolver.queries == 0


async def test_smart_host_with_starttls_and_auth(example_config, upstream_factory, clock, cert, tmp_path):
    up = await upstream_factory(tls_cert=cert[0], tls_key=cert[1], credentials={"edge": "s3cret"})
    auth = tmp_path / "smarthost.auth"
    auth.write_text("edge s3cret\n")
    os.chmod(auth, 0o600)
    cfg = make_cfg(example_config, SmartHost=f"[127.0.0.1]:{up.port}", SmartHostAuthFile=str(auth))
    store = make_store(cfg, clock)
    runner = make_runner(cfg, store, clock, smarthost_tls=TlsPolicy("may", verify=True, cafile=cert[0]))
    await submit(store, ["far@remote.test"])
    report = await runner.queue_run()
    (m,) = up.messages
    assert m.tls and m.auth == "edge" and m.rcpt_tos == ["far@remote.test"]
    assert report.sent == 1


async def test_filters_R_S_I_with_negation(example_config, upstream_factory, clock):
    up, cfg, store, runner = await smarthost_setup(example_config, upstream_factory, clock)
    qa = await submit(store, ["a@one.test"], sender="alice@edge.example")
    qb = await submit(store, ["b@two.test"], sender="bob@edge.example")
    qc = await submit(store, ["c@two.test"], sender="carol@edge.example")
    await runner.queue_run(["R@two.test", "!Sbob"])
    assert [m.rcpt_tos for m in up.messages] == [["c@two.test"]]
    await runner.queue_run([f"I{qa}"])
    assert [m.rcpt_tos for m in up.messages][-1] == ["a@one.test"]
    assert [e.qid for e in store.entries()] == [qb]
    with pytest.raises(ValueError):
        await runner.queue_run(["Xnonsense"])
    assert qc not in [e.qid for e in store.entries()]


async def test_run_order_is_priority(example_config, upstream_factory, clock):
    up, cfg, store, runner = await smarthost_setup(example_config, upstream_factory, clock,
                                                   ConnectionCacheSize=0)
    await submit(store, ["big@x.test"], data=MSG + b"x" * 68 + b"\r\n" * 1 + (b"y" * 68 + b"\r\n") * 280)
    await submit(store, ["bulk@x.test"], precedence=-60)
    await submit(store, ["urgent@x.test"], precedence=100)
    await submit(store, ["two@x.test", "three@x.test"])
    await runner.queue_run()
    # priority = size - class*1800 + nrcpts*30000, lowest first:
    # urgent -150k, big (20 KB) 50k, two recipients 60k, bulk 138k
    got = [m.rcpt_tos[0] for m in up.messages]
    assert got == ["urgent@x.test", "big@x.test", "two@x.test", "bulk@x.test"]


@pytest.mark.parametrize("cache, connections", [(2, 2), (1, 1)])
async def test_run_delivers_side_by_side_over_cached_connections(example_config, clock, cache, connections):
    """The run's first contact with the host goes alone; then two deliveries
    in flight (ConnectionCacheSize caps it); the next run reuses every cached
    connection."""
    peer = await HoldingPeer().start()
    cfg = make_cfg(example_config, SmartHost=f"[127.0.0.1]:{peer.port}", ConnectionCacheSize=cache)
    store = make_store(cfg, clock)
    runner = make_runner(cfg, store, clock)
    for i in range(5):
        await submit(store, [f"r{i}@x.test"])
    run = asyncio.create_task(runner.queue_run())
    try:
        await peer.holding(1)                 # the first contact, alone ...
        await until(lambda: runner.in_flight == min(cache, 2))   # ... the next one waiting for it
        assert peer.connections == 1
        peer.release()
        await peer.holding(connections)       # then side by side, one connection each
        assert peer.connections == connections
        peer.release(everything=True)
        report = await run
        assert report.sent == 5 and store.entries() == [] and len(peer.messages) == 5
        for i in range(3):
            await submit(store, [f"s{i}@x.test"])
        assert (await runner.queue_run()).sent == 3 and peer.connections == connections
        assert len(runner.smtp._cache) == connections
    finally:
        await peer.close()


async def test_max_queue_run_size(example_config, upstream_factory, clock):
    up, cfg, store, runner = await smarthost_setup(example_config, upstream_factory, clock,
                                                   MaxQueueRunSize=2)
    for i in range(5):
        await submit(store, [f"r{i}@x.test"])
    report = await runner.queue_run()
    assert report.selected == 2 and len(up.messages) == 2 and len(store.entries()) == 3


class TickingClock(FakeClock):
    """Monotonic time moves one second per reading: a run's budget is then
    spent after a known number of checks."""

    def monotonic(self) -> float:
        self._mono += 1.0
        return self._mono


async def test_time_budget_stops_starting_deliveries(example_config, upstream_factory):
    clock = TickingClock()
    up, cfg, store, runner = await smarthost_setup(example_config, upstream_factory, clock,
                                                   queue_run_budget=2.5)
    for i in range(5):
        await submit(store, [f"r{i}@x.test"])
    report = await runner.queue_run()
    assert report.stopped == "budget"
    assert 0 < len(up.messages) < 5 and len(store.entries()) == 5 - len(up.messages)


async def test_requests_during_a_run_collapse_into_one_follow_up(example_config, clock):
    peer = await HoldingPeer().start()
    cfg = make_cfg(example_config, SmartHost=f"[127.0.0.1]:{peer.port}")
    store = make_store(cfg, clock)
    runner = make_runner(cfg, store, clock)
    await submit(store, ["a@x.test"])
    first = asyncio.create_task(runner.queue_run())
    try:
        await peer.holding(1)                 # the first run is in flight, and stays so
        await submit(store, ["b@x.test"])
        more = [asyncio.create_task(runner.queue_run()) for _ in range(5)]
        # created before the release, the five start (and join) before the
        # held reply can reach the first run: that needs socket I/O
        peer.release(everything=True)
        reports = await asyncio.gather(first, *more)
    finally:
        await peer.close()
    assert runner.runs == 2
    assert len({r.run for r in reports[1:]}) == 1 and reports[1].sent == 1
    assert peer.messages == [["a@x.test"], ["b@x.test"]]


async def test_smtp_250_does_not_wait_for_delivery(example_config, clock):
    import smtplib
    from edgemail.smtpd.listener import SmtpListener
    peer = await HoldingPeer().start()
    cfg = make_cfg(example_config, routes={"lan.test": f"relay:[127.0.0.1]:{peer.port}"})
    store = make_store(cfg, clock)
    runner = make_runner(cfg, store, clock)
    listener = SmtpListener(cfg, cfg.listeners[0], store, on_commit=runner.on_commit)
    await listener.start()
    try:
        def send():
            with smtplib.SMTP("127.0.0.1", listener.port, local_hostname="till.lan.test", timeout=30) as s:
                return s.sendmail("alice@edge.example", ["x@lan.test"], MSG)
        assert await asyncio.to_thread(send) == {}
        # the 250 came back; the relay holds its reply until released
        await peer.holding(1)
        assert peer.messages == [] and len(store.entries()) == 1
        peer.release(everything=True)
        await runner.idle()
        assert peer.messages == [["x@lan.test"]] and store.entries() == []
    finally:
        await listener.close()
        await peer.close()


async def test_background_loop_retries_deferred_cheap_delivery_on_schedule(example_config, upstream_factory, clock):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = make_cfg(example_config, routes={"lan.test": f"relay:[127.0.0.1]:{port}"})
    store = make_store(cfg, clock)
    runner = make_runner(cfg, store, clock)
    loop = asyncio.create_task(runner.run())
    try:
        q = await submit(store, ["x@lan.test"])
        runner.on_commit(q)
        await runner.idle()
        entry = store.get(q)
        assert entry.rcpt_status["x@lan.test"] is RcptStatus.DEFERRED
        assert entry.next_attempt == clock.wall() + cfg.retry.min_backoff
        lan = await upstream_factory(port=port)
        due = clock.monotonic() + cfg.retry.min_backoff
        await until(lambda: clock.deadlines() == [due])     # the loop sleeps until the retry is due
        clock.advance(cfg.retry.min_backoff - 1)
        assert clock.deadlines() == [due] and len(runner.tasks) == 0   # not yet due: still asleep
        clock.advance(1)
        await until(lambda: lan.messages)
        await runner.idle()
        assert store.entries() == []
    finally:
        loop.cancel()


async def test_count_link_up_time_only(example_config, clock):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = make_cfg(example_config, SmartHost=f"[127.0.0.1]:{port}",
                   retry={"count_link_up_time_only": True})
    store = make_store(cfg, clock)
    runner = make_runner(cfg, store, clock)
    q = await submit(store, ["far@x.test"], notify=("FAILURE",))
    clock.advance(cfg.Timeout.queuereturn["normal"] + 3600)     # link down all that time
    await runner.queue_run()                                   # an attempt, refused: not returned
    await runner.idle()
    assert store.get(q).rcpt_status["far@x.test"] is RcptStatus.DEFERRED
    await runner.link_up(iface="ppp0")
    clock.advance(3600)
    assert runner.linkup.since(store.get(q).created, clock.wall()) == 3600
    again = make_runner(cfg, store, clock)                     # persisted in the spool
    assert again.linkup.up_since == runner.linkup.up_since
    clock.advance(cfg.Timeout.queuereturn["normal"])
    await runner.queue_run()
    await runner.idle()
    assert q not in {e.qid for e in store.entries()}


async def test_count_offline_time_false_a_broken_modem_week_ages_nothing(example_config, clock):
    """Issue 14 §5: a week of dials the modem could not even place ages no
    mail (no warning timer, an attempt after it is deferred, not returned);
    BUSY dials count, and past queuereturn the next failed attempt returns it."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = make_cfg(example_config, SmartHost=f"[127.0.0.1]:{port}",
                   retry={"count_offline_time": False, "offline_after": "2h"},
                   Timeout={"queuewarn": "4h", "queuereturn": "5d"})
    store = make_store(cfg, clock)
    runner = make_runner(cfg, store, clock)
    q = await submit(store, ["far@x.test"], notify=("FAILURE", "DELAY"))
    for _ in range(7 * 24):                                   # the modem silent to AT, hourly
        runner.line_tried(False)
        clock.advance(3600)
    assert runner.messages.link_up_s(store.get(q), clock.wall()) == 0.0
    assert runner.retries.timers().get(q) is None              # no warning, no return is due
    await runner.queue_run()                                   # an attempt, refused: not returned
    await runner.idle()
    assert store.get(q).rcpt_status["far@x.test"] is RcptStatus.DEFERRED
    for _ in range(5):                                         # the modem works, the ISP is BUSY
        runner.line_tried(True)
        clock.advance(3600)
    aged = runner.messages.link_up_s(store.get(q), clock.wall())
    assert aged == 5 * 3600 and runner.retries.timers().get(q) is not None   # the warning's timer
    for _ in range(5 * 24):
        runner.line_tried(True)
        clock.advance(3600)
    await runner.idle()                                        # the saves
    again = make_runner(cfg, store, clock)                     # persisted in the spool
    assert again.linkup.vouched == runner.linkup.vouched
    await runner.queue_run()
    await runner.idle()
    assert q not in {e.qid for e in store.entries()}           # returned after its attempt


async def test_urgent_mail_committed_during_a_run_goes_before_the_rest_of_it(example_config, upstream_factory,
                                                                              clock, monkeypatch):
    """Issue 14 (urgent first): the run's two deliveries in flight are held at
    DATA; urgent mail committed meanwhile is started in the first free slot,
    before the run's other selected messages; selection puts urgent mail first
    too, whatever its size (sendmail's ClassFactor alone would not)."""
    import upstream as upmod
    gate, plain_slow = asyncio.Event(), upmod._Handler._slow

    async def slow(self, what):
        if what == "DATA":
            await gate.wait()
        await plain_slow(self, what)
    monkeypatch.setattr(upmod._Handler, "_slow", slow)
    up = await upstream_factory()
    cfg = make_cfg(example_config, SmartHost=f"[127.0.0.1]:{up.port}", ConnectionCacheSize=2)
    store = make_store(cfg, clock)
    runner = make_runner(cfg, store, clock)
    normal = [await submit(store, [f"n{k}@far.test"]) for k in range(4)]
    big_urgent = await submit(store, ["big@far.test"], precedence=100, data=MSG + b"x" * 300_000 + b"\r\n")
    assert [i.qid for i in runner.queue_runs.select([], flush=False)][0] == big_urgent
    run = asyncio.create_task(runner.queue_run(reason="test"))
    await until(lambda: runner.in_flight == 2)
    urgent = await submit(store, ["u@far.test"], precedence=100)
    runner.on_commit(urgent)
    gate.set()
    report = await run
    order = [m.rcpt_tos[0].split("@")[0] for m in up.messages]
    assert report.sent == 6 and order[0] in ("big", "n0") and set(order[:2]) == {"big", "n0"}, order
    assert order[2] == "u", f"urgent mail waited behind the run: {order}"
    assert normal


@pytest.mark.parametrize("state,sent", [("down", 0), ("backoff", 0), ("up", 1), ("dialing", 1)])
async def test_queue_run_leaves_expensive_routes_for_the_link(example_config, upstream_factory, clock, state, sent):
    # invariant 3: with a link manager, `sendmail -q` while the line is down
    # does not touch expensive routes (the policy decides when to dial)
    from runner_helpers import FakeLink
    up = await upstream_factory()
    cfg = make_cfg(example_config, SmartHost=f"[127.0.0.1]:{up.port}")
    store = make_store(cfg, clock)
    runner = make_runner(cfg, store, clock, link=FakeLink(state))
    qid = await submit(store, ["y@far.test"])
    report = await runner.queue_run(reason="test")
    assert report.sent == sent and len(up.messages) == sent
    assert report.link_wait == (sent == 0)
    if not sent:
        assert store.get(qid).rcpt_status["y@far.test"] is RcptStatus.QUEUED
        assert store.get(qid).attempts == 0                     # no attempt counted, no backoff
        assert "expensive routes wait for the link" in report.message()


async def test_link_down_drops_cached_smtp_sessions(example_config, upstream_factory, clock):
    # the line took the TCP sessions with it: the next call must not probe them
    up, cfg, store, runner = await smarthost_setup(example_config, upstream_factory, clock)
    await submit(store, ["y@far.test"])
    report = await runner.queue_run(reason="test")
    assert report.sent == 1 and len(runner.smtp._cache) == 1      # kept for reuse while up
    await runner.link_down()
    assert len(runner.smtp._cache) == 0


@pytest.mark.parametrize("step", [365 * 86400.0, -365 * 86400.0], ids=["plus-a-year", "minus-a-year"])
async def test_a_clock_step_neither_bounces_nor_stalls_a_retry(example_config, upstream_factory, clock,
                                                                caplog, step):
    # issue 16 §11: +1 year used to expire everything at once (4.4.7, never
    # tried); -1 year left the retry asleep for a year
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = make_cfg(example_config, routes={"lan.test": f"relay:[127.0.0.1]:{port}"})
    store = make_store(cfg, clock)
    runner = make_runner(cfg, store, clock)
    loop = asyncio.create_task(runner.run())
    try:
        q = await submit(store, ["x@lan.test"], notify=("FAILURE", "DELAY"))
        runner.on_commit(q)
        await runner.idle()
        assert store.get(q).attempts == 1
        await clock.wait_for_sleepers(1)
        clock.jump_wall(step)                           # NTP steps the clock
        lan = await upstream_factory(port=port)
        clock.advance(cfg.retry.min_backoff)            # the retry's time, on the monotonic clock
        await until(lambda: lan.messages)
        await runner.idle()
        assert store.entries() == [] and maildir(cfg, "alice") == [], "delivered, no DSN"
    finally:
        loop.cancel()
    stepped = [r.getMessage() for r in caplog.records if "wall clock stepped" in r.getMessage()]
    assert stepped == [f"runner: wall clock stepped, step={'+' if step > 0 else '-'}31536000s, rebased=1"]


async def test_after_a_step_ages_and_timers_keep_their_meaning(example_config, clock):
    cfg = make_cfg(example_config, SmartHost=f"[127.0.0.1]:{1}")
    store = make_store(cfg, clock)
    runner = make_runner(cfg, store, clock)
    q = await submit(store, ["far@x.test"], notify=("FAILURE",))
    runner.on_commit(q)
    warn_at = runner.retries.timers()[q]
    assert warn_at == clock.wall() + cfg.Timeout.queuewarn["normal"]
    runner.guard.check()
    clock.jump_wall(365 * 86400.0)
    await runner.queue_run()                          # tried: refused, deferred, not returned
    await runner.idle()
    e = runner.guard.view(store.get(q))
    assert e.rcpt_status["far@x.test"] is RcptStatus.DEFERRED and e.attempts == 1, e
    assert clock.wall() - e.created < 60 and e.next_attempt - clock.wall() == cfg.retry.min_backoff
    assert runner.retries.timers()[q] == pytest.approx(warn_at + 365 * 86400.0)
    again = make_runner(cfg, store, clock)            # clocksteps.json in the spool
    assert again.guard.view(store.get(q)).created == e.created


async def test_long_line_queued_before_reencoding_is_sent_not_bounced(example_config, upstream_factory, clock):
    """A spool file written before accept-time re-encoding (17 §1) with a
    2,000-octet line: re-encoded at delivery and relayed, not bounced 5.6.0."""
    import email
    lan = await upstream_factory()
    cfg = make_cfg(example_config, routes={"lan.test": f"relay:[127.0.0.1]:{lan.port}"})
    store = make_store(cfg, clock)
    runner = make_runner(cfg, store, clock)
    body = b"x" * 2000 + b"\r\n"
    q = await submit(store, ["ops@lan.test"], data=b"Subject: old\r\n\r\n" + body)
    runner.on_commit(q)
    await runner.idle()
    (got,) = lan.messages
    assert max(len(line) for line in got.content.split(b"\r\n")) <= 998
    assert email.message_from_bytes(got.content).get_payload(decode=True) == body
    assert store.entries() == []
