"""delivery/retryloop.py - the Runner's background loop: cheap retries when due, a sweep now and then (DRIVER).

NAME
    retryloop - RetryLoop(clock, on_due=runner.on_commit, sweep=runner.sweep)

SYNOPSIS
    loop = RetryLoop(clock, on_due=runner.on_commit, sweep=runner.sweep)
    loop.due(qid, when)                  # try QID's cheap jobs again at WHEN (wall time)
    await loop.run([(qid, next_attempt), ...])   # forever; the list: mail left at start

DESCRIPTION
    Deferred deliveries on cheap routes (local, LAN relay, LMTP) are not
    waiting for the link, so nobody else would try them again: the
    MessageDriver puts them here (``due``, from outcome.decide's
    ``retry_at``) and the loop calls ``on_due(qid)`` once their time has
    come.  ``on_due`` is the Runner's on_commit, which delivers a message's
    cheap jobs and does nothing for one with none.  At start the loop takes
    every queued message at its next_attempt (cheap mail left over by the
    last run of the daemon).

    Every SWEEP_S the loop awaits ``sweep()`` (the Runner looks for
    messages to expire or warn about).  The loop sleeps on the injected
    clock until the next of those times; ``due`` wakes it to re-plan.

NEVER
    Delivers or decides anything itself.  Times are wall times; the sleep
    is on the clock's monotonic time, for the difference.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Iterable

from edgemail.clock import Clock

#: how often the background loop looks for due warnings and expired messages
SWEEP_S = 300.0


class RetryLoop:
    """Due times of cheap retries, and the sweep's cadence (see the module docstring)."""

    def __init__(self, clock: Clock, *, on_due: Callable[[str], None],
                 sweep: Callable[[], Awaitable[None]], sweep_s: float = SWEEP_S) -> None:
        self.clock, self.on_due, self.sweep, self.sweep_s = clock, on_due, sweep, sweep_s
        self._due: dict[str, float] = {}
        self._kick = asyncio.Event()

    def due(self, qid: str, when: float) -> None:
        """Try QID's cheap jobs again at WHEN (replaces an earlier time)."""
        self._due[qid] = when
        self._kick.set()

    async def run(self, left_over: Iterable[tuple[str, float]] = ()) -> None:
        """Forever: hand due messages to on_due, sweep every sweep_s."""
        self._due.update(left_over)
        next_sweep = self.clock.wall()
        while True:
            self._kick.clear()
            now = self.clock.wall()
            for qid in [q for q, t in self._due.items() if t <= now]:
                del self._due[qid]
                self.on_due(qid)
            if now >= next_sweep:
                await self.sweep()
                next_sweep = now + self.sweep_s
            wake = min([next_sweep, *self._due.values()])
            await self._wait(max(0.0, wake - now))

    async def _wait(self, seconds: float) -> None:
        """Sleep SECONDS on the clock, or until due() kicks."""
        kick = asyncio.ensure_future(self._kick.wait())
        sleep = asyncio.ensure_future(self.clock.sleep(seconds))
        try:
            await asyncio.wait({kick, sleep}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            kick.cancel()
            sleep.cancel()
