"""delivery.outcome: what an attempt's results mean - record, backoff, cheap
retry, failure report, delay warning; returns past Timeout.queuereturn only
after an attempt (hold routes by age); the DSN timers; internal errors."""

from __future__ import annotations

import pytest

from edgemail.config import loader as config
from edgemail.delivery import outcome
from edgemail.delivery.port import Job, cut_attempt
from edgemail.delivery.routing import Decision
from edgemail.envelope import Attempt, Envelope, RcptStatus, Recipient
from edgemail.spool.record import QueueEntry

NOW = 1_700_000_000.0
H = 3600.0
D = 86400.0

#: job specs: key -> (route kind, expensive)
CHEAP, DEAR = ("local", False), ("smarthost", True)


def cfg(**over):
    data = {"hostname": "gw.test", "local_domains": ["edge.example"],
            "Timeout": {"queuewarn": "4h", "queuereturn": "5d", "queuereturn.urgent": "2d"},
            "retry": {"min_backoff": "5m", "max_backoff": "4h"}}
    data.update(over)
    return config.from_dict(data)


def job(key: str, spec=DEAR) -> Job:
    rcpt, _, final = key.partition(">")
    kind, expensive = spec
    return Job(Recipient(rcpt), Decision(final or rcpt, rcpt, kind, expensive=expensive), key)


def entry(rcpts, *, age=0.0, warned=False, precedence=0, status=None, last=None) -> QueueEntry:
    env = Envelope("s@edge.example", tuple(Recipient(r) for r in rcpts), precedence=precedence)
    rcpt_status = {r: RcptStatus.QUEUED for r in rcpts}
    rcpt_status.update(status or {})
    return QueueEntry("Q1", env, NOW - age, 100, 0, 0, NOW - age, False, rcpt_status, {}, warned,
                      dict(last or {}))


def attempt(word: str) -> Attempt:
    if word == "cut":
        return cut_attempt("link lost", "none", NOW)
    status = RcptStatus(word)
    dsn = {"sent": "2.0.0", "deferred": "4.4.1", "bounced": "5.1.1", "expired": "4.4.7"}[word]
    return Attempt(status, dsn, f"{word} text", relay="mx.test[192.0.2.1]:25", at=NOW)


# ------------------------------------------------------------------ decide

# id, jobs {key: spec}, attempts {key: word}, entry kw, config kw, link_up_s,
# want: (recorded keys, next_attempt - NOW or None, retry_at - NOW or None, failed keys, warn)
DECIDE = [
    ("sent-cheap", {"a": CHEAP}, {"a": "sent"}, {}, {}, None,
     ({"a"}, None, None, set(), False)),
    ("deferred-new-gets-min-backoff", {"a": DEAR}, {"a": "deferred"}, {}, {}, None,
     ({"a"}, 300, None, set(), False)),
    ("deferred-2h-old-waits-its-age", {"a": DEAR}, {"a": "deferred"}, {"age": 2 * H}, {}, None,
     ({"a"}, 2 * H, None, set(), False)),
    ("deferred-old-clamped-to-max", {"a": DEAR}, {"a": "deferred"}, {"age": 10 * H}, {}, None,
     ({"a"}, 4 * H, None, set(), True)),
    ("deferred-cheap-retried-by-the-loop-at-backoff", {"a": CHEAP}, {"a": "deferred"}, {}, {}, None,
     ({"a"}, 300, 300, set(), False)),
    ("cut-records-nothing", {"a": DEAR}, {"a": "cut"}, {"age": 5 * H}, {}, None,
     (set(), None, None, set(), False)),
    ("cut-cheap-retried-after-min-backoff", {"a": CHEAP}, {"a": "cut"}, {"age": 2 * H}, {}, None,
     (set(), None, 300, set(), False)),
    ("cut-and-deferred-cheap-retry-at-backoff", {"a": CHEAP, "b": CHEAP}, {"a": "cut", "b": "deferred"},
     {"age": 2 * H}, {}, None, ({"b"}, 2 * H, 2 * H, set(), False)),
    ("cheap-sent-dear-deferred-no-loop-retry", {"a": CHEAP, "b": DEAR}, {"a": "sent", "b": "deferred"},
     {}, {}, None, ({"a", "b"}, 300, None, set(), False)),
    ("bounce-reported-no-backoff", {"a": DEAR}, {"a": "bounced"}, {}, {}, None,
     ({"a"}, None, None, {"a"}, False)),
    ("mixed-only-the-bounce-reported", {"a": DEAR, "b": DEAR, "c": DEAR},
     {"a": "sent", "b": "bounced", "c": "deferred"}, {}, {}, None, ({"a", "b", "c"}, 300, None, {"b"}, False)),
    ("expired-reported", {"a": DEAR, "b": DEAR}, {"a": "expired", "b": "expired"}, {"age": 5 * D}, {}, None,
     ({"a", "b"}, None, None, {"a", "b"}, False)),
    ("warn-due-past-queuewarn", {"a": DEAR}, {"a": "deferred"}, {"age": 5 * H}, {}, None,
     ({"a"}, 4 * H, None, set(), True)),
    ("warn-once", {"a": DEAR}, {"a": "deferred"}, {"age": 5 * H, "warned": True}, {}, None,
     ({"a"}, 4 * H, None, set(), False)),
    ("no-warn-when-all-final", {"a": DEAR}, {"a": "bounced"}, {"age": 5 * H}, {}, None,
     ({"a"}, None, None, {"a"}, False)),
    ("no-warn-when-nothing-recorded", {"a": DEAR}, {"a": "cut"}, {"age": 5 * H}, {}, None,
     (set(), None, None, set(), False)),
    ("warn-for-what-stays-queued", {"a": DEAR, "b": DEAR}, {"a": "sent"}, {"age": 5 * H}, {}, None,
     ({"a"}, None, None, set(), True)),
    ("queuewarn-0-never-warns", {"a": DEAR}, {"a": "deferred"}, {"age": 5 * H},
     {"Timeout": {"queuewarn": "0"}}, None, ({"a"}, 4 * H, None, set(), False)),
    ("urgent-warns-sooner", {"a": DEAR}, {"a": "deferred"}, {"age": 2 * H, "precedence": 100},
     {"Timeout": {"queuewarn.urgent": "1h"}}, None, ({"a"}, 2 * H, None, set(), True)),
    ("link-up-time-only-young", {"a": DEAR}, {"a": "deferred"}, {"age": 5 * H},
     {"retry": {"count_link_up_time_only": True}}, 1 * H, ({"a"}, 4 * H, None, set(), False)),
    ("link-up-time-only-old", {"a": DEAR}, {"a": "deferred"}, {"age": 5 * H},
     {"retry": {"count_link_up_time_only": True}}, 4.5 * H, ({"a"}, 4 * H, None, set(), True)),
]


