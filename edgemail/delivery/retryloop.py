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
    (``timer``); when it is due the loop calls ``on_timer(qid)``, so a
    warning goes out when it is due, not at the next sweep.  The Runner
    plans them (at start one now for what fell due while it was down).

    Clock steps: a time is given as wall time and kept as a monotonic
    deadline (now_mono + when - now_wall, at the moment it is given), so a
    step of the wall clock (NTP at the first call, a box that booted at the
    epoch) neither fires every timer at once nor leaves one asleep for a
    year.  ``on_wake`` runs first on every wake-up (the Runner's clock
    guard: it notices a step and rebases the queue's wall stamps).

COST
    Per message, not per queue: deadlines sit in heaps (_Deadlines), and a
    new deadline wakes the loop only when it comes before the wake-up
    already planned (a new message's DSN timer, days away, wakes nothing).

NEVER
    Delivers or decides anything itself, or sleeps on wall time.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from typing import Callable, Iterable


class RetryLoop:
    """Due times of cheap retries and of DSN decisions (see the module docstring)."""

    def __init__(self, clock, *, on_due: Callable[[str], None], on_timer: Callable[[str], None],
                 on_wake: Callable[[], object] = lambda: None) -> None:
        self.clock, self.on_due, self.on_timer, self.on_wake = clock, on_due, on_timer, on_wake
        self._due = _Deadlines()
        self._timers = _Deadlines()
        self._kick = asyncio.Event()
        #: the deadline the loop sleeps until (inf: none); None while it is awake
        self._asleep_until: float | None = None

    def _set(self, deadlines: "_Deadlines", qid: str, when: float) -> None:
        """Kick the loop only when the new deadline comes before its wake-up:
        a new message's timer, days away, costs no wake-up and no scan."""
        deadline = self._deadline(when)
        deadlines.set(qid, deadline)
        if self._asleep_until is not None and deadline < self._asleep_until:
            self._kick.set()

    def _deadline(self, when: float) -> float:
        return self.clock.monotonic() + (when - self.clock.wall())

    def due(self, qid: str, when: float) -> None:
        """Try QID's cheap jobs again at WHEN, wall time (replaces an earlier time)."""
        self._set(self._due, qid, when)

    def timer(self, qid: str, when: float | None) -> None:
        """QID's next DSN decision at WHEN (wall time); None: no timer."""
        if when is None:
            self._timers.discard(qid)       # a later wake-up than needed finds nothing
        else:
            self._set(self._timers, qid, when)

    def timers(self) -> dict[str, float]:
        """QID -> wall time of its DSN timer as things stand (status, tests)."""
        offset = self.clock.wall() - self.clock.monotonic()
        return {qid: mono + offset for qid, mono in self._timers.at.items()}

    async def run(self, left_over: Iterable[tuple[str, float]] = ()) -> None:
        """Forever: hand due messages to on_due, due DSN decisions to on_timer."""
        for qid, when in left_over:
            self.due(qid, when)
        while True:
            self._kick.clear()
            self._asleep_until = None
            self.on_wake()
            now = self.clock.monotonic()
            for qid in self._due.fire(now):
                self.on_due(qid)
            for qid in self._timers.fire(now):
                self.on_timer(qid)
            self._asleep_until = min(self._due.first(), self._timers.first())
            await self._wait(max(0.0, self._asleep_until - now) if self._asleep_until < math.inf else None)

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


class _Deadlines:
    """QID -> monotonic deadline (``at``, the truth), and a heap of
    (deadline, qid) beside it, so the loop finds what is due and its next
    wake-up without reading every queued message.  A replaced or removed
    deadline stays in the heap until it comes up (or the heap is rebuilt
    when stale entries outnumber live ones) and is skipped then."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def set(self, qid: str, deadline: float) -> None:
        self.at[qid] = deadline
        heapq.heappush(self._heap, (deadline, qid))
        if len(self._heap) > 2 * len(self.at) + 64:
            self._heap = [(t, q) for q, t in self.at.items()]
            heapq.heapify(self._heap)

    def discard(self, qid: str) -> None:
        self.at.pop(qid, None)

    def fire(self, now: float) -> list[str]:
        """The qids due at NOW, removed."""
        fired, heap = [], self._heap
        while heap and heap[0][0] <= now:
            t, qid = heapq.heappop(heap)
            if self.at.get(qid) == t:
                del self.at[qid]
                fired.append(qid)
        return fired

    def first(self) -> float:
        """The earliest live deadline (inf: none)."""
        heap = self._heap
        while heap and self.at.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else math.inf
