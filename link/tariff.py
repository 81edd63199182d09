"""tariff.py - what a call costs: the policy file's `tariff` lines (CORE).

NAME
    tariff - Tariff (call fee, per-minute prices, charging units by zone);
    Tariff.cost(start, connect_s, zone); Tariff.unit_edges(start, until, zone);
    Tariff.next_unit_edge(start, now, zone); parse_line(words, fail, span)

FILE FORMAT (lines of etc/dial.policy)
    tariff call 0.10                            fee per call (when it connects)
    tariff minute 0.04                          price per connected minute
    tariff minute 0.02 sat,sun 00:00-24:00      ... in a zone (DAYS HH:MM-HH:MM)
    tariff unit 0.06 240s                       price per started charging unit
    tariff unit 0.06 90s mon-fri 08:00-18:00    ... its length in a zone
    A zone is written as a forbidden window is (DAYS names the day the zone
    starts, END may be 24:00, a zone may cross midnight).  For a moment, the
    first zoned line of its kind that covers it wins, else the line without
    a zone; no line of a kind means that kind costs nothing.

COST (the ISDN way)
    call fee once; the first charging unit when the call connects and one
    more at each unit edge while it stays up, a unit's length being the one
    of the zone where it starts (so a unit begun at 17:59 is 90 s long and
    the next, begun after 18:00, 240 s); per-minute prices are charged by
    the second, each minute of the call at the price of the zone in which
    it starts.  Times are read in the policy's zone, passed by the caller.

NEVER
    Reads the clock or a file; keeps state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Protocol
from zoneinfo import ZoneInfo

from link import durations

KINDS = ("call", "minute", "unit")


class Span(Protocol):
    """A zone of the week (link.policyfile.Window)."""

    def forbids(self, naive: datetime) -> bool: ...


@dataclass(frozen=True)
class Price:
    kind: str                            #: call | minute | unit
    amount: float
    length_s: float = 0.0                #: unit length (unit only)
    zone: Span | None = None             #: None: every other moment
    text: str = ""

    def covers(self, naive: datetime) -> bool:
        return self.zone is None or self.zone.forbids(naive)


@dataclass(frozen=True)
class Tariff:
    prices: tuple[Price, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.prices

    @property
    def has_units(self) -> bool:
        return any(p.kind == "unit" for p in self.prices)

    def price(self, kind: str, at: datetime, zone: ZoneInfo) -> Price | None:
        """The line of `kind` in force at instant `at` (zoned lines first, in file order)."""
        naive = at.astimezone(zone).replace(tzinfo=None)
        mine = [p for p in self.prices if p.kind == kind]
        for p in [p for p in mine if p.zone is not None] + [p for p in mine if p.zone is None]:
            if p.covers(naive):
                return p
        return None

    def unit_edges(self, start: datetime, until: datetime, zone: ZoneInfo) -> Iterator[datetime]:
        """The instants at which a charging unit begins, from `start` (the connect) up to `until`."""
        t = start.astimezone(timezone.utc)
        while t <= until:
            p = self.price("unit", t, zone)
            if p is None or p.length_s <= 0:
                return
            yield t
            t = t + timedelta(seconds=p.length_s)

    def next_unit_edge(self, start: datetime, now: datetime, zone: ZoneInfo) -> datetime | None:
        """First unit edge after `now` for a call connected at `start` (None: no units)."""
        t = start.astimezone(timezone.utc)
        while True:
            p = self.price("unit", t, zone)
            if p is None or p.length_s <= 0:
                return None
            t = t + timedelta(seconds=p.length_s)
            if t > now:
                return t

    def cost(self, start: datetime, connect_s: float, zone: ZoneInfo) -> float:
        """What a call connected at `start` for `connect_s` seconds costs."""
        fee = self.price("call", start, zone)
        total = fee.amount if fee else 0.0
        unit_total = 0.0
        start = start.astimezone(timezone.utc)
        end = start + timedelta(seconds=max(connect_s, 0.0))
        for t in self.unit_edges(start, end, zone):
            if t < end or t == start:
                p = self.price("unit", t, zone)
                unit_total += p.amount if p else 0.0
        minute_total, t, left = 0.0, start.astimezone(timezone.utc), max(connect_s, 0.0)
        while left > 0 and any(p.kind == "minute" for p in self.prices):
            step = min(left, 60.0)
            p = self.price("minute", t, zone)
            minute_total += (p.amount if p else 0.0) * step / 60.0
            t, left = t + timedelta(seconds=step), left - step
        return round(total + unit_total + minute_total, 6)


def parse_line(words: list[str], fail: Callable[[str, str], Exception],
               span: Callable[[str, str], Span]) -> Price:
    """One `tariff KIND AMOUNT [LENGTH] [DAYS HH:MM-HH:MM]` line; `span` reads the zone."""
    if len(words) < 3 or words[1] not in KINDS:
        raise fail("tariff", f"expected `tariff {'|'.join(KINDS)} AMOUNT ...`")
    kind, rest = words[1], words[3:]
    try:
        amount = float(words[2])
    except ValueError:
        raise fail("tariff " + kind, f"{words[2]!r}: expected an amount such as 0.06") from None
    if not amount >= 0 or amount == float("inf"):
        raise fail("tariff " + kind, f"{words[2]!r}: expected an amount >= 0")
    length = 0.0
    if kind == "unit":
        if not rest:
            raise fail("tariff unit", "expected the unit's length after the amount (90s, 4m)")
        try:
            length = durations.parse(rest[0])
        except ValueError:
            raise fail("tariff unit", f"{rest[0]!r}: expected {durations.FORMS}") from None
        if length <= 0:
            raise fail("tariff unit", f"{rest[0]!r}: a unit must last more than 0 seconds")
        rest = rest[1:]
    zone = None
    if kind == "call" and rest:
        raise fail("tariff call", "a call fee has no zone: expected `tariff call AMOUNT`")
    if rest:
        if len(rest) != 2:
            raise fail("tariff zone", "expected DAYS HH:MM-HH:MM after the price")
        zone = span(rest[0], rest[1])
    return Price(kind, amount, length, zone, " ".join(words[1:]))
