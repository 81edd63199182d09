"""The policy core's economy (issue 14 §2, §3): a schedule relative to the
last call, chargehup at the end of a paid unit, one more ETRN in the unit.
Local times Europe/Berlin; 2026-06-02 is a Tuesday (CEST, UTC+2)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from link.policy import Demand, PolicyError, parse

BERLIN = ZoneInfo("Europe/Berlin")
RULES = ("timezone Europe/Berlin\n*/15 8-17 * * mon-fri queue-run etrn\n"
         "0 0-7,18-23 * * mon-fri queue-run etrn\n")
RELATIVE = parse(RULES + "set schedule = relative\n")
FIXED = parse(RULES)
UNITS = ("tariff unit 0.06 240s\ntariff unit 0.06 90s mon-fri 08:00-18:00\n"
         "set idle_hangup = 15s\nset chargehup = on\nset chargehup_margin = 5s\nset unit_poll = 60s\n")


def t(h, m=0, s=0, day=2):
    return datetime(2026, 6, day, h, m, s, tzinfo=BERLIN)


def test_an_urgent_call_counts_as_the_next_poll():
    after = Demand(last_dial=t(10, 5))                  # an urgent call at 10:05
    assert FIXED.should_dial(t(10, 15), after).dial     # fixed slots: 10:15 dials again
    assert not RELATIVE.should_dial(t(10, 15), after).dial
    d = RELATIVE.should_dial(t(10, 19), after)
    assert not d.dial and d.next_at == t(10, 20)
    assert "one spacing after the call at 10:05" in d.reason
    go = RELATIVE.should_dial(t(10, 20), after)
    assert go.dial and go.reason.startswith("rule line 2 '*/15 8-17") and go.actions == {"queue-run", "etrn"}


def test_the_spacing_is_the_schedules_where_the_last_call_was():
    # 17:50: the next two firings are 18:00 and 19:00 (nights: hourly) -> due 18:50
    assert RELATIVE.should_dial(t(18, 49), Demand(last_dial=t(17, 50))).next_at == t(18, 50)
    # 07:40: the next two are 08:00 and 08:15 -> due 07:55, never later than the fixed 08:15
    assert RELATIVE.should_dial(t(7, 50), Demand(last_dial=t(7, 40))).next_at == t(7, 55)


def test_the_last_poll_counts_rather_than_the_dial():
    d = Demand(last_dial=t(10, 0), last_poll=t(10, 2))   # one more ETRN late in the call
    assert RELATIVE.should_dial(t(10, 16), d).next_at == t(10, 17)


def test_no_earlier_call_or_a_clock_gone_back_uses_the_fixed_times():
    assert RELATIVE.should_dial(t(10, 14), Demand()).next_at == t(10, 15)
    assert RELATIVE.should_dial(t(10, 15), Demand(last_dial=t(11, 0))).dial


def test_a_queue_run_only_rule_gives_no_spacing_with_nothing_queued():
    p = parse("*/5 * * * * queue-run\n0 * * * * etrn\nset schedule = relative\n")
    # nothing queued: only the hourly etrn rule counts -> one hour after 10:07
    d = p.should_dial(datetime(2026, 6, 2, 10, 30, tzinfo=BERLIN), Demand(last_dial=datetime(2026, 6, 2, 10, 7, tzinfo=BERLIN)))
    assert not d.dial and d.next_at == datetime(2026, 6, 2, 11, 7, tzinfo=BERLIN)
    d = p.should_dial(datetime(2026, 6, 2, 10, 12, tzinfo=BERLIN), Demand(queued=1, last_dial=datetime(2026, 6, 2, 10, 7, tzinfo=BERLIN)))
    assert d.dial


def test_chargehup_hangs_up_just_before_the_next_unit():
    p = parse(RULES + UNITS)
    up = t(10)
    # quiet at 10:00:30: idle ends 10:00:45, the unit (90 s) ends 10:01:30 -> hang up 10:01:25
    assert p.hangup_at(up, t(10, 0, 30)) == t(10, 1, 25)
    # quiet at 10:01:12: 8 s of quiet and the 5 s margin fit before 10:01:30 -> 10:01:25,
    # where the idle timer alone (10:01:27) would have paid the next unit
    assert p.hangup_at(up, t(10, 1, 12)) == t(10, 1, 25)
    # quiet at 10:01:20: they do not fit -> the next unit is paid, hang up 10:02:55
    assert p.hangup_at(up, t(10, 1, 20)) == t(10, 2, 55)
    # in the evening the unit is 240 s
    assert p.hangup_at(t(20), t(20, 0, 30)) == t(20, 3, 55)


def test_without_units_or_chargehup_the_idle_timer_hangs_up():
    quiet = t(10, 0, 30)
    assert parse(RULES + "tariff call 0.1\ntariff minute 0.04\nset chargehup = on\n").hangup_at(t(10), quiet) \
        == quiet + timedelta(seconds=120)
    assert parse(RULES + UNITS.replace("chargehup = on", "chargehup = off")).hangup_at(t(10), quiet) \
        == quiet + timedelta(seconds=15)


def test_one_more_etrn_in_the_paid_unit_when_the_next_poll_is_due_soon():
    p = parse(RULES.replace("*/15 8-17", "*/30 8-17") + UNITS.replace("unit_poll = 60s", "unit_poll = 5m"))
    hangup = t(10, 28, 25)
    assert p.next_poll(t(10, 27), Demand()) == t(10, 30)
    assert p.unit_poll_at(t(10, 27), hangup, p.next_poll(t(10, 27), Demand())) == t(10, 28, 5)
    assert p.unit_poll_at(t(10, 27), t(10, 20), t(10, 30)) is None          # 10 min ahead: not soon
    # the poll it stood in for does not dial again: fixed and relative alike
    stood_in = Demand(last_dial=t(10, 27), last_poll=t(10, 30))
    assert not p.should_dial(t(10, 30), stood_in).dial
    rel = parse(RULES.replace("*/15 8-17", "*/30 8-17") + "set schedule = relative\nset unit_poll = 5m\n")
    assert rel.should_dial(t(10, 59), stood_in).next_at == t(11, 0)          # 30 min after 10:30


@pytest.mark.parametrize("line, error", [
    ("set schedule = sometimes", "p:1: schedule: 'sometimes': expected fixed or relative"),
    ("set chargehup = yes", "p:1: chargehup: 'yes': expected off or on"),
    ("set unit_poll = soon", "p:1: unit_poll: 'soon': expected"),
])
def test_bad_economy_settings_name_the_line(line, error):
    with pytest.raises(PolicyError) as e:
        parse(line + "\n", file="p")
    assert str(e.value).startswith(error), str(e.value)


class _Clock:
    """wall = monotonic + 1_780_000_000 (2026-05-28), fixed."""

    def wall(self) -> float:
        return 1_780_000_000.0 + 500.0

    def monotonic(self) -> float:
        return 500.0


def test_the_manager_gives_the_fsm_the_policys_chargehup_on_its_monotonic_clock():
    from link.fsmconfig import hangup_plan
    assert hangup_plan(FIXED, _Clock()) is None                              # no tariff, no plan
    p = parse(RULES + UNITS)
    plan = hangup_plan(p, _Clock())
    assert plan is not None
    up = t(10).timestamp() - 1_780_000_000.0                                  # monotonic of 10:00:00
    assert plan(up, up + 30) == pytest.approx(up + 85)                       # 5 s before the 90 s edge


# --- big mail waits for a cheap window (link.bigmail) ---------------------------------

BIGP = parse("timezone Europe/Berlin\nset big_mail = 1M\ncheap mon-fri 18:00-08:00\ncheap sat,sun 00:00-24:00\n")


def test_big_mail_waits_outside_the_cheap_windows_unless_urgent():
    from link import bigmail
    w = bigmail.waits(BIGP, 2_000_000, False, t(10))
    assert w is not None and w.until == t(18)
    assert w.reason == ("big mail (2000000 bytes >= big_mail 1000000) waits for a cheap window "
                        "(mon-fri 18:00-08:00, sat,sun 00:00-24:00): Tue 18:00")
    assert bigmail.waits(BIGP, 2_000_000, True, t(10)) is None          # urgent goes
    assert bigmail.waits(BIGP, 999_999, False, t(10)) is None           # small goes
    assert bigmail.waits(BIGP, 2_000_000, False, t(19)) is None         # in the window
    assert bigmail.waits(BIGP, 2_000_000, False, t(7, day=3)) is None   # Wed 07:00: Tuesday's window
    assert bigmail.waits(parse("set big_mail = 0\n"), 10**9, False, t(10)) is None


@pytest.mark.parametrize("text, error", [
    ("set big_mail = 1M\n", "p:1: big_mail: set, but no `cheap DAYS HH:MM-HH:MM` line"),
    ("set big_mail = lots\n", "p:1: big_mail: 'lots': expected a size in bytes"),
    ("cheap mon-fri\n", "p:1: cheap: expected `cheap DAYS HH:MM-HH:MM`"),
    ("cheap mon 18-08\n", "p:1: cheap window: '18-08': expected HH:MM-HH:MM"),
])
def test_bad_big_mail_lines_name_the_line(text, error):
    with pytest.raises(PolicyError) as e:
        parse(text, file="p")
    assert str(e.value).startswith(error), str(e.value)


def test_the_link_answers_the_runner_from_its_policy_and_clock():
    from link.policydriver import PolicyDriver
    pd = PolicyDriver(BIGP, clock=_Clock(), scheduler=None, on_rule=lambda rule: None)
    # _Clock's wall: Thu 2026-05-28 22:35 CEST: inside the evening window
    assert pd.big_mail_wait(2_000_000, False) == ""
    assert pd.big_mail_wait(2_000_000, False, t(10)).endswith(": Tue 18:00")
    assert pd.big_mail_wait(10, False, t(10)) == ""
