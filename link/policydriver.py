"""policydriver.py - the link manager's side of the dial policy (DRIVER around policy.py).

NAME
    policydriver - PolicyDriver, the LinkManager's mixin that asks the
    policy: demand(now), replace_policy(policy), status(), explain();
    compile_jobs(policy, scheduler, callback, now=); QueueSummary

DESCRIPTION
    Owns the questions put to the pure core (link.policy) and what is done
    with its answers.  When the FSM is IDLE and the manager's loop finds the
    policy due (_dirty, or the last decision's next_at passed), _ask_policy()
    passes `now` from the manager's clock and the Demand: the port's
    queue_summary() (a failing port counts as an empty queue), today's calls
    and minutes from the ledger (a call in progress included) and last_dial.
    A decision to dial posts DialRequested(reason) and remembers its time
    (last_dial once the call comes up); otherwise its next_at becomes a
    monotonic deadline for the loop.

    The rules' `schedule` jobs (compile_jobs, below) only wake the loop
    early: the core stays the authority.  replace_policy() (reload) swaps
    the policy, gives the FSM the new idle hang-up and longest call (a call
    in progress keeps its line), recompiles the jobs when they were
    compiled (run() started) and asks again.  status() and explain() report
    the line and what the policy would do now.

NEVER
    Decides by itself, or dials: it posts DialRequested and the FSM acts.

FAILURES
    queue_summary() raising is logged (link: queue_summary=failed, error=E)
    and the queue counts as empty; the ledger's errors propagate.

THE MANAGER SUPPLIES
    policy, clock, port, ledger, fsm, mode, state, _scheduler, _jobs_compiled,
    _dirty, _policy_at, _dial_requested, _call, decision, last_dial,
    last_etrn, last_pppd_exit, and _post(event), demand_changed().
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone

from link import linklog
from link import transitions as T
from link.policy import Demand, Policy

log = logging.getLogger("link")
UTC = timezone.utc


@dataclass(frozen=True)
class QueueSummary:
    queued: int = 0               #: messages waiting for the link (expensive routes)
    oldest_age_s: float = 0.0
    urgent: int = 0


class PolicyDriver:
    """Mixin for LinkManager: asking the policy, its jobs, reload, status and explain."""

    # --- reload and the rules' jobs --------------------------------------------------------

    def replace_policy(self, policy: Policy) -> None:
        """A reload: from now on the new policy's rules and settings (idle
        hang-up, longest call); a call in progress keeps its line."""
        self.policy = policy
        s = policy.settings
        self.fsm.config = replace(self.fsm.config, idle_hangup_s=s.idle_hangup_s,
                                  max_connect_s=s.max_connect_s)
        if self._jobs_compiled:          # running: the old rules' jobs go, the new ones come
            self._schedule_rules()
        self.demand_changed()

    def _schedule_rules(self) -> None:
        """The policy's rules as `schedule` jobs that wake the loop (the pure core decides)."""
        if self._scheduler is None:
            return
        self._scheduler.clear()
        compile_jobs(self.policy, self._scheduler, lambda rule: self.demand_changed(), now=self._now_dt)
        self._jobs_compiled = True

    # --- asking ----------------------------------------------------------------------------

    def _ask_policy(self) -> None:
        self._dirty = False
        now = self._now_dt()
        d = self.policy.should_dial(now, self.demand(now))
        self.decision = d
        self._policy_at = None
        if d.dial:
            self._dial_requested = now
            self._post(T.DialRequested(d.reason))
        elif d.next_at is not None:
            self._policy_at = self.clock.monotonic() + max((d.next_at - now).total_seconds(), 0.0)

    def demand(self, now: datetime | None = None) -> Demand:
        now = now or self._now_dt()
        q = self._summary()
        calls, minutes = 0, 0.0
        if self.ledger is not None:
            u = self.ledger.usage(now, active_since=self._call["start"] if self._call else None)
            calls, minutes = u.calls, u.minutes
        return Demand(queued=q.queued, oldest_age_s=q.oldest_age_s, urgent=q.urgent,
                      calls_today=calls, minutes_today=minutes, last_dial=self.last_dial)

    def _summary(self):
        try:
            return self.port.queue_summary()
        except Exception as e:                       # the MTA's problem must not stop the line
            log.warning(linklog.port_failed("queue_summary", e))
            return QueueSummary()

    # --- status --------------------------------------------------------------------------------

    def _now_dt(self) -> datetime:
        return datetime.fromtimestamp(self.clock.wall(), UTC)

    def status(self) -> dict:
        now = self._now_dt()
        q = self._summary()
        d = self.policy.should_dial(now, self.demand(now))
        budget = {"calls": None, "minutes": None}
        last_call = None
        if self.ledger is not None:
            s = self.policy.settings
            calls, minutes = self.ledger.budget_left(now, s.calls_per_day, s.minutes_per_day,
                                                     active_since=self._call["start"] if self._call else None)
            budget = {"calls": calls, "minutes": minutes}
            last_call = asdict(self.ledger.last_call) if self.ledger.last_call else None
        return {
            "link": {"state": self.state, "phase": self.fsm.phase.value, "mode": self.mode,
                     "failed_dials": self.fsm.failed_dials, "holders": dict(self.fsm.holders),
                     "inbound": self.fsm.inbound, "pppd": self.last_pppd_exit},
            "queue": {"queued": q.queued, "oldest_age_s": q.oldest_age_s, "urgent": q.urgent},
            "next": {"dial": d.dial, "reason": d.reason, "at": d.next_at.isoformat() if d.next_at else None},
            "budget_left": budget,
            "last_etrn": self.last_etrn,
            "last_call": last_call,
        }

    def explain(self) -> str:
        now = self._now_dt()
        lines = [f"link is {self.state} (mode {self.mode})", self.policy.explain(now, self.demand(now))]
        if self.fsm.state is T.LinkState.BACKOFF and self.fsm.deadline() is not None:
            wait = self.fsm.deadline() - self.clock.monotonic()
            lines.append(f"backing off after {self.fsm.failed_dials} failed dial(s): {max(wait, 0):.0f}s left")
        return "\n".join(lines)


