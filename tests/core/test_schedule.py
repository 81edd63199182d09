"""schedule: backoff, warn/return per urgency, link-up-only ages, clock jumps, queue-run selection."""

import random
from dataclasses import dataclass, field

import pytest
from hypothesis import given, strategies as st

from edgemail.config import loader as config
from edgemail.envelope import Envelope, RcptStatus, Recipient
from edgemail.spool import schedule as sch
from edgemail.spool.schedule import QueueFilter

T0 = 1_700_000_000.0
H = 3600.0


def cfg(**over):
    data = {"hostname": "gw.test", "local_domains": ["edge.example"]}
    data.update(over)
    return config.from_dict(data)


@dataclass(frozen=True)
class Entry:
    """The QueueItem fields (a stand-in for spool QueueEntry)."""

    qid: str
    envelope: Envelope
    created: float = T0
    priority: int = 0
    attempts: int = 0
    next_attempt: float = T0
    held: bool = False
    rcpt_status: dict = field(default_factory=dict)


def env(sender="a@lan.example", rcpts=("x@dest.example",), precedence=0, size=1000):
    return Envelope(sender, tuple(Recipient(r) for r in rcpts), precedence=precedence, size=size)


def entry(qid, **kw):
    e_kw = {k: kw.pop(k) for k in ("sender", "rcpts", "precedence", "size") if k in kw}
    return Entry(qid, env(**e_kw), **kw)


# ---------------------------------------------------------------- backoff

RETRY = config.RetryConfig(min_backoff=300, max_backoff=4 * H)


@pytest.mark.parametrize("age,want", [(0, 300), (10, 300), (1000, 1000), (4 * H, 4 * H), (9 * H, 4 * H)],
                         ids=["new", "young", "mid", "at-max", "old"])
def test_backoff_is_age_clamped(age, want):
    got = sch.next_attempt(T0 + age, T0, RETRY) - (T0 + age)
    assert got == want, f"got {got}, want {want}"


@given(a=st.floats(-1e7, 1e8), b=st.floats(-1e7, 1e8),
       lo=st.floats(0, 1e4), span=st.floats(0, 1e6))
def test_backoff_monotonic_and_bounded(a, b, lo, span):
    retry = config.RetryConfig(min_backoff=lo, max_backoff=lo + span)
    ba, bb = sch.backoff(sch.age(T0 + a, T0), retry), sch.backoff(sch.age(T0 + b, T0), retry)
    assert lo <= ba <= lo + span
    if a <= b:
        assert ba <= bb


def test_negative_age_clamps_to_zero():
    assert sch.age(T0 - 5000, T0) == 0
    assert sch.next_attempt(T0 - 5000, T0, RETRY) == T0 - 5000 + 300


@pytest.mark.parametrize("next_at,now,due", [
    (T0, T0, True), (T0 + 1, T0, False), (T0 + 4 * H, T0, False),
    (T0 + 4 * H + 1, T0, True),   # wall clock went back: never wait longer than max_backoff
], ids=["now", "future", "at-max", "clock-went-back"])
def test_is_due(next_at, now, due):
    assert sch.is_due(next_at, now, RETRY) is due


# ---------------------------------------------------------------- warn / return

TIMEOUTS = {"queuewarn": "4h", "queuewarn.urgent": "1h", "queuewarn.non-urgent": "12h",
            "queuereturn": "5d", "queuereturn.urgent": "2d", "queuereturn.non-urgent": "7d"}


@pytest.mark.parametrize("precedence,warn_h,return_h", [
    (100, 1, 48), (0, 4, 120), (-60, 12, 168)], ids=["urgent", "normal", "non-urgent"])
def test_warn_and_return_per_urgency(precedence, warn_h, return_h):
    c = cfg(Timeout=TIMEOUTS)
    e = env(precedence=precedence)
    assert not sch.warn_due(e, T0, T0 + warn_h * H - 1, c)
    assert sch.warn_due(e, T0, T0 + warn_h * H, c)
    assert not sch.warn_due(e, T0, T0 + warn_h * H, c, warned=True)
    assert not sch.expired(e, T0, T0 + return_h * H - 1, c)
    assert sch.expired(e, T0, T0 + return_h * H, c)


def test_queuewarn_zero_never_warns_queuereturn_zero_returns_now():
    c = cfg(Timeout={"queuewarn": 0, "queuereturn": "now"})
    assert not sch.warn_due(env(), T0, T0 + 100 * H, c)
    assert sch.expired(env(), T0, T0, c)


