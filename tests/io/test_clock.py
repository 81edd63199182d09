"""FakeClock's public waiting: tests wait for sleepers instead of sleeping and peeking."""

import asyncio

import pytest

from edgemail.clock import FakeClock


async def test_wait_for_sleepers_returns_their_deadlines_and_advance_wakes_them():
    clock = FakeClock(monotonic=100.0)
    woke = []

    async def sleeper(n):
        await clock.sleep(n)
        woke.append(n)

    tasks = [asyncio.create_task(sleeper(n)) for n in (30, 10)]
    assert await clock.wait_for_sleepers(2) == [110.0, 130.0]
    clock.advance(10)
    await asyncio.sleep(0)
    assert woke == [10] and clock.deadlines() == [130.0]
    clock.advance(20)
    await asyncio.gather(*tasks)
    assert woke == [10, 30] and clock.deadlines() == []


async def test_wait_for_sleepers_times_out_saying_how_many():
    clock = FakeClock()
    task = asyncio.create_task(clock.sleep(5))
    with pytest.raises(TimeoutError, match="1 sleepers on the clock after 0.05s, waited for 2"):
        await clock.wait_for_sleepers(2, timeout=0.05)
    clock.advance(5)
    await task
