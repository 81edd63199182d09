"""unitpoll.py - one more ETRN in the paid unit (the policy's unit_poll) (DRIVER around policy.py).

NAME
    unitpoll - UnitPolls: when the quiet line's last ETRN before a chargehup
    hang-up is due, and the poll it stands in for

SYNOPSIS
    polls = UnitPolls(clock)
    event = polls.tick(fsm, policy, demand_at)   # PollDue when due now, else None
    polls.wake_at()                              # monotonic time to tick again, or None
    polls.last_poll                              # Demand.last_poll: the poll it stood in for

DESCRIPTION
    With a unit tariff and chargehup, a quiet line is hung up just before
    its next charging unit (the FSM's hang-up plan, link/fsmconfig.py).
    When the schedule's next poll (policy.next_poll) is due within
    unit_poll after that hang-up, the ETRN is sent in the unit already paid
    for, UNIT_POLL_LEAD before the hang-up (policy.unit_poll_at), and it
    counts as that poll (last_poll, which the policy's relative schedule and
    next_poll read): the bench's model (tests/bench/economy_model.py
    on_quiet / unit_poll) does the same.  Planned again whenever the planned
    hang-up moves (traffic, a run, an inbound push); at most one per
    planned hang-up (the poll's own traffic leaves it where it was);
    none unless the line is up, lingering and quiet (fsm.quiet()).

NEVER
    Sends anything itself: the FSM turns PollDue into SendEtrn.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from link.fsm import LinkFSM
from link.policy import Demand, Policy
from link.port import Clock, wall_now
from link.transitions import PollDue


class UnitPolls:
    """The paid unit's last ETRN (the module's page)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.count = 0                          #: unit polls sent (status, tests)
        self.last_poll: datetime | None = None  #: the poll the last one stood in for
        self._hang: float | None = None         # the planned hang-up (monotonic) planned for
        self._at: float | None = None           # monotonic time of the unit poll, or None
        self._due: datetime | None = None
        self._polled: float | None = None       # the hang-up the last unit poll was sent for

    def wake_at(self) -> float | None:
        return self._at

    def tick(self, fsm: LinkFSM, policy: Policy, demand_at: Callable[[datetime], Demand]) -> PollDue | None:
        """PollDue when the unit poll is due now; plans it when the hang-up moved."""
        if not fsm.quiet():
            self._hang = self._at = None
            return None
        hang, mono = fsm.deadline(), self.clock.monotonic()
        if self._at is not None and hang == self._hang and mono >= self._at:
            self._at, self.last_poll, self._polled = None, self._due, hang
            self.count += 1
            return PollDue(self._due.isoformat() if self._due else "")
        if hang != self._hang and hang not in (None, self._polled) and fsm.up_since is not None:
            self._hang = hang
            self._plan(policy, demand_at, fsm.up_since, hang)
        return None

    def _plan(self, policy: Policy, demand_at: Callable[[datetime], Demand], up: float, hang: float) -> None:
        now = wall_now(self.clock)
        wall = lambda t: now + timedelta(seconds=t - self.clock.monotonic())
        self._due = policy.next_poll(now, demand_at(now))
        at = policy.unit_poll_at(wall(up), wall(hang), self._due)
        self._at = None if at is None else self.clock.monotonic() + (at - now).total_seconds()
