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
