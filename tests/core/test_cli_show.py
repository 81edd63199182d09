"""The daemon's replies in words (edgemail/cli/show.py): no Python reprs, the
link's phase only while it is up, recipients one per line."""

from __future__ import annotations

import pytest

from edgemail.cli.show import dial_text, hangup_text, hook_text, queue_show_text, status_text

NOW = 1_700_000_000.0


def _status(state: str, phase: str = "linger") -> dict:
    return {"version": "0.1.0", "pid": 42, "uptime_s": 3720, "queued": 2, "held": 0,
            "listeners": ["lan=[127.0.0.1]:25"], "control": "/run/edgemail/control.sock",
            "link": {"state": state, "phase": phase, "mode": "modem", "failed_dials": 0,
                     "holders": {"queue-run": 1} if state == "up" else {}, "inbound": 0},
            "queue": {"count": 2, "expensive": 1, "due": 1, "oldest_age_s": 300, "urgent": 0},
            "next": {"dial": False, "reason": "rule line 14 '*/15 8-17 * * mon-fri queue-run etrn'",
                     "at": "2023-11-14T22:28:20+00:00"},
            "budget_left": {"calls": 78, "minutes": 230.5}, "last_etrn": None, "last_call": None}


@pytest.mark.parametrize("state", ["down", "dialing", "connecting", "hanging-up", "backoff"])
def test_status_shows_no_phase_unless_the_link_is_up(state):
    text = status_text(_status(state), NOW)
    assert "linger" not in text and "phase" not in text, text


@pytest.mark.parametrize("phase, words", [("run", "queue run"), ("etrn", "waiting for the ETRN answers"),
                                          ("linger", "lingering until the line is quiet")])
def test_status_shows_the_phase_while_up(phase, words):
    link_line = next(line for line in status_text(_status("up", phase), NOW).splitlines() if line.startswith("link:"))
    assert link_line.startswith("link:        up (mode modem") and words in link_line, link_line
    assert "held up by queue-run (1)" in link_line


def test_status_in_words():
    text = status_text(_status("down"), NOW)
    assert "daemon:      pid 42, up 1h02m, version 0.1.0" in text
    assert "queue:       2 message(s), 0 held; 1 for the link, 1 due, oldest 5m00s, 0 urgent" in text
    assert "next dial:   at " in text and "(in 15m00s)" in text and "rule line 14" in text
    assert "budget left: 78 calls, 230.5 minutes today" in text
    assert "last ETRN:   none" in text and "last call:   none" in text
    for python in ("True", "False", "None", "{'", "[{"):
        assert python not in text, (python, text)


def test_status_without_a_link_manager():
    reply = {"version": "0.1.0", "pid": 7, "uptime_s": 5, "queued": 0, "held": 0, "listeners": [],
             "control": "/tmp/c.sock", "link": {"state": "none"}}
    text = status_text(reply, NOW)
    assert "link:        none (no link manager: [link] mode is \"none\")" in text
    assert "next dial" not in text and "listening:   none; control socket /tmp/c.sock" in text


def test_queue_show_lists_recipients_one_per_line():
    reply = {"qid": "kAM8abc0012345", "from": "s@edge.example", "size": 1234, "created": NOW - 7500,
             "priority": 30010, "attempts": 1, "next_attempt": NOW + 180, "held": False, "msgid": "m1@x",
             "proto": "ESMTP", "client": "[192.0.2.1]:2525",
             "recipients": [{"address": "a@x.example", "status": "deferred", "last_reply": "Connection refused"},
                            {"address": "bob@x.example", "status": "queued", "last_reply": ""}]}
    lines = queue_show_text(reply, NOW).splitlines()
    assert "queue id:     kAM8abc0012345" in lines and "from:         <s@edge.example>" in lines
    assert "recipients:   2" in lines and "held:         no" in lines
    assert "  <a@x.example>    deferred: Connection refused" in lines
    assert "  <bob@x.example>  queued" in lines
    assert any(line.startswith("queued:") and line.endswith("(2h05m ago)") for line in lines)
    assert any(line.startswith("attempts:     1, next ") and line.endswith("(in 3m00s)") for line in lines)


@pytest.mark.parametrize("fn, reply, want", [
    (dial_text, {"dialing": True, "state": "dialing"}, "dialing now, whatever the policy says (link dialing)"),
    (dial_text, {"dialing": False, "state": "up", "why": "link is up"}, "not dialing: link is up"),
    (hangup_text, {"hangup": True, "state": "up"}, "hanging up (link was up)"),
    (hangup_text, {"hangup": False, "state": "down"}, "nothing to hang up: link is down"),
])
def test_link_replies_in_words(fn, reply, want):
    assert fn(reply).startswith(want)


@pytest.mark.parametrize("reply, want", [
    ({"state": "up", "changed": True}, "ip-up: link up"),
    ({"state": "up", "changed": False}, "ip-up: link up (no change)"),
    ({"ignored": "interface ppp1 is not ppp0"}, "ip-up: ignored: interface ppp1 is not ppp0"),
    ({"message": "link up: host status cleared, queue run started"}, "ip-up: link up: host status cleared"),
])
def test_hook_replies_in_words(reply, want):
    assert hook_text("ip-up", reply).startswith(want)


def test_status_shows_cost_today_and_per_call():
    r = _status("down")
    r["last_call"] = {"start": "2023-11-14T22:00:00+00:00", "connect_s": 100.0, "bytes_sent": 1, "bytes_rcvd": 2,
                      "cause": "idle", "cost": 0.12}
    r["cost"] = {"today": 0.18, "calls_today": 2,
                 "recent": [{"start": "2023-11-14T22:00:00+00:00", "connect_s": 100.0, "cost": 0.12}]}
    text = status_text(r, NOW)
    assert "ended by idle, cost 0.12" in text
    assert "cost:        0.18 today (2 call(s)); recent calls: " in text and " 100s 0.12" in text, text
