"""bigmail.py - big mail waits for a cheap window (CORE).

NAME
    bigmail - waits(policy, size, urgent, now) -> Wait | None;
    cheap_now(policy, now); next_cheap(policy, now)

DESCRIPTION
    Issue 14 §4.  With `set big_mail = SIZE` and `cheap DAYS HH:MM-HH:MM`
    lines in dial.policy, a message of at least SIZE bytes that is not
    urgent is not sent outside every cheap window: it makes no call, a
    queue run on a call made for other mail leaves it, and mailq and
    `edgemail link explain` give Wait.reason.  Urgent mail never waits.
    Cheap windows are read as forbidden windows are (link.policyfile),
    in the policy's zone.

NEVER
    Reads the clock, the queue or a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta

from link.policy import Policy, instants

_SCAN_DAYS = 8


@dataclass(frozen=True)
class Wait:
    reason: str
    until: datetime | None               #: when the next cheap window begins


def cheap_now(policy: Policy, now: datetime) -> bool:
    naive = policy.local(now)
    return any(w.forbids(naive) for w in policy.cheap)


def next_cheap(policy: Policy, now: datetime) -> datetime | None:
    """The first instant after `now` inside a cheap window (None: none within 8 days)."""
    start = policy.local(now).date()
    found = []
    for k in range(-1, _SCAN_DAYS):
        day = datetime.combine(start + timedelta(days=k), time())
        for w in policy.cheap:
            if (day.isoweekday() % 7) in w.dows:
                found += [t for t in instants(day + timedelta(minutes=w.start), policy.zone) if t > now]
    return min(found, default=None)


def waits(policy: Policy, size: int, urgent: bool, now: datetime) -> Wait | None:
    """Why a message of `size` bytes may not go now (None: it may)."""
    limit = policy.settings.big_mail
    if not limit or urgent or size < limit or cheap_now(policy, now):
        return None
    until = next_cheap(policy, now)
    windows = ", ".join(w.text for w in policy.cheap)
    at = until.astimezone(policy.zone).strftime("%a %H:%M") if until else "never within a week"
    return Wait(f"big mail ({size} bytes >= big_mail {limit}) waits for a cheap window ({windows}): {at}", until)
