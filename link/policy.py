"""policy.py - when is a call worth making (CORE).

NAME
    policy - the cron-style dial policy: parse(text); allowed(now); next_due(now);
    next_change(now); should_dial(now, demand); explain(now, demand)

DESCRIPTION
    parse() turns the policy file into a Policy: the file's grammar, its
    FILE FORMAT and its errors are link.policyfile's (Rule, Window, Settings,
    PolicyError, ACTIONS and FIELDS are importable from here as well).  This
    module puts the lines together: at which instants the rules fire, when
    a forbidden window begins and ends, and what the policy decides for
    `now` and the caller's Demand.  The `schedule` jobs that wake the
    manager at the rules' times are link.policydriver's compile_jobs.

TIME
    Rules and windows are read in the configured zoneinfo zone; `now` is an
    aware datetime (any zone).  Daylight saving: a local time that does not
    exist (the spring gap) fires at the first instant after the gap, once; a
    local time that exists twice (autumn) fires at its first occurrence only.
    Forbidden windows follow local wall-clock time, so in autumn a window
    inside the repeated hour is forbidden during both passes.

DECISIONS (should_dial), first match wins
    1. budget used up (calls or minutes today)      -> no, next at local midnight
    2. inside a forbidden window                    -> no, next at its end
    3. urgent mail and `urgent = immediate`         -> dial  } not within redial_gap
    4. dial_when_queued / dial_when_oldest reached  -> dial  } of the last dial
    5. a rule fired in (max(last_dial, now-catchup), now] and has work
       (queue-run with mail waiting, or etrn/odmr/poll) -> dial
    otherwise no, with the next time something could change the answer for
    the same demand (the caller asks again whenever the demand changes).
    Urgent mail does not override the budget nor a forbidden window: those
    are the owner's hard limits.

NEVER
    Reads the clock, the queue or a file: the caller passes `now`, the demand
    and the text.  It holds no state between calls.

FAILURES
    parse() raises PolicyError("FILE:LINE: FIELD: problem") naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from link import policyfile
from link.policyfile import ACTIONS, FIELDS, PolicyError, Rule, Settings, Window
from link.tariff import Tariff

__all__ = ["ACTIONS", "FIELDS", "Decision", "Demand", "Policy", "PolicyError", "Rule", "Settings",
           "Window", "instants", "parse"]

UTC = timezone.utc
_SCAN_DAYS = 5 * 366


@dataclass(frozen=True)
class Demand:
    """What the caller knows: the queue summary and today's budget use."""

    queued: int = 0                      #: messages waiting for the link (expensive routes)
    oldest_age_s: float = 0.0
    urgent: int = 0
    calls_today: int = 0
    minutes_today: float = 0.0
    last_dial: datetime | None = None


