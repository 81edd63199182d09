"""chargehup in the live daemon (issue 14 §2), in hardware-sim (root).

A unit tariff (30 s units), chargehup on, idle_hangup ten minutes: the call
that delivers a message is hung up just before a unit edge once the line is
quiet, not ten minutes after the traffic (the wait below would run out first),
and the ledger prices the call by the tariff from its real connect time.
The hang-up time itself is not asserted (a loaded machine may be late).
"""
from __future__ import annotations

import math

import pytest

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]
UNIT_S, IDLE_S = 30, 600
POLICY = (f"tariff unit 0.06 {UNIT_S}s\nset chargehup = on\nset chargehup_margin = 5s\n"
          f"set chargehup_quiet = 1s\nset idle_hangup = {IDLE_S}s\nset max_connect = 15m\n"
          "set dial_when_queued = 1\nset redial_gap = 1s\n")


def test_chargehup_hangs_up_before_the_unit_edge_not_after_idle_hangup(world, edge_daemon):
    w = world(with_isp=True)
    daemon = edge_daemon(w, policy=POLICY)
    daemon.start()
    daemon.sendmail("From: bob@edge.example\nTo: carol@remote1.example\nSubject: unit\n\nhello\n")
    daemon.until(lambda: w.sink_messages(), 60, "delivery on the call")
    daemon.until(lambda: daemon.status()["link"]["state"] == "down", 3 * UNIT_S,
                 f"the chargehup hang-up (idle_hangup alone would take {IDLE_S} s)")
    st = daemon.status()
    call = st["last_call"]
    assert call is not None and 0 < call["connect_s"] < IDLE_S, call
    units = math.ceil(call["connect_s"] / UNIT_S)
    assert call["cost"] == pytest.approx(0.06 * units), call         # priced from the real connect time
    log = daemon.log.read_text()
    assert log.count("link: state=DIALING, reason=") == 1 and "state=HANGING_UP, reason=chargehup" in log, log[-2000:]
