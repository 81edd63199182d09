"""Tariffs in the policy file (link/tariff.py via link.policyfile): the issue's
two tariffs priced by hand, zones, unit edges across a zone change, and the
parser's FILE:LINE: FIELD errors."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from link import policy
from link.accounting import Ledger

A_TEXT = "timezone Europe/Berlin\ntariff call 0.10\ntariff minute 0.04\n"
B_TEXT = ("timezone Europe/Berlin\ntariff unit 0.06 240s\n"
          "tariff unit 0.06 90s mon-fri 08:00-18:00\n")
A, B = policy.parse(A_TEXT), policy.parse(B_TEXT)
Z = B.zone


def at(day, h, m=0, s=0):
    return datetime(2024, 3, day, h, m, s, tzinfo=Z)         # 2024-03-05 is a Tuesday


@pytest.mark.parametrize("secs, cost", [(0, 0.10), (30, 0.12), (90, 0.16), (150, 0.20)])
def test_tariff_a_is_a_call_fee_plus_minutes_by_the_second(secs, cost):
    assert A.tariff.cost(at(5, 10), secs, Z) == pytest.approx(cost)


@pytest.mark.parametrize("secs, units", [(0, 1), (1, 1), (90, 1), (91, 2), (180, 2), (181, 3)])
def test_tariff_b_charges_the_first_unit_at_connect_and_one_per_started_unit(secs, units):
    # weekday 10:00: units of 90 s begin at 0, 90, 180 ... s after the connect; one that
    # begins as the call ends is not charged
    assert B.tariff.cost(at(5, 10), secs, Z) == pytest.approx(0.06 * units)


def test_a_unit_is_as_long_as_its_zone_says_where_it_starts():
    edges = list(B.tariff.unit_edges(at(5, 17, 59), at(5, 18, 10), Z))
    # 17:59 (90 s, office zone), 18:00:30 (after 18:00: 240 s), 18:04:30, 18:08:30
    assert [e.astimezone(Z).strftime("%H:%M:%S") for e in edges] == ["17:59:00", "18:00:30", "18:04:30", "18:08:30"]
    assert B.tariff.next_unit_edge(at(5, 17, 59), at(5, 18, 1), Z) == at(5, 18, 4, 30)
    assert B.tariff.cost(at(9, 10), 239, Z) == pytest.approx(0.06)      # Saturday: 240 s units


def test_no_tariff_costs_nothing_and_has_no_units():
    p = policy.parse("timezone Europe/Berlin\n")
    assert p.tariff.empty and p.tariff.cost(at(5, 10), 600, Z) == 0.0
    assert p.tariff.next_unit_edge(at(5, 10), at(5, 10, 5), Z) is None


def test_a_zoned_minute_price_wins_in_its_zone():
    p = policy.parse("tariff minute 0.04\ntariff minute 0.01 sat,sun 00:00-24:00\n")
    sat = datetime(2024, 3, 9, 12, tzinfo=timezone.utc)
    assert p.tariff.cost(sat, 120, p.zone) == pytest.approx(0.02)
    assert p.tariff.cost(sat.replace(day=8), 120, p.zone) == pytest.approx(0.08)


@pytest.mark.parametrize("line, error", [
    ("tariff unit 0.06", "dial.policy:2: tariff unit: expected the unit's length after the amount (90s, 4m)"),
    ("tariff unit cheap 90s", "dial.policy:2: tariff unit: 'cheap': expected an amount such as 0.06"),
    ("tariff unit 0.06 0s", "dial.policy:2: tariff unit: '0s': a unit must last more than 0 seconds"),
    ("tariff minute -1", "dial.policy:2: tariff minute: '-1': expected an amount >= 0"),
    ("tariff call 0.1 mon 08:00-09:00", "dial.policy:2: tariff call: a call fee has no zone"),
    ("tariff minute 0.1 mon 8-9", "dial.policy:2: tariff zone: '8-9': expected HH:MM-HH:MM"),
    ("tariff minute 0.1 funday 08:00-09:00", "dial.policy:2: day-of-week: 'funday'"),
    ("tariff fee 1", "dial.policy:2: tariff: expected `tariff call|minute|unit AMOUNT ...`"),
])
def test_bad_tariff_lines_name_file_line_and_field(line, error):
    with pytest.raises(policy.PolicyError) as e:
        policy.parse("timezone Europe/Berlin\n" + line + "\n", file="dial.policy")
    assert str(e.value).startswith(error), str(e.value)


def test_the_ledger_prices_each_call_from_its_connect_time_and_keeps_it(tmp_path):
    path = str(tmp_path / "link.json")
    ledger = Ledger(path, Z, tariff=B.tariff)
    ledger.record_call(at(5, 10), 100)                  # 2 units of 90 s
    ledger.record_call(at(5, 20), 100)                  # 1 unit of 240 s
    again = Ledger(path, Z, tariff=B.tariff)            # a restart
    assert again.usage(at(5, 21)).cost == pytest.approx(0.18)
    assert [c.cost for c in again.recent(5)] == [pytest.approx(0.12), pytest.approx(0.06)]
    assert again.last_call is not None and again.last_call.cost == pytest.approx(0.06)