# --- the `schedule` adapter --------------------------------------------------

def compile_jobs(policy: Policy, scheduler, callback, *, now=None) -> list:
    """Register the rules as jobs on a `schedule.Scheduler`; returns the jobs.

    Each job calls ``callback(rule)`` when the rule fires.  What `schedule`
    (1.2) cannot express, and how this adapter covers it:

    - crontab fields: `schedule` has every-N-units and fixed `at()` times, no
      ranges, steps, day-of-month or month.  ``*/15 8-17 * * mon-fri`` would
      need 40 daily jobs plus weekday variants; instead each distinct minute
      of a rule becomes one hourly job ``every().hour.at(":MM")`` and a guard
      asks the pure core (`Policy.fires_now`) whether the rule fired in the
      last minute (hour, day of month, month, day of week, zone).
    - time zones: `at(..., tz)` needs pytz, which we do not ship; jobs run in
      the system's local time.  Minute-of-hour agrees between the system zone
      and the policy zone when both offsets are whole hours; otherwise (e.g.
      Asia/Kolkata) every rule gets one ``every().minute`` job with the guard.
    - DST: a spring-gap time fires at the gap's end and an autumn repeat once,
      because the guard uses the core's rules, not `schedule`'s arithmetic.
    - thresholds, urgent mail, budget, forbidden windows: not time-of-day jobs
      at all; the manager asks `should_dial()` for those.  The core stays the
      authority: jobs only wake the manager early.

    ``now`` returns the current aware datetime (default: the system clock;
    the manager passes its own clock's).
    """
    clock = now or (lambda: datetime.now(UTC))
    current = clock()
    whole_hours = all(off is not None and off.total_seconds() % 3600 == 0
                      for off in (current.astimezone(policy.zone).utcoffset(),
                                  current.astimezone().utcoffset()))
    jobs = []
    for rule in policy.rules:
        def guard(rule=rule):
            if policy.fires_now(rule, clock()):
                callback(rule)
        if whole_hours:
            for minute in sorted(rule.minutes):
                jobs.append(scheduler.every().hour.at(f":{minute:02d}").do(guard).tag("dial-policy"))
        else:
            jobs.append(scheduler.every().minute.do(guard).tag("dial-policy"))
    return jobs
