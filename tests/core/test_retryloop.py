"""delivery/retryloop.py: a deadline later than the one the loop sleeps
towards does not wake it (a commit's DSN timer costs no walk of every
timer); an earlier one does; what is due fires."""

from __future__ import annotations

import asyncio

from edgemail.clock import FakeClock
from edgemail.delivery.retryloop import RetryLoop


async def settle():
    for _ in range(20):
        await asyncio.sleep(0)


async def test_only_an_earlier_deadline_wakes_the_loop():
    clock, wakes, fired = FakeClock(), [], []
    loop = RetryLoop(clock, on_due=lambda q: fired.append(q), on_timer=lambda q: fired.append(q),
                     on_wake=lambda: wakes.append(1))
    loop.timer("a", clock.wall() + 100)
    task = asyncio.create_task(loop.run())
    await clock.wait_for_sleepers(1)
    woke = len(wakes)
    for n in range(50):                          # later timers: no wake-up
        loop.timer(f"later{n}", clock.wall() + 200 + n)
    await settle()
    assert len(wakes) == woke
    loop.due("b", clock.wall() + 10)             # earlier: one wake-up, to sleep towards it
    await settle()
    assert len(wakes) == woke + 1 and not fired
    clock.advance(10)
    await settle()
    assert fired == ["b"]
    clock.advance(90)
    await settle()
    assert fired == ["b", "a"]
    clock.advance(200)
    await settle()
    assert sorted(fired[2:]) == sorted(f"later{n}" for n in range(50)) and not loop.timers()
    task.cancel()


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
