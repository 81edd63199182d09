"""hoststatus: skip for the run and until Timeout.hoststatus, clear on link-up,
purgestat, hoststat listing, persistence (one small atomic file)."""

import os

import pytest

from edgemail.clock import FakeClock
from edgemail.delivery.hoststatus import HEADER, HostStatusCache, HostStatusStore

TIMEOUT = 1800.0


def failed_cache(clock, host="mx.far.example", run="run1"):
    c = HostStatusCache()
    c.record(host, clock.wall(), False, dsn="4.4.1", text="connect to mx.far.example[203.0.113.5]:25:\r\n timed out", run=run)
    return c


def test_failed_host_skipped_until_timeout_on_fake_clock():
    clock = FakeClock()
    c = failed_cache(clock)
    assert c.skip("MX.far.example", clock.wall(), TIMEOUT)
    clock.advance(TIMEOUT - 1)
    assert c.skip("mx.far.example", clock.wall(), TIMEOUT)
    clock.advance(1)
    assert not c.skip("mx.far.example", clock.wall(), TIMEOUT)


def test_skipped_for_rest_of_run_even_after_timeout():
    clock = FakeClock()
    c = failed_cache(clock, run="run1")
    clock.advance(2 * TIMEOUT)
    assert c.skip("mx.far.example", clock.wall(), TIMEOUT, run="run1")
    assert not c.skip("mx.far.example", clock.wall(), TIMEOUT, run="run2")


def test_timeout_zero_never_skips_across_runs():
    clock = FakeClock()
    c = failed_cache(clock)
    assert not c.skip("mx.far.example", clock.wall(), 0.0)


def test_ok_and_unknown_hosts_not_skipped():
    clock = FakeClock()
    c = HostStatusCache()
    c.record("ok.example", clock.wall(), True)
    assert not c.skip("ok.example", clock.wall(), TIMEOUT)
    assert not c.skip("never.example", clock.wall(), TIMEOUT)


def test_clock_went_back_entry_not_trusted():
    clock = FakeClock()
    c = failed_cache(clock)
    clock.jump_wall(-3600)
    assert not c.skip("mx.far.example", clock.wall(), TIMEOUT)


def test_clear_on_link_up():
    clock = FakeClock()
    c = failed_cache(clock)
    c.record("b.example", clock.wall(), False, dsn="4.0.0")
    assert c.clear() == 2
    assert not c.skip("mx.far.example", clock.wall(), TIMEOUT)
    assert c.entries == {}


def test_purgestat_removes_only_expired():
    clock = FakeClock()
    c = failed_cache(clock, host="old.example")
    clock.advance(TIMEOUT)
    c.record("new.example", clock.wall(), False, dsn="4.4.1")
    assert c.purge(clock.wall(), TIMEOUT) == ["old.example"]
    assert list(c.entries) == ["new.example"]


def test_hoststat_listing():
    clock = FakeClock()
    c = failed_cache(clock)
    clock.advance(2 * 86400 + 3723)
    c.record("ok.example", clock.wall() - 5, True)
    got = c.hoststat(clock.wall()).splitlines()
    assert got[0] == HEADER
    # sendmail's columns: lock flag, host left in 39, age right in 12, result
    assert got[1] == " " + "mx.far.example".ljust(39) + " " + "2+01:02:03".rjust(12) + \
        " 4.4.1 connect to mx.far.example[203.0.113.5]:25: timed out"
    assert got[2] == " " + "ok.example".ljust(39) + " " + "00:00:05".rjust(12) + " OK"
    assert c.hoststat(clock.wall(), width=5).splitlines()[1].endswith(" 4.4.1")


def test_store_round_trip_atomic_file(tmp_path):
    clock = FakeClock()
    c = failed_cache(clock)
    c.record("ok.example", clock.wall(), True)
    store = HostStatusStore(str(tmp_path))
    store.save(c)
    assert sorted(os.listdir(tmp_path)) == ["hoststat.json"]
    back = HostStatusStore(str(tmp_path)).load()
    assert back.entries == c.entries
    assert back.skip("mx.far.example", clock.wall() + 60, TIMEOUT)


@pytest.mark.parametrize("content", ["{not json", '{"version": 9}', '{"version": 1, "hosts": [{"x": 1}]}'],
                         ids=["syntax", "version", "fields"])
def test_store_unreadable_file_starts_empty_and_says_why(tmp_path, content):
    (tmp_path / "hoststat.json").write_text(content)
    store = HostStatusStore(str(tmp_path))
    assert store.load().entries == {}
    assert "unreadable host status" in store.problem and "hoststat.json" in store.problem


def test_store_missing_file_is_empty(tmp_path):
    store = HostStatusStore(str(tmp_path))
    assert store.load().entries == {} and store.problem == ""