def _rcpts(jobs) -> list[str]:
    return list(dict.fromkeys(k.partition(">")[0] for k in jobs))


@pytest.mark.parametrize("jobs,attempts,entry_kw,cfg_kw,link_up_s,want",
                         [c[1:] for c in DECIDE], ids=[c[0] for c in DECIDE])
def test_decide(jobs, attempts, entry_kw, cfg_kw, link_up_s, want):
    e = entry(_rcpts(jobs), **entry_kw)
    js = [job(k, spec) for k, spec in jobs.items()]
    got = outcome.decide(e, js, {}, {k: attempt(w) for k, w in attempts.items()}, now=NOW,
                         cfg=cfg(**cfg_kw), link_up_s=link_up_s)
    rel = [None if t is None else t - NOW for t in (got.next_attempt, got.retry_at)]
    have = (set(got.record), rel[0], rel[1], {j.key for j, _ in got.failed}, got.warn)
    assert have == want, f"got {have}, want {want}"


def test_decide_records_the_attempts_as_given_and_reports_them_with_their_job():
    e = entry(["a", "b"])
    js = [job("a"), job("b")]
    attempts = {"a": attempt("bounced"), "b": attempt("cut")}
    got = outcome.decide(e, js, {}, attempts, now=NOW, cfg=cfg())
    assert got.record == {"a": attempts["a"]}, f"got {got.record}"
    assert got.failed == ((js[0], attempts["a"]),), f"got {got.failed}"


# ------------------------------------------------------------------ aliases

# id, attempts of the expansions now, earlier last_attempt, want: original's status or None
ALIAS = [
    ("all-sent", {"o>x": "sent", "o>y": "sent"}, {}, RcptStatus.SENT),
    ("one-deferred-not-final", {"o>x": "sent", "o>y": "deferred"}, {}, None),
    ("one-cut-not-final", {"o>x": "sent", "o>y": "cut"}, {}, None),
    ("one-bounced", {"o>x": "sent", "o>y": "bounced"}, {}, RcptStatus.BOUNCED),
    ("other-sent-earlier", {"o>x": "sent"}, {"o>y": "sent"}, RcptStatus.SENT),
    ("other-deferred-earlier", {"o>x": "sent"}, {"o>y": "deferred"}, None),
]


