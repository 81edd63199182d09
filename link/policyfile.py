"""policyfile.py - the dial policy file: its grammar, lines -> rules (CORE).

NAME
    policyfile - read(text, file=) -> (rules, windows, settings, zone, tariff,
    cheap);
    Rule, Window, Settings, PolicyError; ACTIONS, FIELDS

FILE FORMAT (etc/dial.policy)
    # comment                                      (also after a line's content)
    timezone Europe/Berlin                         zone the fields are read in (default UTC)
    */15 8-17 * * mon-fri   queue-run etrn         rule: crontab's five fields + actions
    set idle_hangup = 120s                         setting: key = value
    forbid mon-fri 12:00-13:00                     no dialing in this window (local time)
    tariff unit 0.06 90s mon-fri 08:00-18:00       what calls cost (link/tariff.py: call,
                                                   minute and unit prices, zones)
    cheap mon-fri 18:00-08:00                      big mail waits for such a window
                                                   (link/bigmail.py; set big_mail = SIZE)

    Fields: minute 0-59, hour 0-23, day of month 1-31, month 1-12 or jan..dec,
    day of week 0-7 (0 and 7 = sunday) or sun..sat; each a list of `*`, `N`,
    `A-B`, with an optional `/step`.  As in Vixie cron, when both day of month
    and day of week are restricted a day matching either one matches.
    Actions: queue-run (dial if mail waits for the link), etrn (dial and ask
    the ISP for the mail it holds), odmr (the same, where the ISP pushes
    over our own connection: [link] odmr, RFC 2645), poll (dial even with
    nothing to send).
    Forbidden windows: `forbid DAYS HH:MM-HH:MM`; DAYS is a day-of-week field
    naming the day the window starts; END may be 24:00 and a window may cross
    midnight (22:00-06:00).
    Settings (durations as in edgemail.toml, link/durations.py: 90s, 15m,
    1h30m, 2d, 1w; bare numbers are seconds):
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
        failed_dial_backoff      after a failed dial no dial for this long, doubled
                                 per failure in a row up to 30m (60s; at least 1s)
        schedule                 fixed | relative: rules fire at their cron
                                 times, or one spacing of the rules after the
                                 last call (an urgent call counts as a poll) (fixed)
        chargehup                on | off: with a unit tariff, a quiet line is
                                 hung up just before its next charging unit
                                 instead of idle_hangup after the traffic (off)
        chargehup_margin         how long before the unit edge (5s)
        chargehup_quiet          the least quiet before such a hang-up (8s)
        unit_poll                with chargehup: one more ETRN in the paid unit
                                 when the next poll is due within this of the
                                 hang-up; it counts as that poll, 0 = off (0)
        big_mail                 a message this big (bytes; 500k, 2M: k = 1000)
                                 that is not urgent waits for a `cheap` window,
                                 0 = off (0)

DESCRIPTION
    Owns the grammar: cutting the text into lines (a `#` starts a comment),
    telling the six kinds of line apart and turning each into its value: a
    Rule (the five fields as sets of numbers, with its text and line number
    for the decisions' reasons), a forbidden Window (minutes of the local
    day), a setting (into Settings, whose defaults are the table above) or
    the zone, or a tariff line (a link.tariff Price).  Rule.matches() and Window.forbids() say what one line means
    for one local wall-clock minute; link.policy puts the lines together
    (which instant, which decision) and its parse() is the entry point.

INVARIANTS
    What read() returns is valid: every field value in its range, every
    action known, every window non-empty; day of week 7 is stored as 0.
    The last `timezone` line and the last `set` of a key win.

NEVER
    Reads the clock or a file (the caller passes the text); knows instants,
    daylight saving or decisions (link.policy does).

FAILURES
    read() raises PolicyError("FILE:LINE: FIELD: problem") naming the field,
    at the first bad line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from link import durations, tariff

ACTIONS = ("queue-run", "etrn", "odmr", "poll")
_DOW = {n: i for i, n in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_MON = {n: i + 1 for i, n in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul",
                                         "aug", "sep", "oct", "nov", "dec"))}
#: (name, low, high, names) of the five cron fields
FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day-of-month", 1, 31, {}),
          ("month", 1, 12, _MON), ("day-of-week", 0, 7, _DOW))


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
    failed_dial_backoff_s: float = 60.0
    relative: bool = False
    chargehup: bool = False
    chargehup_margin_s: float = 5.0
    chargehup_quiet_s: float = 8.0
    unit_poll_s: float = 0.0
    big_mail: int = 0


# --- parsing ---------------------------------------------------------------

_SETTINGS = {
    "idle_hangup": ("idle_hangup_s", "duration"), "max_connect": ("max_connect_s", "duration"),
    "budget.calls_per_day": ("calls_per_day", "int"), "budget.minutes_per_day": ("minutes_per_day", "int"),
    "dial_when_queued": ("dial_when_queued", "int"), "dial_when_oldest": ("dial_when_oldest_s", "duration"),
    "urgent": ("urgent_immediate", "urgent"), "catchup": ("catchup_s", "duration"),
    "redial_gap": ("redial_gap_s", "duration"),
    "failed_dial_backoff": ("failed_dial_backoff_s", "duration"), "schedule": ("relative", "fixed|relative"),
    "chargehup": ("chargehup", "off|on"), "chargehup_margin": ("chargehup_margin_s", "duration"),
    "chargehup_quiet": ("chargehup_quiet_s", "duration"),
    "unit_poll": ("unit_poll_s", "duration"), "big_mail": ("big_mail", "size"),
}


def read(text: str, *, file: str = "<policy>", whole: bool = True
         ) -> tuple[tuple[Rule, ...], tuple[Window, ...], Settings, ZoneInfo, tariff.Tariff, tuple[Window, ...]]:
    """The file's (rules, windows, settings, zone, tariff, cheap windows).
    `whole` = False reads a line on its own (no check across lines).  Raises PolicyError naming file, line and field."""
    rules: list[Rule] = []
    windows: list[Window] = []
    prices: list[tariff.Price] = []
    cheap: list[Window] = []
    values: dict[str, Any] = {}          # checked by _parse_setting: Settings' types
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
        elif words[0] == "cheap":
            if len(words) != 3:
                raise fail("cheap", "expected `cheap DAYS HH:MM-HH:MM`")
            cheap.append(_span(words[1], words[2], line.split(None, 1)[1], fail, "cheap window"))
        elif words[0] == "tariff":
            prices.append(tariff.parse_line(words, fail, lambda d, w: _span(d, w, f"{d} {w}", fail, "tariff zone")))
        else:
            rules.append(_parse_rule(words, line, n, fail))
    big = [n for n, raw in enumerate(text.splitlines(), 1) if re.match(r"\s*set\s+big_mail\s*=", raw)]
    if whole and values.get("big_mail") and not cheap:
        raise PolicyError("set, but no `cheap DAYS HH:MM-HH:MM` line says when big mail may go",
                          file=file, line=big[-1] if big else 0, field="big_mail")
    return tuple(rules), tuple(windows), Settings(**values), zone, tariff.Tariff(tuple(prices)), tuple(cheap)


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
        kind = "immediate|schedule"
    if "|" in kind:                      # two words: urgent's first, the others' second means True
        words = kind.split("|")
        if value not in words:
            raise fail(key, f"{value!r}: expected {words[0]} or {words[1]}")
        return attr, value == words[0 if key == "urgent" else 1]
    if kind == "size":
        m = re.fullmatch(r"(\d+)([kKmM]?)", value)
        if not m:
            raise fail(key, f"{value!r}: expected a size in bytes (500000, 500k, 2M)")
        return attr, int(m.group(1)) * {"": 1, "k": 1000, "m": 1000_000}[m.group(2).lower()]
    if kind == "int":
        if not value.isdigit():
            raise fail(key, f"{value!r}: expected a whole number >= 0")
        return attr, int(value)
    try:
        return attr, durations.parse(value)
    except ValueError:
        raise fail(key, f"{value!r}: expected {durations.FORMS}") from None


def _parse_window(words: list[str], line: str, fail) -> Window:
    if len(words) != 3:
        raise fail("forbid", "expected `forbid DAYS HH:MM-HH:MM`")
    return _span(words[1], words[2], line.split(None, 1)[1], fail)


def _span(days: str, window: str, text: str, fail, what: str = "forbid window") -> Window:
    """DAYS HH:MM-HH:MM: a forbidden window, or a tariff's zone."""
    dows = _parse_field(days, FIELDS[4], fail)
    m = re.fullmatch(r"(\d\d?):(\d\d)-(\d\d?):(\d\d)", window)
    if not m:
        raise fail(what, f"{window!r}: expected HH:MM-HH:MM")
    h1, m1, h2, m2 = map(int, m.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
        raise fail(what, f"{window!r}: time out of range (00:00-24:00)")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end:
        raise fail(what, f"{window!r}: empty window (start equals end)")
    return Window(frozenset(d % 7 for d in dows), start, end, text)


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
