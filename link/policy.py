"""policy.py - when is a call worth making (CORE).

NAME
    policy - the cron-style dial policy: parse(text); allowed(now); next_due(now);
    next_change(now); should_dial(now, demand); explain(now, demand);
    relative_due(last, demand); next_poll(now, demand); hangup_at(connected,
    quiet_since); unit_poll_at(connected, hangup, next_poll)

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
    With `schedule = relative`, step 5 reads: one spacing of the rules
    after the last poll (the last dial, or a later ETRN in that call) has passed.
    The spacing is the one the schedule has there: the gap between the next
    two firings after the last poll (15 minutes in office hours for */15, an
    hour at night), so an urgent or threshold call counts as the next poll
    and the schedule starts again from it; the next call is never later than
    the second fixed firing after the last one.

CHARGEHUP (hangup_at, unit_poll_at)
    With `chargehup = on` and a tariff of charging units, the line is hung
    up chargehup_margin before a unit edge (isdn4linux's chargehup), the
    first edge after chargehup_quiet of quiet, instead of idle_hangup after
    the traffic: the rest of a paid unit costs nothing, so the line stays up
    for mail queued meanwhile, and a call whose traffic ends just before an
    edge does not pay the next unit for its idle timer.  With `unit_poll`,
    one more ETRN is sent UNIT_POLL_LEAD before that hang-up when the next
    poll is due within unit_poll of it: the ISP's push fits in the paid
    unit, and the caller counts it as that poll (Demand.last_poll = the
    poll's due time: a fixed firing up to then does not dial, a relative
    schedule counts from it).
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
UNIT_POLL_LEAD = 20.0                    #: seconds before a chargehup hang-up for the last ETRN


@dataclass(frozen=True)
class Demand:
    """What the caller knows: the queue summary and today's budget use."""

    queued: int = 0                      #: messages waiting for the link (expensive routes)
    oldest_age_s: float = 0.0
    urgent: int = 0
    calls_today: int = 0
    minutes_today: float = 0.0
    last_dial: datetime | None = None
    last_poll: datetime | None = None    #: the poll a unit_poll ETRN stood in for (its due time)


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
    cheap: tuple[Window, ...] = ()       #: windows where big mail may go (link.bigmail)

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
        if self._relative_base(now, demand) is not None:
            return self._relative(now, demand)
        since = now - timedelta(seconds=s.catchup_s)
        # A last_dial in the future means the wall clock jumped back: ignore it.
        if demand.last_dial is not None and since < demand.last_dial <= now:
            since = demand.last_dial
        stood_in = self._poll_stood_in(now, demand)
        if stood_in is not None and stood_in > since:    # that firing was polled in a paid unit
            since = stood_in
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

    # --- the relative schedule ---------------------------------------------------

    def _relative_base(self, now: datetime, demand: Demand) -> datetime | None:
        """The last poll the relative schedule counts from (None: fixed times)."""
        last = demand.last_dial
        if not self.settings.relative or last is None or last > now:
            return None
        return max(last, self._poll_stood_in(now, demand) or last)

    def _poll_stood_in(self, now: datetime, demand: Demand) -> datetime | None:
        """The due time a unit_poll ETRN counted as (None, or too far ahead: a clock jump)."""
        t = demand.last_poll
        if t is None or (t - now).total_seconds() > self.settings.unit_poll_s:
            return None
        return t

    def relative_due(self, last: datetime, demand: Demand) -> tuple[datetime, Rule] | None:
        """One spacing of the rules (that have work) after `last`, and the rule that fires next."""
        rules = [r for r in self.rules if _has_work(r, demand)]
        nxt = [(t, r.line, r) for r in rules if (t := self.next_due(last, r)) is not None]
        if not nxt:
            return None
        a, _, rule = min(nxt)
        b = min((t for r in rules if (t := self.next_due(a, r)) is not None), default=None)
        return (last + (b - a) if b is not None else a), rule

    def _relative(self, now: datetime, demand: Demand) -> Decision:
        last = self._relative_base(now, demand)
        assert last is not None
        due = self.relative_due(last, demand)
        if due is not None and due[0] <= now:
            rule = due[1]
            at = self.local(last).strftime("%H:%M")
            return Decision(True, f"rule line {rule.line} '{rule.text}' (one spacing after the call at {at})",
                            None, rule.actions)
        return self._wait(now, demand)

    # --- chargehup -----------------------------------------------------------------

    def hangup_at(self, connected: datetime, quiet_since: datetime) -> datetime:
        """When a line connected at `connected`, quiet since `quiet_since`, is hung up (if still quiet)."""
        s = self.settings
        idle_end = quiet_since + timedelta(seconds=s.idle_hangup_s)
        if not s.chargehup or not self.tariff.has_units:
            return idle_end
        margin = timedelta(seconds=s.chargehup_margin_s)
        quiet = quiet_since + timedelta(seconds=s.chargehup_quiet_s)
        edge = self.tariff.next_unit_edge(connected, quiet + margin - timedelta(microseconds=1), self.zone)
        return idle_end if edge is None else edge - margin

    def next_poll(self, now: datetime, demand: Demand) -> datetime | None:
        """When the schedule polls the ISP next (relative or fixed), for unit_poll."""
        base = self._relative_base(now, demand)
        if base is not None:
            due = self.relative_due(base, demand)
            return due[0] if due is not None else None
        polls = [r for r in self.rules if r.actions & {"etrn", "odmr", "poll"}]
        return min((t for r in polls if (t := self.next_due(now, r)) is not None), default=None)

    def unit_poll_at(self, connected: datetime, hangup: datetime, next_poll: datetime | None) -> datetime | None:
        """When to send one more ETRN in the paid unit before `hangup` (None: none)."""
        s = self.settings
        if not (s.chargehup and s.unit_poll_s and self.tariff.has_units) or next_poll is None:
            return None
        t = hangup - timedelta(seconds=UNIT_POLL_LEAD)
        if t <= connected or (next_poll - hangup).total_seconds() > s.unit_poll_s:
            return None
        return t

    def _wait(self, now: datetime, demand: Demand) -> Decision:
        s = self.settings
        candidates: list[tuple[datetime, str]] = []
        base = self._relative_base(now, demand)
        due = self.relative_due(base, demand) if base is not None else None
        if base is not None and due is not None:
            candidates.append((max(due[0], now), f"rule line {due[1].line} '{due[1].text}' "
                                                 f"(one spacing after the call at {self.local(base).strftime('%H:%M')})"))
        for rule in self.rules if base is None else ():
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

def parse(text: str, *, file: str = "<policy>", whole: bool = True) -> Policy:
    """A Policy from the file's text.  Raises PolicyError naming file, line and field."""
    rules, windows, settings, zone, prices, cheap = policyfile.read(text, file=file, whole=whole)
    return Policy(rules, windows, settings, zone, prices, cheap)