@pytest.mark.parametrize("attempts,earlier,want", [c[1:] for c in ALIAS], ids=[c[0] for c in ALIAS])
def test_alias_recipient_final_when_all_expansions_are(attempts, earlier, want):
    status = {k: attempt(w).status for k, w in earlier.items()}
    e = entry(["o"], status=status, last={k: attempt(w) for k, w in earlier.items()})
    js = [job(k) for k in attempts]
    got = outcome.decide(e, js, {"o": ["o>x", "o>y"]}, {k: attempt(w) for k, w in attempts.items()},
                         now=NOW, cfg=cfg())
    have = got.record["o"].status if "o" in got.record else None
    assert have == want, f"got {have}, want {want}"
    assert {j.key for j, _ in got.failed} <= set(attempts), "the original is never reported itself"


def test_combined_alias_attempt_names_the_alias_or_the_failure():
    sent = outcome.combine([attempt("sent"), attempt("sent")], NOW)
    assert (sent.status, sent.dsn, sent.relay) == (RcptStatus.SENT, "2.0.0", "alias"), sent
    bad = outcome.combine([attempt("sent"), attempt("bounced")], NOW)
    assert (bad.status, bad.dsn, bad.text) == (RcptStatus.BOUNCED, "5.1.1", "bounced text"), bad


# ------------------------------------------------------------------ expiry and the DSN timers

HOLD, LOCAL = ("hold", True), ("local", False)

# id, entry kw, config kw, link_up_s, want expired by age (hold), want timer plan (warn, retry cheap)
EXPIRY = [
    ("young", {"age": 1 * H}, {}, None, False, (False, False)),
    ("past-queuewarn", {"age": 5 * H}, {}, None, False, (True, False)),
    ("warned-already", {"age": 5 * H, "warned": True}, {}, None, False, (False, False)),
    ("just-before-queuereturn", {"age": 5 * D - 1, "warned": True}, {}, None, False, (False, False)),
    ("at-queuereturn", {"age": 5 * D}, {}, None, True, (True, True)),
    ("past-queuereturn-even-if-warned", {"age": 6 * D, "warned": True}, {}, None, True, (False, True)),
    ("urgent-returns-sooner", {"age": 3 * D, "precedence": 100}, {}, None, True, (True, True)),
    ("queuereturn-0-returns-now", {}, {"Timeout": {"queuereturn": "0"}}, None, True, (False, True)),
    ("link-up-time-only-waited-offline", {"age": 9 * D, "warned": True},
     {"retry": {"count_link_up_time_only": True}}, 1 * D, False, (False, False)),
    ("link-up-time-only-enough-up", {"age": 9 * D, "warned": True},
     {"retry": {"count_link_up_time_only": True}}, 5 * D, True, (False, True)),
]


@pytest.mark.parametrize("entry_kw,cfg_kw,link_up_s,want_expired,want_plan",
                         [c[1:] for c in EXPIRY], ids=[c[0] for c in EXPIRY])
def test_timer_plan_returns_hold_by_age_and_tries_cheap_once_more(entry_kw, cfg_kw, link_up_s,
                                                                   want_expired, want_plan):
    e = entry(["h", "c", "d"], **entry_kw)
    js = [job("h", HOLD), job("c", LOCAL), job("d", DEAR)]
    got = outcome.timer_plan(e, js, now=NOW, cfg=cfg(**cfg_kw), link_up_s=link_up_s)
    want_expire = {"h"} if want_expired else set()
    assert set(got.expire) == want_expire, f"got {got.expire}, want {want_expire}"
    assert {(a.status, a.dsn) for a in got.expire.values()} <= {(RcptStatus.EXPIRED, "4.4.7")}
    assert (got.warn, got.retry_cheap) == want_plan, f"got {got}, want {want_plan}"


def test_no_warning_when_everything_pending_is_being_returned():
    got = outcome.timer_plan(entry(["h"], age=6 * D), [job("h", HOLD)], now=NOW, cfg=cfg())
    assert set(got.expire) == {"h"} and not got.warn and not got.retry_cheap, f"got {got}"


@pytest.mark.parametrize("age,want", [(0, "deferred"), (5 * D - 1, "deferred"), (5 * D, "expired"),
                                      (6 * D, "expired")])
