"""daemon/demand.py: the counts kept as the queue changes equal a recount
from scratch after any sequence of commits, updates, removals and time."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edgemail.daemon.demand import DemandCounts
from edgemail.envelope import Envelope, Recipient
from edgemail.spool import record
from edgemail.spool.index import Index
from edgemail.spool.record import StateUpdate

T0 = 1_700_000_000.0


class Clock:
    now = T0


def make(qid: int, created: float, precedence: int, size: int):
    env = Envelope("a@b", (Recipient(f"r{qid % 3}@x"),), precedence=precedence)
    return record.new_entry(f"q{qid}", env, created=created, size=size, priority=0)


def counts(index, now, needs, big):
    """The figures, the slow way."""
    waiting = [e for e in index.entries() if not e.held and needs(e.qid)]
    bigs = {e.qid: big(e.qid, e.size, 0) for e in waiting if big(e.qid, e.size, 0)}
    due = [e for e in waiting if e.next_attempt <= now and e.qid not in bigs]
    later = [e.next_attempt for e in waiting if e.next_attempt > now]
    return (len(due), min((e.created for e in due), default=None),
            sum(1 for e in due if e.envelope.precedence > 0), len(waiting), min(later, default=None), bigs)


ops = st.lists(st.tuples(st.sampled_from(["commit", "defer", "hold", "release", "remove", "tick"]),
                         st.integers(0, 12), st.integers(0, 200)), max_size=40)


@settings(deadline=None, max_examples=150)
@given(ops)
def test_counts_equal_a_recount(steps):
    index, clock, routed = Index(), Clock(), []

    def needs(qid):
        routed.append(qid)
        return int(qid[1:]) % 4 != 0           # q0, q4, q8: cheap routes

    def big(qid, size, flags):
        return "big" if size > 150 else ""
    demand = DemandCounts(index, needs, big, lambda: clock.now)
    for op, n, x in steps:
        qid = f"q{n}"
        if op == "commit" and qid not in index:
            index.put(make(n, clock.now, 100 if x % 5 == 0 else 0, x))
        elif op == "tick":
            clock.now += x
        elif qid in index and op != "commit":
            e = index.get(qid)
            if op == "remove":
                index.discard(qid)
            else:
                up = {"defer": StateUpdate(next_attempt=clock.now + x), "hold": StateUpdate(held=True),
                      "release": StateUpdate(held=False)}[op]
                index.put(record.apply(e, up))
        assert demand.figures() == counts(index, clock.now, lambda q: int(q[1:]) % 4 != 0, big)


def test_a_commit_is_counted_without_a_recount_and_routed_once():
    index, clock, routed = Index(), Clock(), []
    demand = DemandCounts(index, lambda q: routed.append(q) or True, lambda q, s, f: "",
                          lambda: clock.now)
    for n in range(100):
        index.put(make(n, clock.now, 0, 10))
    assert demand.figures()[:4] == (100, T0, 0, 100) and demand.recounts == 1
    for n in range(100, 200):
        index.put(make(n, clock.now, 100, 10))
        assert demand.figures()[:4] == (n + 1, T0, n - 99, n + 1)
    assert demand.recounts == 1 and sorted(routed) == sorted(f"q{n}" for n in range(200))