@dataclass(frozen=True)
class Decision:
    dial: bool
    reason: str
    next_at: datetime | None = None      #: ask again then (None: nothing scheduled)
    actions: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...] = ()
    windows: tuple[Window, ...] = ()
    settings: Settings = field(default_factory=Settings)
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    tariff: Tariff = field(default_factory=Tariff)

    # --- time of day ---------------------------------------------------------

    def local(self, now: datetime) -> datetime:
        """Naive local wall-clock time of an aware instant (fold kept)."""
        return now.astimezone(self.zone).replace(tzinfo=None)

    def allowed(self, now: datetime) -> bool:
        """True when no forbidden window covers `now`."""
        naive = self.local(now)
        return not any(w.forbids(naive) for w in self.windows)

    def forbidding(self, now: datetime) -> Window | None:
        naive = self.local(now)
        return next((w for w in self.windows if w.forbids(naive)), None)

    def next_change(self, now: datetime) -> datetime | None:
        """First instant after `now` where allowed() differs; None if never (within 8 days)."""
        here = self.allowed(now)
        for t in self._window_edges(now):
            if self.allowed(t) != here:
                return t
        return None

    def _window_edges(self, now: datetime) -> list[datetime]:
        start = self.local(now).date()
        edges: set[datetime] = set()
        for k in range(-2, 9):
            day = datetime.combine(start + timedelta(days=k), time())
            for w in self.windows:
                begin = day + timedelta(minutes=w.start)
                end = day + timedelta(minutes=w.end if w.end > w.start else w.end + 1440)
                for naive in (begin, end):
                    edges |= instants(naive, self.zone)
        return sorted(t for t in edges if t > now)

    def next_due(self, now: datetime, rule: Rule | None = None) -> datetime | None:
        """First instant after `now` at which a rule (or the given one) fires."""
        rules = (rule,) if rule else self.rules
        found = [t for t in (_rule_next(r, now, self.zone) for r in rules) if t is not None]
        return min(found, default=None)

    def fired(self, rule: Rule, since: datetime, now: datetime) -> bool:
        """Whether `rule` fired at an instant in (since, now]."""
        t = _rule_next(rule, since, self.zone)
        return t is not None and t <= now

    # --- decisions -----------------------------------------------------------

    def budget_left(self, demand: Demand) -> tuple[int | None, float | None]:
        s = self.settings
        calls = s.calls_per_day - demand.calls_today if s.calls_per_day else None
        minutes = s.minutes_per_day - demand.minutes_today if s.minutes_per_day else None
        return calls, minutes

    def should_dial(self, now: datetime, demand: Demand) -> Decision:
        s = self.settings
        calls, minutes = self.budget_left(demand)
        if (calls is not None and calls <= 0) or (minutes is not None and minutes <= 0):
            used = (f"calls {demand.calls_today}/{s.calls_per_day}" if calls is not None and calls <= 0
                    else f"minutes {demand.minutes_today:g}/{s.minutes_per_day:g}")
            return Decision(False, f"budget exhausted ({used})", self._next_midnight(now))
        window = self.forbidding(now)
        if window:
            return Decision(False, f"forbidden window {window.text}", self.next_change(now))
        work = frozenset({"queue-run", "etrn"})
        eager = self._eager_reason(demand)
        if eager:
            gap_end = self._gap_end(now, demand)
            if gap_end is None:
                return Decision(True, eager, None, work)
        since = now - timedelta(seconds=s.catchup_s)
        # A last_dial in the future means the wall clock jumped back: ignore it.
        if demand.last_dial is not None and since < demand.last_dial <= now:
            since = demand.last_dial
        for rule in self.rules:
            if _has_work(rule, demand) and self.fired(rule, since, now):
                return Decision(True, f"rule line {rule.line} '{rule.text}'", None, rule.actions)
        return self._wait(now, demand)

    def _eager_reason(self, demand: Demand) -> str:
        """Why urgent mail or a threshold wants a call now ("" if they do not)."""
        s = self.settings
        if demand.urgent and s.urgent_immediate:
            return f"urgent({demand.urgent})"
        if s.dial_when_queued and demand.queued >= s.dial_when_queued:
            return f"queued({demand.queued}>={s.dial_when_queued})"
        if s.dial_when_oldest_s and demand.queued and demand.oldest_age_s >= s.dial_when_oldest_s:
            return f"oldest({_dur(demand.oldest_age_s)}>={_dur(s.dial_when_oldest_s)})"
        return ""

    def _gap_end(self, now: datetime, demand: Demand) -> datetime | None:
        """End of the redial gap after the last dial, or None when it is over."""
        last = demand.last_dial
        if last is None or last > now:            # never dialed, or the clock jumped back
            return None
        end = last + timedelta(seconds=self.settings.redial_gap_s)
        return end if end > now else None

    def _wait(self, now: datetime, demand: Demand) -> Decision:
        s = self.settings
        candidates: list[tuple[datetime, str]] = []
        for rule in self.rules:
            if _has_work(rule, demand):
                t = self.next_due(now, rule)
                if t is not None:
                    candidates.append((t, f"rule line {rule.line} '{rule.text}'"))
        if s.dial_when_oldest_s and demand.queued:
            wait = max(s.dial_when_oldest_s - demand.oldest_age_s, 1.0)
            candidates.append((now + timedelta(seconds=wait), f"oldest reaches {_dur(s.dial_when_oldest_s)}"))
        eager, gap_end = self._eager_reason(demand), self._gap_end(now, demand)
        if eager and gap_end is not None:
            candidates.append((gap_end, f"{eager} after the redial gap of {_dur(s.redial_gap_s)}"))
        if not candidates:
            return Decision(False, _held(s, demand) if demand.queued else "nothing due", None)
        at, why = min(candidates)
        window = self.forbidding(at)
        if window is not None:
            return Decision(False, f"{why}, after forbidden window {window.text}", self.next_change(at))
        return Decision(False, why, at)

    def _next_midnight(self, now: datetime) -> datetime:
        day = self.local(now).date() + timedelta(days=1)
        return min(instants(datetime.combine(day, time()), self.zone))

    def explain(self, now: datetime, demand: Demand) -> str:
        """One line for `edgemail link explain`."""
        d = self.should_dial(now, demand)
        if d.dial:
            return f"would dial now because {d.reason} (actions: {' '.join(sorted(d.actions))})"
        if d.next_at is None:
            return f"would not dial: {d.reason}; nothing scheduled"
        at = d.next_at.astimezone(self.zone).strftime("%a %Y-%m-%d %H:%M %Z")
        return f"would not dial now; next dial at {at} because {d.reason}"

    def fires_now(self, rule: Rule, now: datetime) -> bool:
        """Guard for compiled `schedule` jobs: did `rule` fire within the last minute?"""
        return self.fired(rule, now - timedelta(seconds=60), now)


