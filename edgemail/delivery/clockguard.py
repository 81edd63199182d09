"""delivery/clockguard.py - notices a step of the wall clock before any decision uses it (DRIVER).

NAME
    clockguard - ClockGuard(clock, store, path, on_step): clocksteps.ClockSteps
    fed with the real clocks, persisted in the spool

SYNOPSIS
    guard = ClockGuard(clock, store, os.path.join(spool, "clocksteps.json"),
                       on_step=runner.clock_stepped, spawn=runner.tasks.spawn)
    guard.check() -> step | None     # before every decision: timers, turns, selections
    guard.view(entry) -> entry       # the entry with its wall stamps rebased
    guard.attempted_since(entry)     # attempted after the last step it saw?

DESCRIPTION
    ``check`` compares the wall and monotonic clocks with the last time it
    looked (spool.schedule.detect_jump: more than DEFAULT_JUMP_LIMIT
    seconds apart is a step, not drift).  On a step it records the step
    for every queued message (ClockSteps.stepped), logs clock_stepped once,
    saves clocksteps.json in the spool (write_atomically, off the loop, in a
    task given to ``spawn``: the Runner's TaskSet, so idle() waits for it) and
    calls ``on_step(step)`` (the Runner moves the link-up time, clears the
    host status and plans the DSN timers again).  The Runner's parts read
    entries through ``view``, so after a step of +1 year nothing looks a
    year old and after -1 year nothing waits a year.

    The check is made where decisions are made (the background loop's
    wake-ups, every message's turn, every queue run's selection), so a step
    is always seen before the stamps it moved are used.  A step while the
    daemon was not running is not seen (monotonic time starts again at
    boot); every return still follows a delivery attempt (outcome.py).

FAILURES
    clocksteps.json unreadable: a warning (runner_warning), the runner
    starts without the steps it held; not saved: a warning, the steps hold
    in memory.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Callable, Coroutine

from edgemail import maillog
from edgemail.delivery.clocksteps import ClockSteps, from_data, to_data
from link.fileio import write_atomically

log = logging.getLogger("edgemail.runner")


class ClockGuard:
    """Clock steps seen by this daemon, applied to the queue (see the module docstring)."""

    def __init__(self, clock, store, path: str, *, on_step: Callable[[float], None],
                 spawn: Callable[[Coroutine[Any, Any, Any]], object]) -> None:
        self.clock, self.store, self.path = clock, store, path
        self.on_step, self.spawn = on_step, spawn
        self.steps = self._load()
        self.steps.prune(store.qids())

    def check(self) -> float | None:
        """Look at both clocks; on a step, rebase the queue.  The step or None."""
        step = self.steps.observe(self.clock.wall(), self.clock.monotonic())
        if step is None:
            return None
        entries = self.store.entries()
        self.steps.prune(e.qid for e in entries)
        n = self.steps.stepped(step, ((e.qid, e.attempts) for e in entries))
        log.warning(maillog.clock_stepped(step, n))
        self._save_later()
        self.on_step(step)
        return step

    def view(self, entry):
        return self.steps.view(entry)

    def attempted_since(self, entry) -> bool:
        return self.steps.attempted_since(entry.qid, entry.attempts)

    def _load(self) -> ClockSteps:
        try:
            with open(self.path, encoding="utf-8") as f:
                return from_data(json.load(f))
        except FileNotFoundError:
            return ClockSteps()
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning(maillog.runner_warning(f"{self.path} unreadable, clock steps start empty: {exc}"))
            return ClockSteps()

    def _save_later(self) -> None:
        self.spawn(self._save(json.dumps(to_data(self.steps))))

    async def _save(self, text: str) -> None:
        await asyncio.to_thread(self._write, text)

    def _write(self, text: str) -> None:
        try:
            write_atomically(self.path, text)
        except OSError as exc:
            log.warning(maillog.runner_warning(f"cannot save {self.path}: {exc}"))
