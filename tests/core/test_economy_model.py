"""The link-economy benchmark's model (tests/bench/economy_model.py) on tiny
cases whose call count, connected seconds and latency are computed by hand.

Line used throughout: goodput 1000 B/s, RTT 0.1 s, dial 20 s, pppd idle 120 s,
ISP push 5 s after ETRN.  A 2000-byte message in its own SMTP session costs
(3 + 4) * 0.1 + 2000 / 1000 = 2.7 s; an ETRN session 4 * 0.1 = 0.4 s.
Day 0 is Monday 2024-03-04 (Europe/Berlin); t = seconds since its midnight.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "bench" / "economy_model.py"
_spec = importlib.util.spec_from_file_location("economy_model", _PATH)
em = importlib.util.module_from_spec(_spec)
sys.modules["economy_model"] = em
_spec.loader.exec_module(em)

P = em.Params(days=1, goodput=1000.0, rtt=0.1, dial_s=20.0, pppd_idle_s=120.0, isp_push_delay=5.0)
H10 = 10 * 3600.0
MSG, ETRN = 2.7, 0.4


def load(out=(), inc=()) -> "em.Load":
    return em.Load(tuple(em.Msg(t, 2000, urgent) for t, urgent in out),
                   tuple(em.Msg(t, 2000) for t in inc))


def connected(r) -> float:
    return sum(s.end - s.dial for s in r.sessions)


def policy(*lines: str) -> str:
    return "\n".join(("timezone Europe/Berlin",) + lines) + "\n"


# --- background delivery + pppd demand dialing --------------------------------

def test_background_one_message_dials_at_once_and_shares_the_etrn_call():
    r = em.run_background(P, load(out=[(H10, False)]))
    (m,) = r.outgoing
    assert m.done - m.t == pytest.approx(20 + MSG)
    # ETRN cron at :01 every hour = 24 calls; the 10:00 message's call is
    # still up at 10:01, so the ETRN rides on it: 24 calls in all.
    assert len(r.sessions) == 24
    etrn_only = 20 + ETRN + 120                       # dial, ETRN, nothing pushed, idle
    shared = (60 + ETRN + 120)                        # 10:00 dial .. 10:01 ETRN .. idle
    assert connected(r) == pytest.approx(23 * etrn_only + shared)


def test_inbound_reaching_the_isp_while_the_line_is_up_goes_straight_through():
    r = em.run_background(P, load(out=[(H10, False)], inc=[H10 + 30]))
    (m,) = r.incoming
    assert m.done - m.t == pytest.approx(MSG)         # pipe idle since 10:00:22.7


# --- the seed's cron recipe ---------------------------------------------------

def test_recipe_sends_at_the_next_queue_run_and_every_etrn_dials():
    r = em.run_recipe(P, load(out=[(H10 + 300, False)]))          # 10:05
    (m,) = r.outgoing
    assert m.done - m.t == pytest.approx(600 + 20 + MSG)        # 10:15 queue run
    # Monday: 14 off-hours ETRNs + 40 office ETRNs; empty queue runs do not dial.
    assert len(r.sessions) == 54
    with_mail = 60 + ETRN + 120                                 # 10:15 dial .. 10:16 ETRN .. idle
    assert connected(r) == pytest.approx(53 * (20 + ETRN + 120) + with_mail)


def test_recipe_fetches_inbound_at_the_etrn_after_the_push_delay():
    r = em.run_recipe(P, load(inc=[H10]))
    (m,) = r.incoming                     # 10:01 dial, up 10:01:20, ETRN, push 5 s later
    assert m.done - m.t == pytest.approx(60 + 20 + ETRN + 5 + MSG)


# --- edgemail: the real policy core -------------------------------------------

def test_edgemail_waits_for_the_rule_then_runs_the_queue_and_etrn():
    text = policy("0 12 * * * queue-run", "set idle_hangup = 15s")
    r = em.run_edgemail(P, load(out=[(H10, False)]), text)
    (m,) = r.outgoing
    assert m.done - m.t == pytest.approx(2 * 3600 + 20 + MSG)
    assert len(r.sessions) == 1
    assert connected(r) == pytest.approx(20 + MSG + ETRN + 15)
    assert r.notes["dial_reasons"] == {"rule line 2": 1}


def test_edgemail_urgent_mail_dials_at_once():
    text = policy("0 12 * * * queue-run", "set idle_hangup = 15s")
    r = em.run_edgemail(P, load(out=[(H10, True)]), text)
    (m,) = r.outgoing
    assert m.done - m.t == pytest.approx(20 + MSG)
    assert len(r.sessions) == 1 and r.notes["dial_reasons"] == {"urgent": 1}


def test_edgemail_etrn_rule_fetches_inbound_and_hangs_up_after_the_push():
    text = policy("*/30 * * * * etrn", "set idle_hangup = 15s")
    r = em.run_edgemail(P, load(inc=[H10 + 600]), text)          # 10:10, next call 10:30
    (m,) = r.incoming
    assert m.done - m.t == pytest.approx(1200 + 20 + ETRN + 5 + MSG)
    call = next(s for s in r.sessions if s.dial == H10 + 1800)
    assert call.end - call.dial == pytest.approx(20 + ETRN + 5 + MSG + 15)
    assert len(r.sessions) == 48                                  # every half hour
    assert connected(r) == pytest.approx(47 * (20 + ETRN + 15) + (20 + ETRN + 5 + MSG + 15))


def test_edgemail_hanging_up_before_the_isp_pushes_leaves_mail_at_the_isp():
    text = policy("0 11 * * * etrn", "set idle_hangup = 3s")     # push comes 5 s after ETRN
    r = em.run_edgemail(P, load(inc=[H10]), text)
    (m,) = r.incoming
    assert m.done is None
    assert r.notes["pushes_missed"] == len(r.sessions) >= 1
    assert em.figures(r)["undelivered_in"] == 1


UNIT_TARIFF = ("tariff unit 0.06 240s", "tariff unit 0.06 90s mon-fri 08:00-18:00", "set chargehup = on",
               "set chargehup_margin = 5s", "set unit_poll = 5m", "set idle_hangup = 15s")


def test_edgemail_chargehup_keeps_the_paid_unit_and_polls_once_more_in_it():
    text = policy("4 10 * * * queue-run etrn", *UNIT_TARIFF)
    r = em.run_edgemail(P, load(out=[(H10, True)], inc=[H10 + 30]), text)
    call = r.sessions[0]
    # up at 10:00:20; the first unit (90 s) ends 10:01:50: hang up 5 s before it, after
    # one more ETRN 20 s before the hang-up (the 10:04 poll is due within 5 min), which
    # fetches the mail that reached the ISP at 10:00:30 and stands in for the 10:04 poll
    assert call.end - call.up == pytest.approx(85)
    assert r.notes["unit_polls"] == 1 and len(r.sessions) == 1
    tariffs = {"B": em.policy_core.parse("\n".join(UNIT_TARIFF)).tariff}
    assert em.call_cost(r.__class__("x", [call], [], [], 1), tariffs["B"]) == pytest.approx(0.06)


def test_edgemail_relative_schedule_counts_the_urgent_call_as_the_poll():
    text = policy("0 * * * * queue-run etrn", "set schedule = relative", "set idle_hangup = 15s")
    r = em.run_edgemail(P, load(out=[(H10 + 1200, True)]), text)   # urgent at 10:20
    starts = [s.dial for s in r.sessions if H10 <= s.dial < H10 + 7200]
    # fixed: 10:00, 10:20, 11:00; relative: 10:00, 10:20, then 11:20 (one hour after)
    assert starts == [H10, H10 + 1200, H10 + 4800]


def test_edgemail_budget_from_the_policy_holds_mail_until_midnight():
    text = policy("set urgent = immediate", "set budget.calls_per_day = 1", "set idle_hangup = 15s")
    r = em.run_edgemail(P, load(out=[(H10, True), (H10 + 3600, True)]), text)
    first, second = r.outgoing
    assert first.done - first.t == pytest.approx(20 + MSG)
    midnight = 86400.0
    assert second.done == pytest.approx(midnight + 20 + MSG)    # next local day's budget


# --- workload and figures -----------------------------------------------------

def test_urgent_mail_goes_after_the_transfer_in_progress_ahead_of_the_rest():
    """The runner's urgent first, in the model: a run of two normal messages
    (2.7 s, then 2.4 s), urgent mail sent 1 s in goes after the first
    (its own session, 2.7 s) and the second is delivered that much later."""
    sim = em.Sim()
    line = em.Line(sim, P, idle_s=120.0)
    line.dial("test")
    sim.run(P.dial_s + 0.001)                        # up at t = 20
    a, b, u = em.Msg(0, 2000), em.Msg(0, 2000), em.Msg(21, 2000, True)
    em.send_urgent_first(line, [a, b])
    sim.at(21.0, lambda: em.send_urgent_first(line, [u]))
    sim.run(22.0)
    assert (a.done, u.done, b.done) == pytest.approx((20 + MSG, 20 + 2 * MSG, 20 + 2 * MSG + 2.4))
    assert line.busy_until == pytest.approx(b.done)
    q = [em.Msg(0, 2000), em.Msg(0, 2000, True)]      # a queue run: urgent first
    em.send_urgent_first(line, q)
    assert q[1].done < q[0].done


def test_workload_is_reproducible_and_follows_the_stated_profile():
    p = em.Params()
    a, b, c = em.workload(p, seed=3), em.workload(p, seed=3), em.workload(p, seed=4)
    assert a == b and a != c
    assert len(a.outgoing) == 5 * p.out_per_day
    assert len(a.incoming) == 5 * p.in_per_day + 2 * p.in_weekend_per_day
    for msg in a.outgoing:                       # Mon-Fri 08:00-18:00 local only
        local = em.when(msg.t).astimezone(em.ZONE)
        assert local.weekday() < 5 and 8 <= local.hour < 18
    office_in = [msg for msg in a.incoming
                 if em.when(msg.t).astimezone(em.ZONE).weekday() < 5
                 and 8 <= em.when(msg.t).astimezone(em.ZONE).hour < 18]
    assert len(office_in) == 5 * round(p.in_per_day * p.in_office_share)


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 21)]
    assert em.percentile(values, 95) == 19.0
    assert em.percentile(values, 50) == 10.0
    assert em.percentile([7.0], 95) == 7.0


def test_the_bench_writes_the_table_goal_and_picture(tmp_path, capsys):
    import xml.etree.ElementTree as ET
    sys.path.insert(0, str(_PATH.parent))
    try:
        import economy
    finally:
        sys.path.remove(str(_PATH.parent))
    economy.SWEEP = economy.SWEEP[:2]                   # two variants keep it quick
    assert economy.main(["--out-per-day", "10", "--in-per-day", "20", "--seed", "3", "--out", str(tmp_path)]) == 0
    doc = __import__("json").loads((tmp_path / "economy.json").read_text())
    systems = {(r["system"], r["tariff"]) for r in doc["rows"]}
    assert systems == {(s, t) for s in ("edgemail", "recipe", "background") for t in "AB"}
    assert set(doc["goal"]) == {"custom/A", "custom/B"} and "cost <= 50% of recipe" in doc["goal"]["custom/A"]
    assert doc["params"]["custom"]["out_per_day"] == 10 and doc["seed"] == 3
    svg = ET.fromstring((tmp_path / "economy.svg").read_text())
    circles = [e for e in svg.iter() if e.tag.endswith("circle")]
    assert len(circles) == 3 * 2 * 2                    # dial.policy + 2 variants, 2 tariffs, p95 out and in
    out = capsys.readouterr().out
    assert "custom   edgemail   A" in out and "goal (issue 14)" in out