def _has_work(rule: Rule, demand: Demand) -> bool:
    return bool(rule.actions & {"etrn", "odmr", "poll"}) or demand.queued > 0


def _held(s: Settings, demand: Demand) -> str:
    """Why mail that waits makes no call: the threshold that holds it, or that none would."""
    if s.dial_when_queued:
        return (f"{demand.queued} message(s) wait, held by dial_when_queued = {s.dial_when_queued} "
                f"({demand.queued} of {s.dial_when_queued} queued)")
    return f"{demand.queued} message(s) wait, but no rule, dial_when_queued or dial_when_oldest dials for them"


def _dur(seconds: float) -> str:
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= n and seconds % n == 0:
            return f"{int(seconds // n)}{unit}"
    return f"{seconds:g}s"


# --- local time <-> instants -----------------------------------------------

def instants(naive: datetime, zone: ZoneInfo) -> set[datetime]:
    """The UTC instants at which local wall-clock `naive` happens: one, two
    (autumn repeat) or, for a time in the spring gap, the end of the gap."""
    out = set()
    for fold in (0, 1):
        u = naive.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        if u.astimezone(zone).replace(tzinfo=None, fold=0) == naive:
            out.add(u)
    if out:
        return out
    # in the spring gap: walk from before the gap to its first minute
    t = naive.replace(tzinfo=zone, fold=1).astimezone(UTC).replace(second=0, microsecond=0)
    while t.astimezone(zone).replace(tzinfo=None, fold=0) < naive:
        t += timedelta(minutes=1)
    return {t}


def _rule_next(rule: Rule, now: datetime, zone: ZoneInfo) -> datetime | None:
    """First instant > now at which `rule` fires (DST rules in the module docstring)."""
    start = now.astimezone(zone).replace(tzinfo=None, fold=0, second=0, microsecond=0)
    # In the repeated autumn hour the naive clock runs backwards; start an hour
    # earlier so nothing is skipped, and let `> now` filter the past.
    start -= timedelta(hours=1)
    hours, minutes = sorted(rule.hours), sorted(rule.minutes)
    for k in range(_SCAN_DAYS):
        d = start.date() + timedelta(days=k)
        if not rule.day_matches(d):
            continue
        for h in hours:
            for m in minutes:
                naive = datetime.combine(d, time(h, m))
                if naive < start:
                    continue
                first = min(instants(naive, zone))
                if first > now:
                    return first
    return None


# --- the file -> a Policy ----------------------------------------------------

def parse(text: str, *, file: str = "<policy>") -> Policy:
    """A Policy from the file's text.  Raises PolicyError naming file, line and field."""
    rules, windows, settings, zone, prices = policyfile.read(text, file=file)
    return Policy(rules, windows, settings, zone, prices)
