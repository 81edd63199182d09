"""clock.py - time, injected.

Two clocks, kept apart (STYLE.md "Time"):

* wall time, an aware UTC ``datetime`` (or POSIX seconds), for queue stamps,
  expiry and the delays in log lines;
* monotonic time, for timeouts, dial deadlines and idle hang-up.

Cores never read a clock: drivers pass ``now`` in.  Drivers get a ``Clock``
so tests can pass a ``FakeClock`` and run a day in milliseconds.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from datetime import datetime, timezone
from typing import Protocol


class Clock(Protocol):
    def wall(self) -> float:
        """POSIX seconds (UTC)."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never goes back."""

    async def sleep(self, seconds: float) -> None:
        """Sleep on this clock."""


class SystemClock:
    """The real clocks."""

    def wall(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """A clock that moves only when told to; ``advance`` wakes sleepers in
    deadline order."""

    def __init__(self, wall: float = 1_700_000_000.0, monotonic: float = 1000.0) -> None:
        self._wall = wall
        self._mono = monotonic
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._changed = asyncio.Condition()   # bound to a loop at first use

    def wall(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._mono + max(0.0, seconds), next(self._seq), fut))
        await self._notify()
        await fut

    def deadlines(self) -> list[float]:
        """When each task sleeping on this clock wakes (monotonic), soonest first."""
        return sorted(when for when, _, fut in self._sleepers if not fut.done())

    async def wait_for_sleepers(self, n: int = 1, *, timeout: float = 10.0) -> list[float]:
        """Wait (in real time, at most TIMEOUT) until N or more tasks sleep on this
        clock; their deadlines.  Tests use it instead of sleeping and peeking:
        ``await clock.wait_for_sleepers(1); clock.advance(...)``.  Raises
        TimeoutError naming how many were seen."""
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: len(self.deadlines()) >= n)
        except TimeoutError:
            raise TimeoutError(f"{len(self.deadlines())} sleepers on the clock after {timeout}s, "
                               f"waited for {n}") from None
        return self.deadlines()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def advance(self, seconds: float) -> None:
        target = self._mono + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            when, _, fut = heapq.heappop(self._sleepers)
            self._wall += when - self._mono
            self._mono = when
            if not fut.done():
                fut.set_result(None)
        self._wall += target - self._mono
        self._mono = target

    def jump_wall(self, seconds: float) -> None:
        """Move wall time only (NTP stepping the clock after the first call)."""
        self._wall += seconds


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=timezone.utc)
