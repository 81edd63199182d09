"""delivery.clocksteps: a step of the wall clock is detected against the
monotonic clock and the queued messages' stamps are moved with it (pure)."""

from __future__ import annotations

import pytest

from edgemail.delivery.clocksteps import ClockSteps, from_data, to_data
from edgemail.envelope import Attempt, Envelope, RcptStatus, Recipient
from edgemail.spool.record import QueueEntry

YEAR = 365 * 86400.0
T0 = 1_700_000_000.0


def entry(qid="Q1", *, created=T0, next_attempt=T0 + 300, attempts=1) -> QueueEntry:
    env = Envelope("s@edge.example", (Recipient("r@far.test"),), arrived=created)
    last = {"r@far.test": Attempt(RcptStatus.DEFERRED, "4.4.1", "refused", "h", created + 1)}
    return QueueEntry(qid, env, created, 10, 0, attempts, next_attempt, False,
                      {"r@far.test": RcptStatus.DEFERRED}, {}, False, last)


@pytest.mark.parametrize("wall_delta,mono_delta,want", [
    (60, 60, None), (60 + 299, 60, None), (60 + 301, 60, 301), (60 - YEAR, 60, -YEAR),
    (YEAR, 0, YEAR)], ids=["together", "drift-under-limit", "step-forward", "step-back", "step-a-year"])
def test_observe_reports_steps_over_the_limit_only(wall_delta, mono_delta, want):
    steps = ClockSteps()
    assert steps.observe(T0, 1000.0) is None                  # the first look sees nothing
    assert steps.observe(T0 + wall_delta, 1000.0 + mono_delta) == want


@pytest.mark.parametrize("step", [YEAR, -YEAR])
def test_view_moves_ages_and_due_times_with_the_clock(step):
    steps = ClockSteps()
    e = entry()
    assert steps.stepped(step, [(e.qid, e.attempts)]) == 1
    v = steps.view(e)
    assert (v.created, v.envelope.arrived, v.next_attempt) == (T0 + step, T0 + step, T0 + 300 + step)
    assert v.last_attempt["r@far.test"].at == T0 + 1 + step
    assert steps.view(entry("Q2")) == entry("Q2"), "messages queued after the step are untouched"
    assert not steps.attempted_since(e.qid, e.attempts)


def test_a_next_attempt_written_after_the_step_is_not_moved_again():
    steps = ClockSteps()
    steps.stepped(YEAR, [("Q1", 1)])
    after = entry(created=T0, next_attempt=T0 + YEAR + 600, attempts=2)   # attempted since
    v = steps.view(after)
    assert (v.created, v.next_attempt) == (T0 + YEAR, T0 + YEAR + 600)
    assert steps.attempted_since("Q1", 2)
    steps.stepped(-60 * 10, [("Q1", 2)])                                   # a second step
    v = steps.view(after)
    assert (v.created, v.next_attempt) == (T0 + YEAR - 600, T0 + YEAR)


def test_persisted_as_plain_data_and_pruned():
    steps = ClockSteps()
    steps.stepped(YEAR, [("Q1", 1), ("Q2", 0)])
    again = from_data(to_data(steps))
    assert again.view(entry()) == steps.view(entry())
    again.prune(["Q2"])
    assert set(again.entries) == {"Q2"}
    with pytest.raises((ValueError, TypeError, KeyError)):
        from_data({"version": 1, "entries": {"Q1": "x"}})
