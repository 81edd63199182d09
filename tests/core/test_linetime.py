"""spool/linetime.py: the age Timeout.queuewarn/queuereturn count with
retry.count_offline_time = false (issue 14 §5): time the line was up or could
have been (a call, a dial that reached the network), never hours in which the
modem could not even dial; link.errors' placed flag; the config's checks."""

import pytest

from edgemail.config import loader as config
from edgemail.errors import ConfigError
from edgemail.envelope import Envelope, Recipient
from edgemail.spool import schedule as sch
from edgemail.spool.linetime import LineTime
from link.errors import DialFailed

T0 = 1_700_000_000.0
H, D = 3600.0, 86400.0


def cfg(**over):
    data = {"hostname": "gw.test", "local_domains": ["edge.example"],
            "Timeout": {"queuewarn": "4h", "queuereturn": "5d"}}
    data.update(over)
    return config.from_dict(data)


def env():
    return Envelope("a@edge.example", (Recipient("b@remote.test"),))


def broken_week() -> LineTime:
    """A week: the modem answers nothing to AT every 30 min (never placed)."""
    lt = LineTime(vouch_s=2 * H)
    for k in range(7 * 48):
        lt.tried(T0 + k * 1800, placed=False)
    return lt


def busy_week() -> LineTime:
    """A week: every dial, every 30 min, meets BUSY (placed)."""
    lt = LineTime(vouch_s=2 * H)
    for k in range(7 * 48):
        lt.tried(T0 + k * 1800, placed=True)
    return lt


CASES = [
    # (id, events [(kind, t)], t0, now, want seconds)
    ("nothing-known-nothing-counts", [], T0, T0 + 10 * H, 0.0),
    ("a-call-counts-and-vouches-after", [("up", T0 + H), ("down", T0 + 1.5 * H)], T0, T0 + 10 * H,
     0.5 * H + 2 * H),
    ("a-busy-dial-vouches-vouch_s", [("placed", T0)], T0, T0 + 10 * H, 2 * H),
    ("a-silent-modem-ends-the-span", [("placed", T0), ("unplaced", T0 + 0.5 * H)], T0, T0 + 10 * H,
     0.5 * H),
    ("dials-every-hour-count-it-all", [("placed", T0 + k * H) for k in range(10)], T0, T0 + 10 * H,
     10 * H),
    ("only-after-arrival", [("placed", T0)], T0 + H, T0 + 10 * H, 1 * H),
    ("up-and-vouched-overlap-count-once", [("placed", T0), ("up", T0 + 0.5 * H), ("down", T0 + H)],
     T0, T0 + 10 * H, 3 * H),
    ("open-call-counts-to-now", [("up", T0 + H)], T0, T0 + 3 * H, 2 * H),
    ("placed-again-after-broken", [("unplaced", T0), ("placed", T0 + 5 * H)], T0, T0 + 6 * H, 1 * H),
]


@pytest.mark.parametrize("events,t0,now,want", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_line_since(events, t0, now, want):
    lt = LineTime(vouch_s=2 * H)
    for kind, t in events:
        if kind == "up":
            lt.up(t)
        elif kind == "down":
            lt.down(t)
        else:
            lt.tried(t, placed=kind == "placed")
    got = lt.line_since(t0, now)
    assert got == pytest.approx(want), f"got {got / H:.2f} h, want {want / H:.2f} h"


def test_a_week_with_a_broken_modem_neither_warns_nor_returns():
    c = cfg(retry={"count_offline_time": False}, link={"mode": "modem"})
    lt, now = broken_week(), T0 + 7 * D
    aged = lt.line_since(T0, now)
    assert aged == 0.0
    assert not sch.warn_due(env(), T0, now, c, link_up_s=aged)
    assert not sch.expired(env(), T0, now, c, link_up_s=aged)
    assert not lt.counting(now)
    assert sch.expired(env(), T0, now, cfg())           # sendmail's clock: 7 days > 5 days


def test_a_week_of_busy_dials_counts_as_the_wall_clock():
    c = cfg(retry={"count_offline_time": False}, link={"mode": "modem"})
    lt, now = busy_week(), T0 + 7 * D
    assert lt.line_since(T0, now) == pytest.approx(7 * D)
    assert sch.expired(env(), T0, now, c, link_up_s=lt.line_since(T0, now))
    assert lt.counting(now) and not lt.counting(now + 2 * H)       # no dial since: no longer vouched


def test_counted_age_asks_for_the_line_time():
    c = cfg(retry={"count_offline_time": False}, link={"mode": "modem"})
    with pytest.raises(ValueError, match="link_up_s"):
        sch.expired(env(), T0, T0 + D, c)


def test_rebase_and_prune_move_the_vouched_spans():
    lt = LineTime(vouch_s=H)
    lt.tried(T0, placed=True)
    lt.rebase(10 * H)
    assert lt.vouched == [(T0 + 10 * H, T0 + 11 * H)]
    lt.prune(T0 + 12 * H)
    assert lt.vouched == []


@pytest.mark.parametrize("result,placed", [("BUSY", True), ("NO CARRIER", True), ("NO ANSWER", True),
                                           ("TIMEOUT", True), ("NO DIALTONE", False), ("ERROR", False)])
def test_dial_failed_says_whether_the_call_was_placed(result, placed):
    assert DialFailed(result).placed is placed
    assert DialFailed(result, placed=False).placed is False        # the modem silent to AT


@pytest.mark.parametrize("over,key,says", [
    ({"retry": {"count_offline_time": False, "count_link_up_time_only": True}},
     "retry.count_offline_time", "contradicts count_link_up_time_only"),
    ({"retry": {"count_offline_time": False}, "link": {"mode": "none"}},
     "retry.count_offline_time", "needs a link that dials"),
    ({"retry": {"count_offline_time": False, "offline_after": 0}, "link": {"mode": "modem"}},
     "retry.offline_after", "above 0"),
], ids=["with-link-up-only", "with-mode-none", "offline-after-zero"])
def test_config_refuses(over, key, says):
    with pytest.raises(ConfigError) as err:
        cfg(**over)
    assert err.value.key == key and says in str(err.value), str(err.value)


def test_config_takes_the_option():
    c = cfg(retry={"count_offline_time": False, "offline_after": "90m"}, link={"mode": "external"})
    assert c.retry.count_offline_time is False and c.retry.offline_after == 5400.0
    assert cfg().retry.count_offline_time is True
