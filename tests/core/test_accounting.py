"""Accounting: per-day calls/minutes/bytes in the policy's zone, durable across restarts."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from link.accounting import Ledger, Usage, from_ip_down_env

BERLIN = ZoneInfo("Europe/Berlin")


def t(day, h, m=0):
    return datetime(2026, 6, day, h, m, tzinfo=BERLIN)


def test_calls_and_minutes_per_local_day_survive_restart(tmp_path):
    path = str(tmp_path / "link.json")
    ledger = Ledger(path, "Europe/Berlin")
    ledger.record_call(t(2, 9), 300, 1000, 20000, number="5551234", cause="idle")
    ledger.record_call(t(2, 23, 50), 1800, 10, 20)          # counted whole on the 2nd
    ledger.record_call(t(3, 0, 30), 60)
    again = Ledger(path, BERLIN)                              # a restart
    assert again.usage(t(2, 12)) == Usage(2, 2100.0, 1010, 20020)
    assert again.usage(t(3, 12)) == Usage(1, 60.0, 0, 0)
    assert again.last_call.cause == "" and again.last_call.connect_s == 60
    assert os.listdir(tmp_path) == ["link.json"]              # no temporary file left


def test_day_follows_zone_not_utc(tmp_path):
    ledger = Ledger(str(tmp_path / "s.json"), BERLIN)
    ledger.record_call(datetime(2026, 6, 2, 22, 30, tzinfo=ZoneInfo("UTC")), 60)   # 00:30 on the 3rd in Berlin
    assert ledger.usage(t(3, 1)).calls == 1 and ledger.usage(t(2, 12)).calls == 0


def test_budget_left_counts_call_in_progress(tmp_path):
    ledger = Ledger(str(tmp_path / "s.json"), BERLIN)
    ledger.record_call(t(2, 9), 30 * 60)
    assert ledger.budget_left(t(2, 10), 3, 60) == (2, 30.0)
    # the call in progress counts as a call and its 40 minutes so far
    assert ledger.budget_left(t(2, 10, 40), 3, 60, active_since=t(2, 10)) == (1, 0.0)
    assert ledger.budget_left(t(2, 10), 0, 0) == (None, None)


def test_old_days_are_pruned(tmp_path):
    ledger = Ledger(str(tmp_path / "s.json"), BERLIN, keep_days=7)
    ledger.record_call(t(1, 9), 60)
    ledger.record_call(t(1, 9) + timedelta(days=20), 60)
    assert list(ledger.days) == ["2026-06-21"]


@pytest.mark.parametrize("content", [b"{not json", b'{"version": 99, "days": {}}', b'{"version": 1}',
                                     b'{"version": 1, "days": {"x": {"calls": 1}}}', b"\xff\xfe"])
def test_corrupt_state_file_is_moved_aside_and_ledger_starts_empty(tmp_path, caplog, content):
    path = tmp_path / "link.json"
    path.write_bytes(content)
    ledger = Ledger(str(path), BERLIN)
    assert ledger.days == {} and (tmp_path / "link.json.corrupt").read_bytes() == content
    assert "status=corrupt" in caplog.text
    ledger.record_call(t(2, 9), 60)
    assert json.loads(path.read_text())["days"]["2026-06-02"]["calls"] == 1


def test_ip_down_environment():
    assert from_ip_down_env({"CONNECT_TIME": "311", "BYTES_SENT": "5120", "BYTES_RCVD": "80000"}) == (311.0, 5120, 80000)
    assert from_ip_down_env({}) == (0.0, 0, 0)
    with pytest.raises(ValueError, match="BYTES_SENT='lots'"):
        from_ip_down_env({"BYTES_SENT": "lots"})
    with pytest.raises(ValueError, match="CONNECT_TIME='-5' is negative"):
        from_ip_down_env({"CONNECT_TIME": "-5"})


def test_naive_start_is_refused(tmp_path):
    with pytest.raises(ValueError, match="aware"):
        Ledger(str(tmp_path / "s.json")).record_call(datetime(2026, 6, 2, 9), 60)
