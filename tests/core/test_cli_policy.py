"""The dial policy without a daemon (edgemail/cli/policycmd.py): every bad
line named, and when the policy would next dial for an assumed queue."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from link.policy import Demand, parse

from edgemail.cli.base import UsageError
from edgemail.cli.policycmd import every_error, next_dial, parse_at, summary

ROOT = Path(__file__).resolve().parents[2]
BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = """timezone Europe/Berlin
*/15 8-17 * * mon-fri  queue-run etrn
0 */3 * * sat,sun      etrn
set budget.calls_per_day = 2
forbid mon 12:00-13:00
"""


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=BERLIN)


def test_every_bad_line_is_named_with_its_line():
    text = "timezone Mars/Olympus\n# fine\n*/15 8-17 * * mon-fri queue-run\n61 * * * * etrn\nset idle = 5\nforbid mon 13:00\n"
    got = [str(e) for e in every_error(text, "p.policy")]
    assert [g.split(":")[1] for g in got] == ["1", "4", "5", "6"], got
    assert got[0].startswith("p.policy:1: timezone: unknown zone")
    assert got[1] == "p.policy:4: minute: 61 out of range 0-59"
    assert every_error((ROOT / "etc" / "dial.policy").read_text(), "dial.policy") == []


def test_summary_of_a_good_policy():
    text = summary(parse(OFFICE, file="office.policy"), "office.policy")
    assert text.startswith("office.policy: OK: 2 rule(s), 1 forbidden window(s), timezone Europe/Berlin")
    assert "  line 2    */15 8-17 * * mon-fri  queue-run etrn" in text
    assert "  forbid mon 12:00-13:00" in text and "budget 2 calls and unlimited minutes a day" in text


@pytest.mark.parametrize("start, demand, want", [
    ("2024-06-03 07:50", Demand(queued=1), "2024-06-03 08:00"),                     # Monday: the first rule
    ("2024-06-03 08:00", Demand(queued=1), "2024-06-03 08:00"),                     # fires now
    ("2024-06-03 11:58", Demand(queued=1, last_dial=at("2024-06-03 11:45")), "2024-06-03 13:00"),  # forbidden
    ("2024-06-03 09:01", Demand(queued=1, calls_today=2), "2024-06-04 08:00"),       # budget: tomorrow
    ("2024-06-07 17:50", Demand(queued=0), "2024-06-08 00:00"),                      # no mail: etrn only
    ("2024-06-03 07:50", Demand(queued=1, urgent=1), "2024-06-03 07:50"),            # urgent: at once
], ids=["first-rule", "now", "after-forbidden", "budget-tomorrow", "weekend-etrn", "urgent"])
def test_next_dial_steps_the_core_until_it_dials(start, demand, want):
    found = next_dial(parse(OFFICE), at(start), demand)
    assert found is not None
    assert found[0].astimezone(BERLIN).strftime("%Y-%m-%d %H:%M") == want, found


def test_next_dial_never_with_nothing_to_do():
    assert next_dial(parse("0 * * * * queue-run\n"), at("2024-06-03 07:50"), Demand(queued=0)) is None


def test_the_mail_ages_while_stepping():
    policy = parse("set dial_when_oldest = 1h\n0 0 1 1 * queue-run\n")
    found = next_dial(policy, at("2024-06-03 07:50"), Demand(queued=1, oldest_age_s=600))
    assert found is not None and found[0] == at("2024-06-03 08:40") and found[1].reason.startswith("oldest(")


@pytest.mark.parametrize("text, want", [
    ("2024-06-03T07:50", "2024-06-03T07:50:00+02:00"),
    ("2024-06-03 07:50+00:00", "2024-06-03T07:50:00+00:00"),
    ("07:50", "2024-06-03T07:50:00+02:00"),
    ("now", "2024-06-03T04:00:00+00:00"),
])
def test_parse_at_reads_naive_times_in_the_policys_zone(text, want):
    now = datetime(2024, 6, 3, 4, 0, tzinfo=timezone.utc)
    assert parse_at(text, parse(OFFICE), now).isoformat() == want


def test_parse_at_refuses_nonsense_naming_the_zone():
    with pytest.raises(UsageError, match="Europe/Berlin.*'tomorrowish'"):
        parse_at("tomorrowish", parse(OFFICE), datetime.now(timezone.utc))


def test_policy_check_shows_tariff_cheap_windows_chargehup_and_the_relative_schedule():
    text = OFFICE + ("set schedule = relative\nset chargehup = on\nset unit_poll = 5m\nset big_mail = 2M\n"
                     "cheap sat,sun 00:00-24:00\ntariff unit 0.06 90s mon-fri 08:00-18:00\ntariff unit 0.06 240s\n")
    assert every_error(text, "p.policy") == []              # a big_mail line alone is fine, line by line
    out = summary(parse(text, file="p.policy"), "p.policy")
    assert "  tariff unit 0.06 90s mon-fri 08:00-18:00\n  tariff unit 0.06 240s\n" in out
    assert "  cheap sat,sun 00:00-24:00\n" in out
    assert "rules count from the last call (schedule = relative)" in out
    assert "chargehup: hang up 5 seconds before the next unit, one more ETRN in it when a poll is due within 5 minutes" in out
    assert "mail of 2000000 bytes or more waits for a cheap window unless urgent" in out
    no_cheap = text.replace("cheap sat,sun 00:00-24:00\n", "")
    (e,) = every_error(no_cheap, "p.policy")
    assert str(e).endswith("big_mail: set, but no `cheap DAYS HH:MM-HH:MM` line says when big mail may go")
