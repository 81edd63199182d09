"""delivery/retryloop.py - the Runner's background loop: cheap retries and DSN timers, on the monotonic clock (DRIVER).

NAME
    retryloop - RetryLoop(clock, on_due=runner.on_commit, on_timer=runner.dsn_check)

SYNOPSIS
    loop = RetryLoop(clock, on_due=runner.on_commit, on_timer=runner.dsn_check,
                     on_wake=guard.check)
    loop.due(qid, when)                  # try QID's cheap jobs again at WHEN (wall time)
    loop.timer(qid, when)                # QID's next queuewarn/queuereturn decision at WHEN, or None
    await loop.run([(qid, next_attempt), ...])   # forever

DESCRIPTION
    Deferred deliveries on cheap routes (local, LAN relay, LMTP) are not
    waiting for the link, so nobody else would try them again: the
    MessageDriver puts them here (``due``, from outcome.decide's
    ``retry_at``) and the loop calls ``on_due(qid)`` once their time has
    come.  ``on_due`` is the Runner's on_commit, which delivers a message's
    cheap jobs and does nothing for one with none.  At start the loop takes
    every queued message at its next_attempt (cheap mail left over by the
    last run of the daemon).

    DSN timers: each queued message's next Timeout.queuewarn or
    Timeout.queuereturn decision (outcome.dsn_timer) is a timer of its own
    (``timer``; the Runner keeps them in the spool index's entries,
    spool/index.py Timers, not in a dict per message); when it is due the loop calls ``on_timer(qid)``, so a
    warning goes out when it is due, not at the next sweep.  The Runner
    plans them (at start one now for what fell due while it was down).

    Clock steps: a time is given as wall time and kept as a monotonic
    deadline (now_mono + when - now_wall, at the moment it is given), so a
    step of the wall clock (NTP at the first call, a box that booted at the
    epoch) neither fires every timer at once nor leaves one asleep for a
    year.  A new time wakes the loop only when it is earlier than the one
    the loop sleeps towards, so a commit (its DSN timer hours ahead) costs
    no walk of every timer; a wake-up walks them once.  ``on_wake`` runs first on every wake-up (the Runner's clock
    guard: it notices a step and rebases the queue's wall stamps).

NEVER
    Delivers or decides anything itself, or sleeps on wall time.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Iterable

INF = float("inf")


class RetryLoop:
    """Due times of cheap retries and of DSN decisions (see the module docstring)."""

    def __init__(self, clock, *, on_due: Callable[[str], None], on_timer: Callable[[str], None],
                 on_wake: Callable[[], object] = lambda: None, timers: Any = None) -> None:
        self.clock, self.on_due, self.on_timer, self.on_wake = clock, on_due, on_timer, on_wake
        self._due: dict[str, float] = {}        # qid -> monotonic deadline
        #: qid -> monotonic deadline: a dict, or the spool index's Timers (no memory of ours per message)
        self._timers: Any = {} if timers is None else timers
        self._next = INF                          # the earliest deadline the loop knows of
        self._kick = asyncio.Event()

    def _deadline(self, when: float) -> float:
        return self.clock.monotonic() + (when - self.clock.wall())

    def due(self, qid: str, when: float) -> None:
        """Try QID's cheap jobs again at WHEN, wall time (replaces an earlier time)."""
        self._set(self._due, qid, self._deadline(when))

    def timer(self, qid: str, when: float | None) -> None:
        """QID's next DSN decision at WHEN (wall time); None: no timer."""
        if when is None:
            self._timers.pop(qid, None)      # the loop may wake for it: it finds nothing due
        else:
            self._set(self._timers, qid, self._deadline(when))

    def _set(self, deadlines: Any, qid: str, deadline: float) -> None:
        """Only a deadline before the loop's next wake-up wakes it (issue 15:
        a commit's timer, hours ahead, costs no walk of every timer)."""
        deadlines[qid] = deadline
        if deadline < self._next:
            self._next = deadline
            self._kick.set()

    def timers(self) -> dict[str, float]:
        """QID -> wall time of its DSN timer as things stand (status, tests)."""
        offset = self.clock.wall() - self.clock.monotonic()
        return {qid: mono + offset for qid, mono in self._timers.items()}

    async def run(self, left_over: Iterable[tuple[str, float]] = ()) -> None:
        """Forever: hand due messages to on_due, due DSN decisions to on_timer."""
        for qid, when in left_over:
            self.due(qid, when)
        while True:
            self._kick.clear()
            self.on_wake()
            now = self.clock.monotonic()
            due, next_due = self._fire(self._due, now)
            timers, next_timer = self._fire(self._timers, now)
            self._next = min(next_due, next_timer)
            for qid in due:
                self.on_due(qid)
            for qid in timers:
                self.on_timer(qid)
            await self._wait(None if self._next == INF else max(0.0, self._next - now))

    @staticmethod
    def _fire(deadlines: Any, now: float) -> tuple[list[str], float]:
        """The qids due at NOW (taken out) and the earliest deadline left: one pass."""
        fired, earliest = [], INF
        for qid, t in deadlines.items():
            if t <= now:
                fired.append(qid)
            elif t < earliest:
                earliest = t
        for qid in fired:
            del deadlines[qid]
        return fired, earliest

    async def _wait(self, seconds: float | None) -> None:
        """Sleep SECONDS on the clock (None: until kicked), or until a new time kicks."""
        kick = asyncio.ensure_future(self._kick.wait())
        waits: set[asyncio.Future] = {kick}
        if seconds is not None:
            waits.add(asyncio.ensure_future(self.clock.sleep(seconds)))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in waits:
                fut.cancel()
