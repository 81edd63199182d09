"""The live daemon keeps the bench's relative schedule (issue 14 §3, "one test
runs the daemon in hardware-sim ... and checks that its calls match the
model's"), on a compressed schedule: a rule every minute instead of every
half hour, in hardware-sim (root).

An operator's call, then urgent mail: the urgent call counts as the next
poll, so the daemon's next dial is one spacing (60 s) after the urgent call's
request, not at the next minute boundary a fixed cron slot would take; the
daemon's own answer (status: next dial at) is what the pure core and the
bench's model (tests/bench/economy_model.py, same policy text, same events)
say, and the third call's reason names the urgent call it counts from.
No assertion on elapsed time: the daemon's decisions are compared.
"""
from __future__ import annotations

import importlib.util
import re
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from link.policy import Demand, parse

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]
POLICY = ("* * * * * queue-run etrn\nset schedule = relative\nset idle_hangup = 2s\n"
          "set max_connect = 60s\nset urgent = immediate\nset redial_gap = 5s\n")
URGENT = "From: bob@edge.example\nTo: dave@remote2.example\nPrecedence: urgent\nSubject: urgent\n\nnow\n"
_MODEL = Path(__file__).resolve().parents[1] / "bench" / "economy_model.py"


def economy_model():
    spec = importlib.util.spec_from_file_location("economy_model", _MODEL)
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("economy_model", mod)
    spec.loader.exec_module(mod)
    return mod


class Dials(threading.Thread):
    """The daemon's `link: state=DIALING, reason=...` lines, as they are logged."""

    def __init__(self, log: Path) -> None:
        super().__init__(daemon=True)
        self.log, self.reasons, self.done = log, [], threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            text = self.log.read_text() if self.log.exists() else ""
            self.reasons = re.findall(r"link: state=DIALING, reason=(.*)", text)


def test_the_daemons_next_call_is_one_spacing_after_the_urgent_call_as_in_the_model(world, edge_daemon):
    w = world(with_isp=True)
    daemon = edge_daemon(w, policy=POLICY)
    daemon.start()
    dials = Dials(daemon.log)
    dials.start()
    state = lambda: daemon.status()["link"]["state"]
    try:
        daemon.cli("edgemail", "link", "dial")                         # the call the schedule counts from
        daemon.until(lambda: state() == "up", 30, "the operator's call up")
        daemon.until(lambda: state() == "down", 30, "its idle hang-up")
        daemon.sendmail(URGENT)
        asked = daemon.until(lambda: (p := daemon.status()["policy"]) and p["dial"] and "urgent" in p["reason"]
                             and p, 30, "the urgent dial")
        urgent_at = datetime.fromisoformat(asked["at"])               # the urgent call's request time
        daemon.until(lambda: state() == "up", 30, "the urgent call up")
        daemon.until(lambda: state() == "down", 30, "its idle hang-up")
        nxt = daemon.until(lambda: (n := daemon.status()["next"]) and n.get("at") and n, 10, "the next dial")
        daemon.until(lambda: len(dials.reasons) >= 3, 120, "the third call")
    finally:
        dials.done.set()
    pol = parse(POLICY)
    core = pol.should_dial(urgent_at + timedelta(seconds=10), Demand(last_dial=urgent_at)).next_at
    assert datetime.fromisoformat(nxt["at"]) == core == urgent_at + timedelta(seconds=60), (nxt, core, urgent_at)
    assert "one spacing after the call at" in nxt["reason"], nxt

    # the bench's model: the same policy and an urgent message dial at the same spacing
    em = economy_model()
    t_urgent = 3 * 3600 + 45.5               # off the minute, the line down (its calls dial at :00)
    r = em.run_edgemail(em.Params(days=1), em.Load((em.Msg(t_urgent, 2000, True),), ()), POLICY)
    after = [s.dial for s in r.sessions if s.dial >= t_urgent]
    assert after[0] == t_urgent and after[1] - after[0] == (core - urgent_at).total_seconds(), after[:3]

    first, second, third = dials.reasons[:3]
    assert second.startswith("urgent"), dials.reasons
    stamp = urgent_at.astimezone(pol.zone).strftime("%H:%M")
    assert third == f"rule line 1 '* * * * * queue-run etrn' (one spacing after the call at {stamp})", dials.reasons
