"""ConnectionRate (smtpd/policy.py): fixed windows per client, and memory
bounded however many clients connect."""

from __future__ import annotations

import pytest

from edgemail.smtpd.policy import ConnectionRate


def test_a_window_counts_from_its_first_connection_for_one_unit():
    rate = ConnectionRate(60.0)
    got = [rate.count("192.0.2.1", t) for t in (0.0, 10.0, 59.9, 60.0, 61.0)]
    assert got == [1, 2, 3, 1, 2], f"got {got}, want a new window at t=60"


def test_clients_are_counted_apart():
    rate = ConnectionRate(60.0)
    assert [rate.count(ip, 0.0) for ip in ("192.0.2.1", "192.0.2.2", "192.0.2.1")] == [1, 1, 2]


def test_ended_windows_are_forgotten_as_time_passes():
    rate = ConnectionRate(60.0)
    for n in range(1000):
        rate.count(f"10.0.{n // 250}.{n % 250}", n * 0.01)
    assert len(rate) == 1000
    rate.count("192.0.2.9", 70.0)
    assert len(rate) == 1, "every window that ended before t=70 is gone"


@pytest.mark.parametrize("clients", [5_000, 50_000])
def test_a_flood_from_many_addresses_is_bounded(clients):
    rate = ConnectionRate(60.0, max_clients=1000)
    for n in range(clients):
        rate.count(f"2001:db8::{n:x}", 0.0)
    assert len(rate) == 1000, f"got {len(rate)} windows, want at most 1000"
    assert rate.count(f"2001:db8::{clients - 1:x}", 0.0) == 2, "the newest clients are the ones kept"
