"""Offline-aware DSN clocks in the live daemon (issue 14 §5), in hardware-sim (root).

retry.count_offline_time = false, on compressed timeouts (queuewarn 2 s,
offline_after 30 s): while the simulated modem answers nothing (a broken
modem: every dial fails before it reaches the network) the message ages not
at all, however long it waits, so no delay warning goes out; once the modem
works and the ISP's line is BUSY, the dials count and the warning follows;
once the line answers, the next call delivers the message (no return).
No assertion on elapsed time: the daemon's DSNs and its log are compared.
"""
from __future__ import annotations

import time

import pytest

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]
POLICY = ("set idle_hangup = 2s\nset max_connect = 60s\nset dial_when_queued = 1\nset redial_gap = 1s\n"
          "set failed_dial_backoff = 3s\n")
MAIL = "From: bob@edge.example\nTo: carol@remote1.example\nSubject: waits\n\nfor the line\n"
WARN_S = 2


def failed_dials(daemon, result: str) -> int:
    return daemon.log.read_text().count(f"link: state=BACKOFF, reason={result}")


def dial_until(daemon, pred, what: str, timeout: float = 90):
    """The policy's dials (dial_when_queued = 1; after failures 3, 6, 12, 24 s: the fifth
    failure in a row would back off an hour) until pred() holds."""
    return daemon.until(pred, timeout, what)


def test_a_broken_modem_ages_no_mail_busy_dials_do_and_the_first_call_delivers(world, edge_daemon):
    w = world(with_isp=True)
    w.modem_control("faults", silent=True)                   # the modem answers nothing, not even AT
    daemon = edge_daemon(w, policy=POLICY, overrides={
        "retry": {"count_offline_time": False, "offline_after": "30s"},
        "Timeout": {"queuewarn": f"{WARN_S}s", "queuereturn": "1h"}})
    daemon.start()
    daemon.cli("sendmail", "-t", "-i", "-f", "bob@edge.example", "-N", "delay,failure", text=MAIL)
    queued_at = time.monotonic()
    # the broken modem: dials that never reach the network, for 4 x queuewarn of wall time
    dial_until(daemon, lambda: failed_dials(daemon, "TIMEOUT") >= 2
               and time.monotonic() - queued_at > 4 * WARN_S, "two silent-modem dials over 4 x queuewarn")
    assert daemon.maildir("bob") == [], "a delay warning although the line could not be used"
    assert daemon.status()["queue"]["count"] == 1
    assert "dsn=delay" not in daemon.log.read_text()

    w.modem_control("faults", silent=False, result="BUSY")   # the modem works, the ISP is busy
    dial_until(daemon, lambda: daemon.maildir("bob"), "the delay warning after BUSY dials")
    (warning,) = daemon.maildir("bob")
    text = warning.read_bytes()
    assert b"Warning: could not send message for past 2 seconds" in text, text[:600]
    assert b"carol@remote1.example" in text and failed_dials(daemon, "BUSY") >= 1

    w.modem_control("clear")                                  # the line answers
    dial_until(daemon, lambda: w.sink_messages(), "delivery on the first call that connects")
    assert [m["rcpts"] for m in w.sink_messages()] == [["carol@remote1.example"]]
    daemon.until(lambda: daemon.status()["queue"]["count"] == 0, 20, "the queue emptied")
    assert "dsn=4.4.7" not in daemon.log.read_text() and len(daemon.maildir("bob")) == 1
