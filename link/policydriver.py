"""policydriver.py - when to ask the dial policy, and what came of it (DRIVER around policy.py).

NAME
    policydriver - PolicyDriver(policy, clock=, scheduler=, on_rule=): due(),
    ask(now, demand), wake_at(); replace(policy); compile_jobs(policy,
    scheduler, callback, now=)

SYNOPSIS
    pd = PolicyDriver(policy, clock=clock, scheduler=schedule.Scheduler(), on_rule=wake)
    pd.start()                          # the rules' `schedule` jobs
    if pd.due() and fsm_is_idle:        # something changed, or a deadline passed
        decision = pd.ask(now, demand)  # link.policy.Decision; dial -> DialRequested
    pd.call_up(now)                     # a call came up: last_dial for the rules' catch-up

DESCRIPTION
    Owns the policy (link.policy, the pure core that decides) and the
    bookkeeping around its questions: whether it is due to be asked again
    (changed(): the demand changed or the FSM went idle; or the last
    decision's next_at passed: a monotonic deadline for the manager's
    loop), the last decision and how many times the loop asked (status),
    and last_dial: the request time of the last call that came up (a
    policy dial or an operator's, requested()), which the rules' catch-up
    reads.  A call that failed leaves last_dial alone, so its rule is
    retried after the FSM's backoff while still within the catch-up window.

    The rules' `schedule` jobs (compile_jobs, below) only wake the loop
    early (on_rule(); the manager passes its demand_changed): the core stays
    the authority.  replace() (reload) swaps the policy and recompiles the
    jobs when they were compiled (start() ran).  The manager builds the
    Demand (queue, today's calls and minutes, last_dial) and owns the FSM;
    this driver never dials.

NEVER
    Decides by itself, dials, or reads the queue or the ledger.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from link import bigmail
from link.policy import Decision, Demand, Policy, Rule
from link.port import Clock

if TYPE_CHECKING:
    import schedule

UTC = timezone.utc


class PolicyDriver:
    """Asking the policy, its jobs, reload (the module's page)."""

    def __init__(self, policy: Policy, *, clock: Clock, scheduler: schedule.Scheduler | None = None,
                 on_rule: Callable[[], None] = lambda: None) -> None:
        self.policy = policy
        self.clock = clock
        self._scheduler = scheduler
        self._on_rule = on_rule
        self._compiled = False
        self._dirty = True                  # ask at the next pass
        self._at: float | None = None       # monotonic: the last decision's next_at
        self._requested: datetime | None = None
        self.decision: Decision | None = None
        self.asked = 0                      #: times the loop asked (status(), tests)
        self.last_ask: dict | None = None
        self.last_dial: datetime | None = None      #: request time of the last call that came up

    def start(self) -> None:
        """The policy's rules as `schedule` jobs that wake the loop (the pure core decides)."""
        if self._scheduler is None:
            return
        self._scheduler.clear()
        compile_jobs(self.policy, self._scheduler, lambda rule: self._on_rule(),
                     now=lambda: datetime.fromtimestamp(self.clock.wall(), UTC))
        self._compiled = True

    def big_mail_wait(self, size: int, urgent: bool, now: datetime | None = None) -> str:
        """Why a message this big may not go now (link.bigmail; "" : it may)."""
        limit = self.policy.settings.big_mail           # the usual answer, without reading the clock
        if not limit or size < limit:
            return ""
        wait = bigmail.waits(self.policy, size, urgent, now or datetime.fromtimestamp(self.clock.wall(), timezone.utc))
        return wait.reason if wait is not None else ""

    def replace(self, policy: Policy) -> None:
        """A reload: the new policy's rules from now on (its jobs, if start() ran)."""
        self.policy = policy
        if self._compiled:
            self.start()
        self._dirty = True

    def changed(self) -> None:
        """Ask again at the next pass (the demand changed, the line went idle)."""
        self._dirty = True

    def due(self) -> bool:
        """Run the jobs that are due; is the policy to be asked?"""
        if self._scheduler is not None:
            self._scheduler.run_pending()
        if self._at is not None and self.clock.monotonic() >= self._at:
            self._dirty = True
        return self._dirty

    def ask(self, now: datetime, demand: Demand) -> Decision:
        """The policy's decision now; a dial is remembered as requested at `now`."""
        self._dirty = False
        d = self.policy.should_dial(now, demand)
        self.decision, self._at = d, None
        self.asked += 1
        self.last_ask = {"asked": self.asked, "at": now.isoformat(), "dial": d.dial, "reason": d.reason,
                         "queued": demand.queued}
        if d.dial:
            self._requested = now
        elif d.next_at is not None:
            self._at = self.clock.monotonic() + max((d.next_at - now).total_seconds(), 0.0)
        return d

    def requested(self, now: datetime) -> None:
        """An operator's dial: last_dial once it comes up."""
        self._requested = now

    def call_up(self, now: datetime) -> None:
        self.last_dial = self._requested or now
        self._requested = None

    def wake_at(self) -> float | None:
        """When (monotonic) the loop must look again: the decision's next_at, the next job."""
        times = [self._at] if self._at is not None else []
        idle = self._scheduler.idle_seconds if self._scheduler is not None else None
        if idle is not None:
            times.append(self.clock.monotonic() + max(idle, 0.0))
        return min(times, default=None)

    def next(self, now: datetime, demand: Demand) -> dict:
        """What the policy would decide now (status; the loop's state is left alone)."""
        d = self.policy.should_dial(now, demand)
        return {"dial": d.dial, "reason": d.reason, "at": d.next_at.isoformat() if d.next_at else None}


# --- the `schedule` adapter --------------------------------------------------

def compile_jobs(policy: Policy, scheduler: schedule.Scheduler, callback: Callable[[Rule], object], *,
                 now: Callable[[], datetime] | None = None) -> list[schedule.Job]:
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
    whole_hours = _whole_hours(policy, clock())
    jobs = []
    for rule in policy.rules:
        guard = _guard(policy, rule, clock, callback)
        if whole_hours:
            jobs += [scheduler.every().hour.at(f":{minute:02d}").do(guard).tag("dial-policy")
                     for minute in sorted(rule.minutes)]
        else:
            jobs.append(scheduler.every().minute.do(guard).tag("dial-policy"))
    return jobs


def _guard(policy: Policy, rule: Rule, clock: Callable[[], datetime],
           callback: Callable[[Rule], object]) -> Callable[[], None]:
    """The job's body: the callback, only when the core says the rule fired."""
    def guard() -> None:
        if policy.fires_now(rule, clock()):
            callback(rule)
    return guard


def _whole_hours(policy: Policy, now: datetime) -> bool:
    """Do the policy's zone and the system's both differ from UTC by whole hours now?"""
    return all(off is not None and off.total_seconds() % 3600 == 0
               for off in (now.astimezone(policy.zone).utcoffset(), now.astimezone().utcoffset()))
