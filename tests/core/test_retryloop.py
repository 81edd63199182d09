"""The background loop's deadlines (delivery/retryloop.py) on a FakeClock:
what fires and when, and that a deadline later than the planned wake-up
costs no wake-up (issue 15 §3: every commit planned a DSN timer and woke
the loop, which then read every queued message)."""

import asyncio

from edgemail.clock import FakeClock
from edgemail.delivery.retryloop import RetryLoop, _Deadlines


async def settle(rounds: int = 20) -> None:
    """Let every ready callback run (no time passes)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def test_replaced_and_removed_deadlines_fire_once_at_their_last_time():
    clock = FakeClock()
    due, timers = [], []
    loop = RetryLoop(clock, on_due=due.append, on_timer=timers.append)
    task = asyncio.create_task(loop.run([("a", clock.wall() + 10)]))
    try:
        await clock.wait_for_sleepers(1)
        loop.due("a", clock.wall() + 30)            # replaces 10 (later: no wake-up needed)
        loop.timer("b", clock.wall() + 5)           # earlier than the planned wake-up
        loop.timer("b", None)                       # and removed again
        loop.timer("c", clock.wall() + 20)
        await settle()
        clock.advance(10)
        await settle()
        assert due == [] and timers == []
        clock.advance(10)
        await settle()
        assert timers == ["c"] and due == []
        clock.advance(10)
        await settle()
        assert due == ["a"] and timers == ["c"]
        assert loop.timers() == {}
    finally:
        task.cancel()


async def test_a_later_deadline_wakes_nothing_an_earlier_one_wakes_the_loop():
    clock = FakeClock()
    wakes = []
    loop = RetryLoop(clock, on_due=lambda qid: None, on_timer=lambda qid: None,
                     on_wake=lambda: wakes.append(clock.monotonic()))
    start = clock.monotonic()
    task = asyncio.create_task(loop.run([("a", clock.wall() + 100)]))
    try:
        assert await clock.wait_for_sleepers(1) == [start + 100]
        loop.timer("b", clock.wall() + 1000)
        await settle()
        assert len(wakes) == 1, "a deadline after the planned wake-up woke the loop"
        assert clock.deadlines() == [start + 100]
        loop.due("c", clock.wall() + 5)
        await settle()
        assert len(wakes) == 2
        assert clock.deadlines() == [start + 5]
        clock.advance(100)
        await settle()
        assert clock.deadlines() == [start + 1000]      # b was kept, a and c fired
    finally:
        task.cancel()


def test_deadlines_heap_stays_bounded_when_one_qid_is_replaced_often():
    d = _Deadlines()
    for i in range(10_000):
        d.set("a", float(i))
    d.set("b", 5.0)
    assert len(d._heap) <= 2 * 2 + 64 + 1
    assert d.first() == 5.0
    assert d.fire(100.0) == ["b"]
    assert d.first() == 9999.0
    assert d.fire(10_000.0) == ["a"] and d.first() == float("inf")
