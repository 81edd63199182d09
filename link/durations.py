"""durations.py - the one duration grammar of edgemail and link (CORE).

NAME
    durations - "90s", "15m", "1h30m", "5d", "1w", "now" or seconds -> float seconds;
    seconds -> "4 hours", "5 days"

DESCRIPTION
    sendmail's time syntax, used by edgemail.toml (``Timeout.queuereturn =
    "5d"``, ``DialDelay = "10s"``) and by the dial policy file
    (``idle_hangup 2m``): one or more NUMBER UNIT pairs, units s, m, h, d, w,
    optionally separated by spaces ("1h 30m"); a bare number is seconds;
    "0" and "now" are 0.  Numbers may have a fraction ("1.5h").  TOML
    numbers (int, float) are seconds as they are.

    ``describe(seconds)`` is the inverse for people: the largest unit that
    divides the value evenly, spelled out ("4 hours", "5 days", "90
    seconds"), as sendmail's warning texts say it.

    link is the lower layer: edgemail may import this module, link never
    imports edgemail.

FAILURES
    parse() raises ValueError whose text names the accepted forms and the
    value given; negative values and booleans are refused.
"""

from __future__ import annotations

import re
from typing import Any

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PAIR = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])", re.IGNORECASE)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
FORMS = "a duration such as 90s, 15m, 1h30m, 5d or seconds"
_NAMES = (("week", 604800), ("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


def parse(value: Any) -> float:
    """"1h30m" -> 5400.0; "90" -> 90.0; 90 -> 90.0.  Raises ValueError naming the forms."""
    if isinstance(value, bool):
        raise ValueError(f"expected {FORMS}, got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"expected a duration >= 0, got {value!r}")
        return float(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "now":
            return 0.0
        if _NUMBER.fullmatch(text):
            return float(text)
        pos, total = 0, 0.0
        for m in _PAIR.finditer(text):
            if m.start() != pos:
                break
            total += float(m.group(1)) * UNITS[m.group(2).lower()]
            pos = m.end()
        if pos == len(text) and pos > 0:
            return total
    raise ValueError(f"expected {FORMS}, got {value!r}")


def describe(seconds: float) -> str:
    """5 * 86400 -> "5 days"; 14400 -> "4 hours"; 5400 -> "90 minutes"; 1.5 -> "1.5 seconds"."""
    if seconds != int(seconds):
        return f"{seconds:g} seconds"
    n = int(seconds)
    for name, size in _NAMES:
        if n >= size and n % size == 0:
            count = n // size
            return f"{count} {name}" + ("" if count == 1 else "s")
    return f"{n} seconds"
