"""policy.py - when is a call worth making (CORE).

NAME
    policy - the cron-style dial policy: parse(text); allowed(now); next_due(now);
    next_change(now); should_dial(now, demand); explain(now, demand)

FILE FORMAT (etc/dial.policy)
    # comment                                      (also after a line's content)
    timezone Europe/Berlin                         zone the fields are read in (default UTC)
    */15 8-17 * * mon-fri   queue-run etrn         rule: crontab's five fields + actions
    set idle_hangup = 120s                         setting: key = value
    forbid mon-fri 12:00-13:00                     no dialing in this window (local time)

    Fields: minute 0-59, hour 0-23, day of month 1-31, month 1-12 or jan..dec,
    day of week 0-7 (0 and 7 = sunday) or sun..sat; each a list of `*`, `N`,
    `A-B`, with an optional `/step`.  As in Vixie cron, when both day of month
    and day of week are restricted a day matching either one matches.
    Actions: queue-run (dial if mail waits for the link), etrn (dial and ask
    the ISP for the mail it holds), poll (dial even with nothing to send).
    Forbidden windows: `forbid DAYS HH:MM-HH:MM`; DAYS is a day-of-week field
    naming the day the window starts; END may be 24:00 and a window may cross
    midnight (22:00-06:00).
    Settings (durations take s, m, h, d suffixes; bare numbers are seconds):
        idle_hangup              hang up after this long without traffic   (120s)
        max_connect              longest call                              (30m)
        budget.calls_per_day     calls per local day, 0 = unlimited        (0)
        budget.minutes_per_day   connected minutes per local day, 0 = unl. (0)
        dial_when_queued         dial when this many messages wait, 0 = off (0)
        dial_when_oldest         dial when the oldest waits this long, 0 = off (0)
        urgent                   immediate | schedule: does urgent mail dial at once (immediate)
        catchup                  a rule missed by less than this still dials (5m)
        redial_gap               urgent mail and thresholds dial no sooner than
                                 this after the last dial (2m): mail that a call
                                 could not deliver must not redial in a loop

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
       (queue-run with mail waiting, or etrn/poll)  -> dial
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

import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UTC = timezone.utc
ACTIONS = ("queue-run", "etrn", "poll")
_DOW = {n: i for i, n in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_MON = {n: i + 1 for i, n in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul",
                                         "aug", "sep", "oct", "nov", "dec"))}
#: (name, low, high, names) of the five cron fields
FIELDS = (("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day-of-month", 1, 31, {}),
          ("month", 1, 12, _MON), ("day-of-week", 0, 7, _DOW))
_SCAN_DAYS = 5 * 366


class PolicyError(ValueError):
    """The policy file is unusable.  str(): ``FILE:LINE: FIELD: problem``."""

    def __init__(self, problem: str, *, file: str, line: int, field: str) -> None:
        self.problem, self.file, self.line, self.field = problem, file, line, field
        super().__init__(f"{file}:{line}: {field}: {problem}")


@dataclass(frozen=True)
class Rule:
    minutes: frozenset[int]
    hours: frozenset[int]
    doms: frozenset[int]
    months: frozenset[int]
    dows: frozenset[int]                 #: 0 = sunday .. 6 = saturday
    dom_any: bool                        #: day-of-month field was `*`
    dow_any: bool
    actions: frozenset[str]
    text: str = ""
    line: int = 0

    def day_matches(self, d: date) -> bool:
        if d.month not in self.months:
            return False
        dom_ok, dow_ok = d.day in self.doms, d.isoweekday() % 7 in self.dows
        if self.dom_any or self.dow_any:
            return dom_ok and dow_ok
        return dom_ok or dow_ok          # Vixie cron: either restricted field matches

    def matches(self, naive: datetime) -> bool:
        return (naive.minute in self.minutes and naive.hour in self.hours
                and self.day_matches(naive.date()))


@dataclass(frozen=True)
class Window:
    """A forbidden window, minutes of the local day [start, end); end may be <= start (wraps)."""

    dows: frozenset[int]
    start: int
    end: int
    text: str = ""

    def forbids(self, naive: datetime) -> bool:
        m = naive.hour * 60 + naive.minute
        today = naive.isoweekday() % 7 in self.dows
        if self.start < self.end:
            return today and self.start <= m < self.end
        yesterday = (naive - timedelta(days=1)).isoweekday() % 7 in self.dows
        return (today and m >= self.start) or (yesterday and m < self.end)


@dataclass(frozen=True)
class Settings:
    idle_hangup_s: float = 120.0
    max_connect_s: float = 1800.0
    calls_per_day: int = 0
    minutes_per_day: float = 0.0
    dial_when_queued: int = 0
    dial_when_oldest_s: float = 0.0
    urgent_immediate: bool = True
    catchup_s: float = 300.0
    redial_gap_s: float = 120.0


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
            return Decision(False, "nothing due", None)
        at, why = min(candidates)
        if not self.allowed(at):
            end = self.next_change(at)
            return Decision(False, f"{why}, after forbidden window {self.forbidding(at).text}", end)
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
    return bool(rule.actions & {"etrn", "poll"}) or demand.queued > 0


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


# --- parsing ---------------------------------------------------------------

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_SETTINGS = {
    "idle_hangup": ("idle_hangup_s", "duration"), "max_connect": ("max_connect_s", "duration"),
    "budget.calls_per_day": ("calls_per_day", "int"), "budget.minutes_per_day": ("minutes_per_day", "int"),
    "dial_when_queued": ("dial_when_queued", "int"), "dial_when_oldest": ("dial_when_oldest_s", "duration"),
    "urgent": ("urgent_immediate", "urgent"), "catchup": ("catchup_s", "duration"),
    "redial_gap": ("redial_gap_s", "duration"),
}


def parse(text: str, *, file: str = "<policy>") -> Policy:
    """A Policy from the file's text.  Raises PolicyError naming file, line and field."""
    rules: list[Rule] = []
    windows: list[Window] = []
    values: dict[str, object] = {}
    zone = ZoneInfo("UTC")
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()

        def fail(fld: str, problem: str) -> PolicyError:
            return PolicyError(problem, file=file, line=n, field=fld)

        if words[0] == "timezone":
            zone = _parse_zone(words, fail)
        elif words[0] == "set":
            key, value = _parse_setting(line, fail)
            values[key] = value
        elif words[0] == "forbid":
            windows.append(_parse_window(words, line, fail))
        else:
            rules.append(_parse_rule(words, line, n, fail))
    return Policy(tuple(rules), tuple(windows), Settings(**values), zone)