def test_link_up_only_accounting():
    c = cfg(Timeout=TIMEOUTS, retry={"count_link_up_time_only": True})
    link = sch.LinkUpTime()
    link.up(T0 + 10 * H)           # message waited 10 h with the line down
    link.down(T0 + 10.5 * H)
    link.up(T0 + 20 * H)
    now = T0 + 23.5 * H             # 23.5 h wall, 4 h of link time
    up = link.since(T0, now)
    assert up == pytest.approx(4 * H)
    assert sch.warn_due(env(), T0, now, c, link_up_s=up)
    assert not sch.warn_due(env(), T0, now - 60, c, link_up_s=link.since(T0, now - 60))
    assert not sch.expired(env(), T0, T0 + 30 * 86400, c, link_up_s=up)
    with pytest.raises(ValueError, match="link_up_s"):
        sch.expired(env(), T0, now, c)


def test_link_up_time_counts_only_after_arrival_and_prunes():
    link = sch.LinkUpTime([(T0, T0 + 100)])
    assert link.since(T0 + 50, T0 + 1000) == 50
    link.prune(T0 + 200)
    assert link.intervals == []
    link.down(T0)                 # down while down: nothing happens
    assert link.since(T0 - 1, T0 + 1) == 0


# ---------------------------------------------------------------- clock jumps

@pytest.mark.parametrize("wall_delta,mono_delta,limit,want", [
    (60, 60, 300, None),
    (56 * 365 * 86400.0, 60, 300, 56 * 365 * 86400.0 - 60),   # RTC-less boot, NTP steps forward
    (-3600 + 5, 5, 300, -3600.0),                               # stepped back an hour
    (400, 60, 300, 340.0),
], ids=["none", "forward-epoch", "back", "forward-small"])
def test_detect_jump_both_ways(wall_delta, mono_delta, limit, want):
    got = sch.detect_jump(0.0, 1000.0, wall_delta, 1000.0 + mono_delta, limit)
    assert got == (pytest.approx(want) if want is not None else None)


def test_rebase_keeps_age_after_forward_jump():
    c = cfg()
    created = 100.0                  # queued at boot, clock at the epoch
    step = T0 - 200.0                # NTP: now it is T0
    assert sch.expired(env(), created, T0, c)          # unguarded: 54 years old
    assert not sch.expired(env(), sch.rebase(created, step), T0, c)
    assert sch.age(T0, sch.rebase(created, step)) == 100.0


# ---------------------------------------------------------------- filters

@pytest.mark.parametrize("text,want", [
    ("R@example.org", QueueFilter("R", "@example.org")),
    ("!Sfoo", QueueFilter("S", "foo", True)),
    ("-qIabc", QueueFilter("I", "abc")),
    ("-q!Rseattle", QueueFilter("R", "seattle", True)),
    ("q!Rx", QueueFilter("R", "x", True)),
    ("rlower", QueueFilter("R", "lower")),
], ids=["R", "!S", "-qI", "-q!R", "q!R", "lower-kind"])
def test_filter_parse(text, want):
    assert QueueFilter.parse(text) == want


@pytest.mark.parametrize("text", ["", "X@foo", "R", "!", "-q"])
def test_filter_parse_errors_name_the_filter(text):
    with pytest.raises(ValueError, match="bad queue filter"):
        QueueFilter.parse(text)


E1 = entry("AAAA00000001", sender="boss@lan.example", rcpts=("a@Seattle.example", "b@berkeley.example"))
E2 = entry("AAAA00000002", sender="bob@lan.example", rcpts=("c@berkeley.example",))
E3 = entry("aAAA00000003", sender="ann@other.example", rcpts=("d@seattle.example",))


@pytest.mark.parametrize("filters,want", [
    (["Rseattle"], ["AAAA00000001", "aAAA00000003"]),
    (["RSEATTLE"], ["AAAA00000001", "aAAA00000003"]),            # R case-insensitive
    (["!Rseattle"], ["AAAA00000001", "AAAA00000002"]),           # sendmail: any pending rcpt without it
    (["Rseattle", "Rberkeley"], ["AAAA00000001", "AAAA00000002", "aAAA00000003"]),  # same kind: OR
    (["Rberkeley", "Sboss"], ["AAAA00000001"]),                  # kinds: AND
    (["Rberkeley", "!Sboss"], ["AAAA00000002"]),
    (["Sbob", "Sann"], ["AAAA00000002", "aAAA00000003"]),
    (["Ia"], ["aAAA00000003"]),                                   # I case-sensitive (base-60 ids)
    (["!IAAAA"], ["aAAA00000003"]),
], ids=["R", "R-case", "!R", "R-or-R", "R-and-S", "R-and-!S", "S-or-S", "I-case", "!I"])
def test_filters(filters, want):
    got = [e.qid for e in (E1, E2, E3) if sch.matches(e, sch.parse_filters(filters))]
    assert got == want


def test_filter_skips_delivered_recipients():
    done = Entry(E1.qid, E1.envelope, rcpt_status={"a@Seattle.example": RcptStatus.SENT})
    assert not sch.matches(done, [QueueFilter("R", "seattle")])


# ---------------------------------------------------------------- selection and order

