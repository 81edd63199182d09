"""report.py - what the link manager says about itself: status() and explain() (DRIVER's words, no I/O).

NAME
    report - status(mgr) -> dict; explain(mgr) -> str; stopped(fsm) -> dict | None;
    stopped_text(event) -> str

SYNOPSIS
    report.status(mgr)     # the daemon's `status` op (`edgemail status`, --json, STATUS=)
    report.explain(mgr)    # `edgemail link explain`: would it dial, why, what waits

DESCRIPTION
    Reads the manager's parts (link.manager: its FSM, policy driver, call
    driver and port) and says what they know, in one place, so that the
    answers agree with each other and with the log:

    - the phase (queue run, ETRN, linger) exists only while the link is UP:
      elsewhere it is None (a line never dialled has no phase);
    - a stop after a setup error (link.fsm `stopped`: pppd's bad options,
      no kernel support, a program that cannot be run) is in status
      (link.stopped: cause, text, fix), and explain says what to fix and
      how to go on (`systemctl reload edgemail`, or `edgemail link dial`
      to try once); the daemon's STATUS= text is made from status;
    - explain says what waits for the link (how many messages, the oldest,
      the urgent ones) and, while nothing dials for them, the policy's
      reason (which threshold holds them) and that `edgemail link dial`
      sends them now.

NEVER
    Changes the manager: the policy is asked through its pure core
    (should_dial), not through the loop's bookkeeping.
"""

from __future__ import annotations

from link.durations import describe
from link.policy import Demand
from link.port import wall_now
from link.transitions import LinkState, SetupBroken


def status(mgr) -> dict:
    """The manager's facts: the link, the queue it sees, the next dial, the budget, the last ETRN and call."""
    now = wall_now(mgr.clock)
    q = mgr.queue()
    s = mgr.policy.settings
    fsm = mgr.fsm
    return {
        "link": {"state": mgr.state, "phase": fsm.phase.value if fsm.state is LinkState.UP else None,
                 "mode": mgr.mode, "failed_dials": fsm.failed_dials, "holders": dict(fsm.holders),
                 "inbound": fsm.inbound, "pppd": mgr.calls.last_pppd_exit, "stopped": stopped(fsm.stopped)},
        "queue": {"queued": q.queued, "oldest_age_s": q.oldest_age_s, "urgent": q.urgent},
        "next": _next(mgr, now, q),
        "policy": mgr.policy_driver.last_ask,
        "budget_left": mgr.calls.budget_left(now, s.calls_per_day, s.minutes_per_day),
        "last_etrn": mgr.calls.last_etrn,
        "last_call": mgr.calls.last_call(),
        "cost": mgr.calls.cost(now),
    }


def _next(mgr, now, q) -> dict:
    """The next dial as the policy sees it, unless a setup error holds every dial."""
    stop = mgr.fsm.stopped
    if stop is not None:
        return {"dial": False, "reason": f"dialing stopped: {stop.text}; fix it, then reload", "at": None}
    return mgr.policy_driver.next(now, mgr.demand(now, q))


def stopped(event: SetupBroken | None) -> dict | None:
    if event is None:
        return None
    return {"cause": event.cause, "text": event.text, "fix": event.fix, "until": "reload"}


def stopped_text(event: SetupBroken) -> str:
    return (f"dialing stopped: {event.text}; dialing again will not help. Fix {event.fix}, "
            "then `systemctl reload edgemail` (or `edgemail link dial` to try once)")


def explain(mgr) -> str:
    """`edgemail link explain`: the link, a stop, the policy's verdict, what waits, a backoff."""
    now = wall_now(mgr.clock)
    demand = mgr.demand(now)
    stop = mgr.fsm.stopped
    verdict = mgr.policy.explain(now, demand)
    lines = [f"link is {mgr.state} (mode {mgr.mode})"]
    lines += [stopped_text(stop), f"the policy alone {verdict}"] if stop is not None else [verdict]
    lines.append(_waiting(demand, idle=mgr.fsm.state is LinkState.IDLE and not mgr.policy.should_dial(now, demand).dial))
    q = mgr.queue()
    if getattr(q, "big_waiting", 0):
        lines.append(f"{q.big_waiting} big message(s) left out, not dialed for: {q.big_reason}")
    deadline = mgr.fsm.deadline()
    if mgr.fsm.state is LinkState.BACKOFF and deadline is not None:
        wait = deadline - mgr.clock.monotonic()
        lines.append(f"backing off after {mgr.fsm.failed_dials} failed dial(s): {max(wait, 0):.0f}s left")
    return "\n".join(lines)


def _waiting(demand: Demand, *, idle: bool) -> str:
    """What waits for the link, and (while nothing dials for it) how to send it now."""
    if not demand.queued:
        return "waiting for the link: nothing"
    text = (f"waiting for the link: {demand.queued} message(s), the oldest for "
            f"{describe(round(demand.oldest_age_s))}, {demand.urgent} urgent")
    return text + ("; `edgemail link dial` sends them now" if idle else "")