def _parse_zone(words: list[str], fail) -> ZoneInfo:
    if len(words) != 2:
        raise fail("timezone", "expected `timezone Area/City`")
    try:
        return ZoneInfo(words[1])
    except (ZoneInfoNotFoundError, ValueError):
        raise fail("timezone", f"unknown zone {words[1]!r}") from None


def _parse_setting(line: str, fail) -> tuple[str, object]:
    m = re.match(r"^set\s+([\w.]+)\s*=\s*(\S+)$", line)
    if not m:
        raise fail("set", "expected `set KEY = VALUE`")
    key, value = m.groups()
    if key not in _SETTINGS:
        raise fail(key, f"unknown setting, expected one of {', '.join(sorted(_SETTINGS))}")
    attr, kind = _SETTINGS[key]
    if kind == "urgent":
        if value not in ("immediate", "schedule"):
            raise fail(key, f"{value!r}: expected immediate or schedule")
        return attr, value == "immediate"
    if kind == "int":
        if not value.isdigit():
            raise fail(key, f"{value!r}: expected a whole number >= 0")
        return attr, int(value)
    d = _DURATION.match(value)
    if not d:
        raise fail(key, f"{value!r}: expected a duration such as 90s, 15m, 2h")
    return attr, float(d.group(1)) * _UNITS[d.group(2)]


def _parse_window(words: list[str], line: str, fail) -> Window:
    if len(words) != 3:
        raise fail("forbid", "expected `forbid DAYS HH:MM-HH:MM`")
    dows = _parse_field(words[1], FIELDS[4], fail)
    m = re.fullmatch(r"(\d\d?):(\d\d)-(\d\d?):(\d\d)", words[2])
    if not m:
        raise fail("forbid window", f"{words[2]!r}: expected HH:MM-HH:MM")
    h1, m1, h2, m2 = map(int, m.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
        raise fail("forbid window", f"{words[2]!r}: time out of range (00:00-24:00)")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end:
        raise fail("forbid window", f"{words[2]!r}: empty window (start equals end)")
    return Window(frozenset(d % 7 for d in dows), start, end, line.split(None, 1)[1])


def _parse_rule(words: list[str], line: str, n: int, fail) -> Rule:
    if len(words) < 6:
        raise fail("rule", "expected five time fields and at least one action "
                           "(or a `set`, `forbid`, `timezone` line)")
    sets = [_parse_field(w, spec, fail) for w, spec in zip(words[:5], FIELDS)]
    actions = words[5:]
    for a in actions:
        if a not in ACTIONS:
            raise fail("action", f"unknown action {a!r}, expected {', '.join(ACTIONS)}")
    return Rule(frozenset(sets[0]), frozenset(sets[1]), frozenset(sets[2]), frozenset(sets[3]),
                frozenset(d % 7 for d in sets[4]), words[2] == "*", words[4] == "*",
                frozenset(actions), line, n)


def _parse_field(text: str, spec, fail) -> set[int]:
    name, low, high, names = spec
    out: set[int] = set()
    for part in text.lower().split(","):
        m = re.fullmatch(r"(\*|[a-z0-9]+)(?:-([a-z0-9]+))?(?:/(\d+))?", part)
        if not m:
            raise fail(name, f"{part!r}: expected *, N, A-B, with optional /STEP")
        a, b, step = m.groups()
        if a == "*":
            lo, hi = low, high
            if b:
                raise fail(name, f"{part!r}: * takes no range")
        else:
            lo = _value(a, spec, fail)
            hi = _value(b, spec, fail) if b else (high if step else lo)
        if lo > hi:
            raise fail(name, f"{part!r}: range runs backwards")
        if step is not None and int(step) == 0:
            raise fail(name, f"{part!r}: step must be >= 1")
        out.update(range(lo, hi + 1, int(step or 1)))
    return out


def _value(word: str, spec, fail) -> int:
    name, low, high, names = spec
    if word in names:
        return names[word]
    if not word.isdigit():
        raise fail(name, f"{word!r}: expected a number {low}-{high}" + (" or a name" if names else ""))
    v = int(word)
    if not low <= v <= high:
        raise fail(name, f"{v} out of range {low}-{high}")
    return v


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

    ``now`` returns the current aware datetime (default: the system clock);
    this adapter is the only place in this module that may read it.
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
