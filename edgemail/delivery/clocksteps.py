"""delivery/clocksteps.py - wall-clock steps and the queue's wall stamps (CORE).

NAME
    clocksteps - ClockSteps: detect a step of the wall clock, remember it
    per queued message, and show each entry with its stamps rebased

SYNOPSIS
    steps = ClockSteps(entries=None, limit=schedule.DEFAULT_JUMP_LIMIT)
    steps.observe(wall, mono) -> step | None          # spool.schedule.detect_jump
    steps.stepped(step, [(qid, attempts), ...]) -> n   # record it for what is queued
    steps.view(entry) -> entry                          # stamps rebased
    steps.attempted_since(qid, attempts) -> bool
    to_data(steps) / from_data(obj) -> plain JSON data (clocksteps.json in the spool)

DESCRIPTION
    The spool's stamps (created, the envelope's arrival, next_attempt, the
    last attempts) are wall times written when they happened.  When the
    wall clock is stepped (NTP after the first call on a box without an
    RTC, an admin's ``date -s``), those stamps are in the old frame: a step
    of +1 year makes every message a year old (expired at once), a step of
    -1 year puts every due time a year away.  The driver (clockguard.py)
    observes both clocks at every decision, and on a step records it for
    every queued message; ``view`` then moves that message's stamps with
    the clock (spool.schedule.rebase), so ages and due times mean what
    they meant before the step.  A next_attempt (and the last-attempt
    stamps) written after the step are in the new frame already: the
    attempt count at the step tells them apart.

NEVER
    Reads a clock or a file: the driver passes ``wall``/``mono`` in and
    persists ``to_data``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable

from edgemail.spool.schedule import DEFAULT_JUMP_LIMIT, detect_jump, rebase

@dataclass
class Rebase:
    """What the clock steps seen while one message was queued moved: its
    arrival stamps by ``offset`` (every step), its next attempt by
    ``due_offset`` (the steps since its last recorded attempt, whose count
    ``attempts`` was at the last step)."""

    offset: float
    due_offset: float
    attempts: int


class ClockSteps:
    """Wall-clock steps, detected and applied to queued messages (pure).

    ``observe(wall, mono)`` compares both clocks with the last observation
    and returns the step (``detect_jump``) or None; ``stepped(step,
    [(qid, attempts)])`` records it for every queued message; ``view(entry)``
    is the entry with its wall stamps rebased (created, arrival, next
    attempt and last attempts until it is attempted again), so ages and due
    times mean what they meant before the step.  ``attempted_since(qid,
    attempts)``: was the message attempted after the last step it saw?
    ``entries`` is plain data the runner persists; ``prune(qids)`` keeps
    only the messages still queued.
    """

    def __init__(self, entries: dict[str, Rebase] | None = None,
                 limit: float = DEFAULT_JUMP_LIMIT) -> None:
        self.entries: dict[str, Rebase] = dict(entries or {})
        self.limit = limit
        self._last: tuple[float, float] | None = None

    def observe(self, wall: float, mono: float) -> float | None:
        last, self._last = self._last, (wall, mono)
        if last is None:
            return None
        return detect_jump(last[0], last[1], wall, mono, self.limit)

    def stepped(self, step: float, queued: Iterable[tuple[str, int]]) -> int:
        """Record STEP for each (qid, attempts) queued; how many."""
        n = 0
        for qid, attempts in queued:
            r = self.entries.get(qid)
            if r is None:
                self.entries[qid] = Rebase(step, step, attempts)
            else:
                due = r.due_offset + step if r.attempts == attempts else step
                self.entries[qid] = Rebase(r.offset + step, due, attempts)
            n += 1
        return n

    def view(self, entry):
        """ENTRY (a spool QueueEntry, a dataclass) with its stamps rebased."""
        r = self.entries.get(entry.qid)
        if r is None:
            return entry
        env = replace(entry.envelope, arrived=rebase(entry.envelope.arrived, r.offset))
        if entry.attempts != r.attempts:       # attempted since: next_attempt is new
            return replace(entry, created=rebase(entry.created, r.offset), envelope=env)
        last = {k: replace(a, at=rebase(a.at, r.due_offset)) for k, a in entry.last_attempt.items()}
        return replace(entry, created=rebase(entry.created, r.offset), envelope=env,
                       next_attempt=rebase(entry.next_attempt, r.due_offset), last_attempt=last)

    def attempted_since(self, qid: str, attempts: int) -> bool:
        r = self.entries.get(qid)
        return r is None or attempts > r.attempts

    def prune(self, qids: Iterable[str]) -> None:
        keep = set(qids)
        self.entries = {q: r for q, r in self.entries.items() if q in keep}


def to_data(steps: ClockSteps) -> dict:
    return {"version": 1, "entries": {q: [r.offset, r.due_offset, r.attempts]
                                      for q, r in steps.entries.items()}}


def from_data(obj) -> ClockSteps:
    """clocksteps.json's content -> ClockSteps.  Raises ValueError (TypeError) when malformed."""
    entries = obj["entries"]
    if not isinstance(entries, dict):
        raise ValueError("entries is not an object")
    return ClockSteps({q: Rebase(float(o), float(d), int(n)) for q, (o, d, n) in entries.items()})