def test_a_return_follows_a_failed_attempt_past_queuereturn(age, want):
    # sendmail's markfailure: the deferral of an attempt past queuereturn is the return
    e = entry(["a", "b"], age=age)
    js = [job("a"), job("b")]
    got = outcome.decide(e, js, {}, {"a": attempt("deferred"), "b": attempt("sent")}, now=NOW, cfg=cfg())
    assert (got.record["a"].status.value, got.record["b"].status.value) == (want, "sent"), got.record
    assert [j.key for j, _ in got.failed] == (["a"] if want == "expired" else []), got.failed
    if want == "expired":
        assert got.record["a"].dsn == "4.4.7" and got.next_attempt is None, got
        assert got.record["a"].text == ("Cannot send message for 5 days (Timeout.queuereturn); "
                                        "last attempt: deferred text"), got.record["a"].text


def test_a_cut_attempt_past_queuereturn_returns_nothing():
    got = outcome.decide(entry(["a"], age=6 * D), [job("a")], {}, {"a": attempt("cut")}, now=NOW, cfg=cfg())
    assert got.record == {} and got.failed == (), f"got {got}"


@pytest.mark.parametrize("timeout,want", [("5d", "5 days"), ("2h", "2 hours"), ("90m", "90 minutes"),
                                          ("1w", "1 week")])
def test_expiry_text_names_the_configured_time(timeout, want):
    got = outcome.expiry(entry(["a"], age=8 * D), [job("a")], now=NOW,
                         cfg=cfg(Timeout={"queuereturn": timeout}))
    assert got is not None
    assert got["a"].text == f"Cannot send message for {want} (Timeout.queuereturn)", got["a"].text


def test_expired_attempts_are_recorded_and_reported_like_bounces():
    e = entry(["a"], age=6 * D)
    js = [job("a")]
    expired = outcome.expiry(e, js, now=NOW, cfg=cfg())
    assert expired is not None
    got = outcome.decide(e, js, {}, expired, now=NOW, cfg=cfg())
    assert set(got.record) == {"a"} and [j.key for j, _ in got.failed] == ["a"], f"got {got}"
    assert got.next_attempt is None and not got.warn, f"got {got}"


# id, entry kw, config kw, counting, link_up_s, want timer - NOW (None: no timer)
TIMERS = [
    ("new-warns-at-queuewarn", {}, {}, True, None, 4 * H),
    ("warned-returns-at-queuereturn", {"age": 5 * H, "warned": True}, {}, True, None, 5 * D - 5 * H),
    ("past-both-no-timer", {"age": 6 * D, "warned": True}, {}, True, None, None),
    ("queuewarn-0-only-the-return", {"age": 1 * H}, {"Timeout": {"queuewarn": "0"}}, True, None, 5 * D - H),
    ("urgent", {}, {"Timeout": {"queuewarn.urgent": "1h"}}, True, None, 4 * H),
    ("link-up-only-counts-up-time", {"age": 3 * D}, {"retry": {"count_link_up_time_only": True}},
     True, 3 * H, 1 * H),
    ("link-up-only-link-down-no-timer", {"age": 3 * D}, {"retry": {"count_link_up_time_only": True}},
     False, 3 * H, None),
]


@pytest.mark.parametrize("entry_kw,cfg_kw,counting,link_up_s,want", [c[1:] for c in TIMERS],
                         ids=[c[0] for c in TIMERS])
def test_dsn_timer_is_the_next_warn_or_return_time(entry_kw, cfg_kw, counting, link_up_s, want):
    got = outcome.dsn_timer(entry(["a"], **entry_kw), now=NOW, cfg=cfg(**cfg_kw), counting=counting,
                            link_up_s=link_up_s)
    assert (None if got is None else got - NOW) == want, f"got {got}, want NOW + {want}"


def test_overdue_at_start_means_a_check_now():
    assert outcome.dsn_overdue(entry(["a"], age=5 * H), now=NOW, cfg=cfg())
    assert outcome.dsn_overdue(entry(["a"], age=6 * D, warned=True), now=NOW, cfg=cfg())
    assert not outcome.dsn_overdue(entry(["a"], age=5 * H, warned=True), now=NOW, cfg=cfg())


# ------------------------------------------------------------------ internal errors

def test_internal_error_defers_4_3_0_with_the_normal_backoff():
    e = entry(["a", "b"], age=2 * H)
    got = outcome.internal_error(e, ["a", "b"], "LocalProtocolError: bad", now=NOW, cfg=cfg())
    assert {(k, a.status, a.dsn) for k, a in got.record.items()} == {
        ("a", RcptStatus.DEFERRED, "4.3.0"), ("b", RcptStatus.DEFERRED, "4.3.0")}, got.record
    assert got.record["a"].text == "internal error: LocalProtocolError: bad"
    assert (got.next_attempt, got.retry_at) == (NOW + 2 * H, NOW + 2 * H), got
    assert got.failed == () and not got.warn