def test_priority_order_with_retry_factor():
    c = cfg()  # RecipientFactor 30000, RetryFactor 90000
    small_retried = entry("Q1", size=1000, attempts=2)        # 1000 + 30000 + 180000
    big_fresh = entry("Q2", size=100_000)                     # 100000 + 30000
    urgent = entry("Q3", size=100_000, precedence=100, attempts=1)  # 100000 - 180000 + 30000 + 90000
    got = [e.qid for e in sch.select([small_retried, big_fresh, urgent], T0, c)]
    assert got == ["Q3", "Q2", "Q1"]


@pytest.mark.parametrize("order,want", [
    ("time", ["B", "C", "A"]), ("filename", ["A", "B", "C"]), ("host", ["C", "A", "B"])])
def test_queue_sort_orders(order, want):
    c = cfg(QueueSortOrder=order)
    es = [entry("A", created=T0 - 10, rcpts=("x@b.example",)),
          entry("B", created=T0 - 30, rcpts=("x@z.example",), size=50),
          entry("C", created=T0 - 20, rcpts=("x@a.example",))]
    assert [e.qid for e in sch.select(es, T0, c)] == want


@pytest.mark.parametrize("order", ["priority", "time", "filename", "host", "random"])
def test_urgent_mail_comes_first_in_every_order(order):
    """Issue 14: a queue run sends urgent (Precedence) mail before other mail,
    a big urgent message too (size 500 KB - 180000 would sort it after the rest)."""
    c = cfg(QueueSortOrder=order)
    es = [entry("A", created=T0 - 50, size=1000, rcpts=("x@a.example",)),
          entry("U", created=T0 - 10, size=500_000, precedence=100, rcpts=("x@z.example",), attempts=2),
          entry("B", created=T0 - 40, size=2000, rcpts=("x@b.example",)),
          entry("V", created=T0 - 5, size=100, precedence=100, rcpts=("x@y.example",))]
    got = [e.qid for e in sch.select(es, T0, c, rng=random.Random(3))]
    assert set(got[:2]) == {"U", "V"} and set(got[2:]) == {"A", "B"}, got


def test_random_order_is_a_permutation_driven_by_rng():
    c = cfg(QueueSortOrder="random")
    es = [entry(f"Q{i}") for i in range(20)]
    a = [e.qid for e in sch.select(es, T0, c, rng=random.Random(1))]
    b = [e.qid for e in sch.select(es, T0, c, rng=random.Random(1))]
    assert a == b and sorted(a) == sorted(e.qid for e in es) and a != [e.qid for e in es]


def test_select_skips_held_not_due_and_respects_max_run_size():
    c = cfg(MaxQueueRunSize=2)
    es = [entry("H", held=True), entry("F", next_attempt=T0 + 60, size=0),
          entry("D1", size=1), entry("D2", size=2), entry("D3", size=3)]
    assert [e.qid for e in sch.select(es, T0, c)] == ["D1", "D2"]
    assert [e.qid for e in sch.select(es, T0, c, flush=True)] == ["F", "D1"]


def test_min_queue_age_ignored_for_filtered_runs():
    c = cfg(MinQueueAge="30m")
    young = entry("Y", attempts=1, created=T0 - 600)       # tried 10 min ago (no last_attempt: created)
    fresh = entry("N", attempts=0, created=T0 - 5)         # never tried: never too young
    old = entry("O", attempts=1, created=T0 - 3 * H)
    assert [e.qid for e in sch.select([young, fresh, old], T0, c)] == ["N", "O"]
    got = sch.select([young, fresh, old], T0, c, filters=[QueueFilter("R", "dest")])
    assert sorted(e.qid for e in got) == ["N", "O", "Y"]


def test_filtered_run_ignores_backoff_but_not_hold():
    c = cfg()
    es = [entry("F", next_attempt=T0 + H), entry("H", held=True)]
    assert [e.qid for e in sch.select(es, T0, c, filters=[QueueFilter("R", "dest")])] == ["F"]


def test_min_queue_age_counts_from_the_spools_latest_attempt():
    # the spool's QueueEntry keeps a per-recipient map of Attempts
    from types import SimpleNamespace

    from edgemail.envelope import Attempt, RcptStatus
    from edgemail.spool.schedule import too_young
    tried = {"a@x": Attempt(RcptStatus.DEFERRED, "4.0.0", "busy", at=1000.0),
             "b@x": Attempt(RcptStatus.DEFERRED, "4.0.0", "busy", at=1500.0)}
    entry = SimpleNamespace(attempts=1, created=0.0, last_attempt=tried)
    assert too_young(entry, 1550.0, 100.0)          # 50 s after the latest attempt
    assert not too_young(entry, 1650.0, 100.0)
    assert not too_young(SimpleNamespace(attempts=0, created=0.0, last_attempt={}), 1.0, 100.0)
