"""Dial policy core: parsing, a simulated week, DST, thresholds, urgent, budget,
forbidden windows, the `schedule` adapter, and the policy laws (hypothesis)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import schedule
from hypothesis import given, settings, strategies as st

from link.policy import Demand, PolicyError, instants, parse
from link.policydriver import compile_jobs

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
EXAMPLE = Path(__file__).resolve().parent / "office_week.policy"
SHIPPED = Path(__file__).resolve().parents[2] / "etc" / "dial.policy"


def at(y, mo, d, h=0, mi=0) -> datetime:
    """An aware instant for Berlin wall-clock time (first occurrence)."""
    return min(instants(datetime(y, mo, d, h, mi), BERLIN))


def local(t: datetime) -> str:
    return t.astimezone(BERLIN).strftime("%a %H:%M")


def simulate(policy, start, end, demand=Demand(queued=1), call_minutes=3):
    """Drive should_dial() like the manager does; a call lasts call_minutes."""
    t, last, used, dials = start, None, {}, []
    while t < end:
        day = policy.local(t).date()
        calls, minutes = used.get(day, (0, 0.0))
        d = policy.should_dial(t, replace(demand, calls_today=calls, minutes_today=minutes, last_dial=last))
        if d.dial:
            dials.append(t)
            used[day] = (calls + 1, minutes + call_minutes)
            last = t
            t += timedelta(minutes=call_minutes)
        else:
            assert d.next_at is None or d.next_at > t, f"next_at {d.next_at} not after {t}"
            t = d.next_at or end
    return dials


# --- parsing -----------------------------------------------------------------

def test_example_file_parses():
    p = parse(EXAMPLE.read_text(), file=str(EXAMPLE))
    assert len(p.rules) == 3 and len(p.windows) == 1
    assert p.zone == BERLIN
    s = p.settings
    assert (s.idle_hangup_s, s.max_connect_s, s.calls_per_day, s.minutes_per_day) == (120, 1800, 40, 240)
    assert (s.dial_when_queued, s.dial_when_oldest_s, s.urgent_immediate) == (20, 7200, True)


def test_fields_names_ranges_steps_lists():
    p = parse("*/20 8-10/2,23 1,15 jan-mar sun,sat queue-run\n")
    (r,) = p.rules
    assert r.minutes == {0, 20, 40} and r.hours == {8, 10, 23}
    assert r.doms == {1, 15} and r.months == {1, 2, 3} and r.dows == {0, 6}
    assert parse("0 0 * * 7 etrn").rules[0].dows == {0}


BAD = [
    ("60 * * * * etrn", "minute", "60 out of range 0-59"),
    ("* 24 * * * etrn", "hour", "out of range"),
    ("* * 0 * * etrn", "day-of-month", "out of range"),
    ("* * * foo * etrn", "month", "'foo'"),
    ("* * * * funday etrn", "day-of-week", "'funday'"),
    ("5-1 * * * * etrn", "minute", "backwards"),
    ("*/0 * * * * etrn", "minute", "step"),
    ("* * * * * fetch", "action", "unknown action 'fetch'"),
    ("* * * * *", "rule", "five time fields"),
    ("set idle_hangup = soon", "idle_hangup", "duration"),
    ("set budget.calls_per_day = -1", "budget.calls_per_day", "whole number"),
    ("set colour = blue", "colour", "unknown setting"),
    ("set urgent = maybe", "urgent", "immediate or schedule"),
    ("forbid mon", "forbid", "HH:MM-HH:MM"),
    ("forbid mon 12:00", "forbid window", "HH:MM-HH:MM"),
    ("forbid mon 12:00-12:00", "forbid window", "empty"),
    ("forbid mon 25:00-26:00", "forbid window", "out of range"),
    ("forbid xyz 12:00-13:00", "day-of-week", "'xyz'"),
    ("timezone Mars/Olympus", "timezone", "unknown zone"),
]


@pytest.mark.parametrize("line,fld,problem", BAD, ids=[b[0] for b in BAD])
def test_parse_errors_name_file_line_field(line, fld, problem):
    with pytest.raises(PolicyError) as info:
        parse(f"# header\n0 * * * * etrn\n{line}\n", file="dial.policy")
    e = info.value
    assert (e.file, e.line, e.field) == ("dial.policy", 3, fld), f"got {e}"
    assert str(e).startswith(f"dial.policy:3: {fld}: ") and problem in str(e), f"got {e}"


# --- a simulated week -----------------------------------------------------------

def test_week_with_example_policy_office_hours_budget_lunch_weekend():
    p = parse(EXAMPLE.read_text())
    dials = simulate(p, at(2026, 3, 23), at(2026, 3, 30))   # Mon 23 .. Sun 29 March 2026
    by_day: dict[str, list[str]] = {}
    for t in dials:
        day, hm = local(t).split()
        by_day.setdefault(day, []).append(hm)
    night = [f"{h:02d}:00" for h in range(8)]
    morning = [f"{h:02d}:{m:02d}" for h in range(8, 12) for m in (0, 15, 30, 45)]
    afternoon = [f"{h:02d}:{m:02d}" for h in range(13, 17) for m in (0, 15, 30, 45)]
    # 8 night calls + 32 office calls = the budget of 40; no call over lunch;
    # 17:00 onwards waits for the budget to reset at midnight.
    for day in ("Mon", "Tue", "Wed", "Thu", "Fri"):
        assert by_day[day] == night + morning + afternoon, f"{day}: got {by_day[day]}"
    assert by_day["Sat"] == [f"{h:02d}:00" for h in range(0, 24, 3)]
    # Sunday 29 March: clocks go 02:00 -> 03:00; 03:00 still exists and fires.
    assert by_day["Sun"] == [f"{h:02d}:00" for h in range(0, 24, 3)]


def test_queue_run_only_rule_does_not_dial_for_an_empty_queue():
    p = parse("timezone Europe/Berlin\n0 * * * * queue-run\n0 6 * * * etrn\n")
    dials = simulate(p, at(2026, 6, 1), at(2026, 6, 2), demand=Demand(queued=0))
    assert [local(t) for t in dials] == ["Mon 06:00"]


# --- DST ----------------------------------------------------------------------------

def test_spring_gap_time_fires_once_right_after_the_gap():
    p = parse("timezone Europe/Berlin\n30 2 * * * poll\n")
    t = p.next_due(at(2026, 3, 28, 12))
    assert t == at(2026, 3, 29, 2, 30) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert local(t) == "Sun 03:00"
    assert local(p.next_due(t)) == "Mon 02:30"


def test_autumn_repeated_time_fires_once():
    p = parse("timezone Europe/Berlin\n30 2 * * * poll\n")
    t = p.next_due(at(2026, 10, 24, 12))
    assert t == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)     # 02:30 CEST, the first pass
    assert p.next_due(t) == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)   # Monday 02:30 CET


def test_hourly_rule_over_autumn_change_counts_25_hours_once_each_local_time():
    p = parse("timezone Europe/Berlin\n0 * * * * poll\n")
    dials = simulate(p, at(2026, 10, 25), at(2026, 10, 26))
    assert len(dials) == 24                                   # 02:00 local only once
    assert [local(t) for t in dials[:4]] == ["Sun 00:00", "Sun 01:00", "Sun 02:00", "Sun 03:00"]


def test_forbidden_window_in_repeated_hour_forbids_both_passes():
    p = parse("timezone Europe/Berlin\nforbid sun 02:00-02:30\n")
    first, second = sorted(instants(datetime(2026, 10, 25, 2, 10), BERLIN))
    assert not p.allowed(first) and not p.allowed(second)
    assert p.next_change(first) == first.replace(minute=30)
    assert p.next_change(first + timedelta(minutes=30)) == second.replace(minute=0)


# --- urgent, thresholds, budget, windows ------------------------------------------------

POLICY = """timezone Europe/Berlin
0 */4 * * * queue-run
set dial_when_queued = 5
set dial_when_oldest = 2h
set budget.calls_per_day = 3
set budget.minutes_per_day = 60
forbid * 22:00-06:00
"""


@pytest.mark.parametrize("when,demand,dial,reason,next_local", [
    ((3, 17), Demand(urgent=1, queued=1), False, "forbidden window * 22:00-06:00", "Tue 06:00"),
    ((9, 17), Demand(urgent=1, queued=1), True, "urgent(1)", None),
    ((9, 17), Demand(queued=5), True, "queued(5>=5)", None),
    ((9, 17), Demand(queued=1, oldest_age_s=7200), True, "oldest(2h>=2h)", None),
    ((9, 10), Demand(queued=1, oldest_age_s=3600), False, "oldest reaches 2h", "Tue 10:10"),
    ((10, 30), Demand(queued=1, oldest_age_s=60), False, "rule line 2", "Tue 12:00"),
    ((12, 2), Demand(queued=1), True, "rule line 2 '0 */4 * * * queue-run'", None),
    ((12, 2), Demand(queued=0), False, "nothing due", None),
    ((21, 0), Demand(queued=1, oldest_age_s=60), False, "after forbidden window", "Wed 06:00"),
    ((9, 17), Demand(urgent=1, calls_today=3), False, "budget exhausted (calls 3/3)", "Wed 00:00"),
    ((9, 17), Demand(queued=9, minutes_today=60), False, "budget exhausted (minutes 60/60)", "Wed 00:00"),
    ((12, 2), Demand(queued=1, last_dial=at(2026, 6, 2, 12, 1)), False, "oldest reaches 2h", "Tue 14:02"),
    ((12, 2), Demand(queued=1, last_dial=at(2026, 6, 2, 15, 0)), True, "rule line 2", None),
], ids=["urgent-forbidden", "urgent", "queued", "oldest", "oldest-later", "rule-later", "rule-catchup",
        "queue-run-empty", "rule-in-window", "budget-calls", "budget-minutes", "already-dialed", "clock-jumped-back"])
def test_decisions(when, demand, dial, reason, next_local):
    p = parse(POLICY)
    d = p.should_dial(at(2026, 6, 2, *when), demand)       # a Tuesday
    assert d.dial is dial, f"got {d}"
    assert reason in d.reason, f"got {d.reason!r}, want {reason!r}"
    assert (local(d.next_at) if d.next_at else None) == next_local, f"got {d.next_at}"


def test_urgent_schedule_setting_waits_for_rules():
    p = parse(POLICY + "set urgent = schedule\n")
    assert not p.should_dial(at(2026, 6, 2, 9, 17), Demand(urgent=1, queued=1)).dial


def test_explain_lines():
    p = parse(POLICY)
    assert p.explain(at(2026, 6, 2, 9, 17), Demand(urgent=2, queued=2)) == \
        "would dial now because urgent(2) (actions: etrn queue-run)"
    line = p.explain(at(2026, 6, 2, 23, 0), Demand(queued=1))
    assert line.startswith("would not dial now; next dial at Wed 2026-06-03 06:00 CEST because forbidden window")


def test_window_crossing_midnight_belongs_to_start_day():
    p = parse("timezone Europe/Berlin\nforbid fri 22:00-06:00\n")
    fri, sat, sun = at(2026, 6, 5, 23), at(2026, 6, 6, 5, 59), at(2026, 6, 7, 5)
    assert not p.allowed(fri) and not p.allowed(sat) and p.allowed(sun)


# --- schedule adapter ------------------------------------------------------------------

def test_compile_jobs_guards_day_hour_and_zone():
    p = parse("timezone Europe/Berlin\n*/15 8-17 * * mon-fri queue-run etrn\n0 3 1 * * poll\n")
    sched = schedule.Scheduler()
    now = [at(2026, 6, 1, 8, 15)]
    fired = []
    jobs = compile_jobs(p, sched, fired.append, now=lambda: now[0])
    assert len(jobs) == 5 and len(sched.get_jobs("dial-policy")) == 5
    by_minute = {j.at_time.minute: j for j in jobs if j.at_time.minute != 0 or True}
    for when, want in [((2026, 6, 1, 8, 15), 1), ((2026, 6, 6, 8, 15), 0), ((2026, 6, 1, 18, 15), 0)]:
        fired.clear()
        now[0] = at(*when)
        by_minute[15].job_func()
        assert len(fired) == want, f"{when}: got {len(fired)} want {want}"
    monthly = [j for j in jobs if j.at_time.minute == 0]
    now[0] = at(2026, 6, 1, 3, 0)
    for j in monthly:
        j.job_func()
    assert [r.actions for r in fired] == [frozenset({"poll"})]


# --- laws (hypothesis) --------------------------------------------------------------------

LAW_POLICY = parse(EXAMPLE.read_text() + "forbid sun 02:00-02:30\nforbid * 23:30-00:15\n30 2 * * * poll\n")
instants_2026 = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 31),
                             timezones=st.just(UTC))
dst_edges = st.sampled_from([datetime(2026, 3, 29, 1, 0, tzinfo=UTC), datetime(2026, 10, 25, 1, 0, tzinfo=UTC)])
near_dst = st.builds(lambda e, s: e + timedelta(seconds=s), dst_edges, st.integers(-7200, 7200))


@settings(max_examples=150, deadline=None)
@given(st.one_of(instants_2026, near_dst))
def test_law_next_due_after_now(now):
    t = LAW_POLICY.next_due(now)
    assert t is not None and t > now
    assert LAW_POLICY.next_due(t - timedelta(microseconds=1)) == t


@settings(max_examples=150, deadline=None)
@given(st.one_of(instants_2026, near_dst), st.floats(0, 1))
def test_law_allowed_constant_until_next_change(now, frac):
    nxt = LAW_POLICY.next_change(now)
    assert nxt is not None and nxt > now
    here = LAW_POLICY.allowed(now)
    probe = now + (nxt - now) * frac
    if probe < nxt:
        assert LAW_POLICY.allowed(probe) == here, f"{now}..{nxt}: changed at {probe}"
    assert LAW_POLICY.allowed(nxt - timedelta(microseconds=1)) == here
    assert LAW_POLICY.allowed(nxt) != here


def test_shipped_policy_parses_with_its_promises():
    p = parse(SHIPPED.read_text(), file=str(SHIPPED))
    assert p.zone == BERLIN and len(p.rules) == 3 and len(p.windows) == 1
    s = p.settings
    assert s.idle_hangup_s == 15 and s.calls_per_day == 80
    assert s.relative and s.dial_when_oldest_s == 14 * 60 and s.chargehup
    # office hours: an inbound poll every half hour on a Tuesday, counted from the last call
    tue = at(2026, 6, 2, 9, 0)
    assert p.next_due(tue) == at(2026, 6, 2, 9, 30)
    after_urgent = Demand(last_dial=at(2026, 6, 2, 9, 10))
    assert p.should_dial(at(2026, 6, 2, 9, 30), after_urgent).dial is False
    assert p.should_dial(at(2026, 6, 2, 9, 40), after_urgent).dial is True
    # the maintenance window forbids Sunday 03:00-04:00 local
    assert not p.allowed(at(2026, 6, 7, 3, 30)) and p.allowed(at(2026, 6, 7, 4, 0))


REDIAL = parse("timezone Europe/Berlin\n0 8 * * * queue-run\nset dial_when_queued = 5\nset redial_gap = 2m\n")


@pytest.mark.parametrize("demand,why", [
    (Demand(queued=1, urgent=1), "urgent(1)"),
    (Demand(queued=7), "queued(7>=5)"),
], ids=["urgent", "threshold"])
def test_redial_gap_stops_a_dial_loop(demand, why):
    # a call that could not deliver the urgent / threshold mail must not
    # redial at once when it hangs up: wait out the redial gap
    now = at(2026, 6, 2, 10, 0)
    first = REDIAL.should_dial(now, demand)
    assert first.dial and first.reason == why
    again = Demand(**{**demand.__dict__, "last_dial": now})
    d = REDIAL.should_dial(now + timedelta(seconds=30), again)
    assert not d.dial, d
    assert d.next_at == now + timedelta(minutes=2) and "redial gap" in d.reason
    assert REDIAL.should_dial(now + timedelta(minutes=2), again).dial


def test_redial_gap_does_not_hold_back_a_rule():
    dialed = at(2026, 6, 2, 7, 59)            # Berlin wall clock; the 08:00 rule fires next
    demand = Demand(queued=1, last_dial=dialed)
    d = REDIAL.should_dial(dialed + timedelta(seconds=70), demand)
    assert d.dial and d.reason.startswith("rule line 2")


@pytest.mark.parametrize("text, want", [
    ("set dial_when_queued = 3\n", "2 message(s) wait, held by dial_when_queued = 3 (2 of 3 queued)"),
    ("set idle_hangup = 1h\n", "2 message(s) wait, but no rule, dial_when_queued or dial_when_oldest dials for them"),
], ids=["below-threshold", "nothing-dials"])
def test_waiting_mail_that_makes_no_call_says_what_holds_it(text, want):
    d = parse(text).should_dial(at(2026, 6, 2, 9, 17), Demand(queued=2, oldest_age_s=60))
    assert (d.dial, d.reason, d.next_at) == (False, want, None)
    assert parse(text).should_dial(at(2026, 6, 2, 9, 17), Demand()).reason == "nothing due"


def test_failed_dial_backoff_is_the_fsms_first_backoff_at_least_one_second():
    from edgemail.config.model import LinkConfig
    from link.fsmconfig import fsm_config
    for text, want in [("", 60.0), ("set failed_dial_backoff = 3s\n", 3.0), ("set failed_dial_backoff = 0\n", 1.0)]:
        got = fsm_config(LinkConfig(), parse(text), ()).backoff_base_s
        assert got == want, f"{text!r}: got {got}, want {want}"
