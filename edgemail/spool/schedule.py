"""spool/schedule.py - when a queued message is tried again, warned about, given up.

NAME
    schedule - retry, expiry and queue-run selection (pure core)

DESCRIPTION
    Owns the time decisions about queued mail:

    * ``next_attempt(now, created, retry)``: Postfix's backoff.  The delay is
      the message's age in the queue clamped to [min_backoff, max_backoff];
      the result is an absolute wall time the spool stores explicitly (never
      derived from file times: the clock across reboots is untrusted).
    * ``warn_due`` / ``expired``: sendmail's Timeout.queuewarn and
      Timeout.queuereturn, picked by ``Envelope.urgency`` ("urgent",
      "normal", "non-urgent").  A queuewarn of 0 means "never warn"; a
      queuereturn of 0 means "return now" (sendmail's ``-OTimeout.queuereturn=now``).
      With ``retry.count_link_up_time_only`` the age that counts is the time
      the link was up since the message arrived (``LinkUpTime`` accumulates it);
      with ``retry.count_offline_time = false`` the time the line was up or
      could have been (``spool.linetime.LineTime``).
    * Clock-jump guard: ages never go negative; a due time further away than
      max_backoff (the wall clock went back) is due now; ``wall_jump`` compares
      wall and monotonic deltas so a driver can detect NTP stepping the clock
      and ``rebase`` stamps written before the step; ``ClockSteps`` keeps
      the steps each queued message saw (delivery/clocksteps.py: the view
      of an entry with its stamps rebased), ``LinkUpTime.rebase`` the
      link-up intervals.
    * Queue-run selection: sendmail's ``-q[!]I|R|S<substr>`` filters, MinQueueAge,
      QueueSortOrder (priority, time, host, filename, random; urgent mail
      first in each), priority with RetryFactor per attempt, MaxQueueRunSize.

    Works on any object with the fields of ``QueueItem`` (the spool's
    QueueEntry has them), so it is tested without a spool.

NEVER
    Reads a clock, touches a file, or decides routes.  ``now`` is wall time
    (POSIX seconds) passed in by the caller.

FILTER SEMANTICS (sendmail queue.c gatherq)
    A filter holds for a value when ``(substr in value) != negated``.  Filters
    of the same kind are ORed (an entry passes if any of them holds), filters
    of different kinds are ANDed.  ``R`` holds if it holds for any pending
    recipient.  R and S compare case-insensitively (sendmail's
    strcontainedin(true, ...)); I compares case-sensitively, because queue
    ids are base-60 and "a" and "A" are different digits (sendmail does the
    same).  Filtered runs ignore MinQueueAge and the backoff: they are an
    explicit request (``sendmail -qR``, ETRN), as sendmail's are.

FAILURES
    ``QueueFilter.parse`` raises ValueError naming the bad filter.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterable, Protocol, Sequence

from edgemail.config.model import Config, RetryConfig, Timeouts
from edgemail.envelope import Envelope, priority

#: a wall clock that moved this much more (or less) than the monotonic clock
#: between two observations has been stepped (NTP, RTC-less boot at the epoch)
DEFAULT_JUMP_LIMIT = 300.0


class QueueItem(Protocol):
    """The fields of a queue entry this module reads (spool QueueEntry has them)."""

    qid: str
    envelope: Envelope
    created: float
    priority: int
    attempts: int
    next_attempt: float
    held: bool


# ---------------------------------------------------------------- age and backoff

def age(now: float, created: float) -> float:
    """Seconds in the queue; a wall clock that went back gives 0, never < 0."""
    return max(0.0, now - created)


def backoff(queue_age: float, retry: RetryConfig) -> float:
    """Postfix: the delay before the next attempt is the age, clamped."""
    return min(max(queue_age, retry.min_backoff), retry.max_backoff)


def next_attempt(now: float, created: float, retry: RetryConfig) -> float:
    """Absolute wall time of the next attempt after a deferral at `now`."""
    return now + backoff(age(now, created), retry)


def is_due(next_at: float, now: float, retry: RetryConfig) -> bool:
    """Due when its time has come, or when the wall clock went back so far
    that the wait would exceed max_backoff (never strand a message)."""
    return next_at <= now or next_at - now > retry.max_backoff


# ---------------------------------------------------------------- warn and return

def counted_age(now: float, created: float, retry: RetryConfig,
                link_up_s: float | None = None) -> float:
    """The age that Timeout.queuewarn/queuereturn are measured against.

    With ``retry.count_link_up_time_only`` it is `link_up_s` (seconds the
    link was up since `created`, from ``LinkUpTime.since``): a message that
    waited a weekend for a dial-up window does not expire for it.  With
    ``retry.count_offline_time = false`` it is the time the line was up or
    could have been (spool/linetime.py ``LineTime.line_since``): a week with
    a broken modem does not age mail.
    """
    if retry.count_link_up_time_only or not retry.count_offline_time:
        if link_up_s is None:
            raise ValueError("count_link_up_time_only is set or count_offline_time is not: pass "
                             "link_up_s (LinkUpTime.since, LineTime.line_since)")
        return max(0.0, link_up_s)
    return age(now, created)


def warn_after(env: Envelope, timeouts: Timeouts) -> float:
    return timeouts.queuewarn[env.urgency]


def return_after(env: Envelope, timeouts: Timeouts) -> float:
    return timeouts.queuereturn[env.urgency]


def warn_due(env: Envelope, created: float, now: float, cfg: Config, *,
             warned: bool = False, link_up_s: float | None = None) -> bool:
    """A delay warning is due (once; 0 disables warnings, as in sendmail).

    Whether anybody wants it (NOTIFY=DELAY) is delivery/dsn.py's decision."""
    limit = warn_after(env, cfg.Timeout)
    if warned or limit <= 0:
        return False
    return counted_age(now, created, cfg.retry, link_up_s) >= limit


def expired(env: Envelope, created: float, now: float, cfg: Config, *,
            link_up_s: float | None = None) -> bool:
    """Timeout.queuereturn has passed: bounce what is still pending (4.4.7)."""
    return counted_age(now, created, cfg.retry, link_up_s) >= return_after(env, cfg.Timeout)


class LinkUpTime:
    """Accumulates the intervals the link was up, so ages can count only those.

    Pure: the driver calls ``up(now)`` / ``down(now)`` on link events (wall
    time) and ``since(t0, now)`` per message.  ``intervals`` is plain data the
    runner may persist; ``prune(before)`` drops what no queued message needs.
    """

    def __init__(self, intervals: Iterable[tuple[float, float]] = (), up_since: float | None = None) -> None:
        self.intervals: list[tuple[float, float]] = sorted(intervals)
        self.up_since = up_since

    def up(self, now: float) -> None:
        if self.up_since is None:
            self.up_since = now

    def down(self, now: float) -> None:
        if self.up_since is not None:
            if now > self.up_since:
                self.intervals.append((self.up_since, now))
            self.up_since = None

    def since(self, t0: float, now: float) -> float:
        spans = list(self.intervals)
        if self.up_since is not None:
            spans.append((self.up_since, now))
        return sum(max(0.0, min(end, now) - max(start, t0)) for start, end in spans)

    def prune(self, before: float) -> None:
        self.intervals = [(s, e) for s, e in self.intervals if e > before]

    def rebase(self, step: float) -> None:
        """The wall clock was stepped by STEP: move what was recorded with it."""
        self.intervals = [(rebase(s, step), rebase(e, step)) for s, e in self.intervals]
        if self.up_since is not None:
            self.up_since = rebase(self.up_since, step)


# ---------------------------------------------------------------- clock jumps

def wall_jump(prev_wall: float, prev_mono: float, wall: float, mono: float) -> float:
    """How far the wall clock was stepped between two observations
    (positive: forward).  Both clocks advance together unless someone steps
    the wall clock, so the difference of their deltas is the step."""
    return (wall - prev_wall) - (mono - prev_mono)


def detect_jump(prev_wall: float, prev_mono: float, wall: float, mono: float,
                limit: float = DEFAULT_JUMP_LIMIT) -> float | None:
    """The step in seconds if it exceeds `limit` either way, else None."""
    step = wall_jump(prev_wall, prev_mono, wall, mono)
    return step if abs(step) > limit else None


def rebase(stamp: float, step: float) -> float:
    """A wall stamp written before a step of `step` seconds, moved with the
    clock: a message queued at boot (clock at the epoch) must not look 56
    years old once NTP has run."""
    return stamp + step



# ---------------------------------------------------------------- queue-run selection

FILTER_KINDS = ("I", "R", "S")


@dataclass(frozen=True)
class QueueFilter:
    """One sendmail ``-q[!]I|R|S<substr>`` modifier."""

    kind: str
    match: str
    negate: bool = False

    @classmethod
    def parse(cls, text: str) -> "QueueFilter":
        """"Rexample.org", "!Sfoo", "-qIabc", "-q!Rx", "q!Rx" -> QueueFilter."""
        t = text.strip()
        if t.startswith("-q"):
            t = t[2:]
        elif t.startswith("q") and len(t) > 1 and t[1] in "!IRS":
            t = t[1:]
        negate = t.startswith("!")
        t = t[1:] if negate else t
        if not t or t[0].upper() not in FILTER_KINDS or len(t) < 2:
            raise ValueError(f"bad queue filter {text!r}: expected [!]I|R|S<substring>, "
                             "e.g. \"R@example.org\" or \"!Sfoo\"")
        return cls(t[0].upper(), t[1:], negate)

    def holds(self, value: str) -> bool:
        if self.kind == "I":
            found = self.match in value
        else:
            found = self.match.lower() in value.lower()
        return found != self.negate


def pending_recipients(entry: QueueItem) -> list[str]:
    status = getattr(entry, "rcpt_status", None) or {}
    return [r.address for r in entry.envelope.recipients
            if not (status.get(r.address) and status[r.address].final)]


def matches(entry: QueueItem, filters: Sequence[QueueFilter]) -> bool:
    """sendmail: same kind ORed, different kinds ANDed."""
    values = {"I": [entry.qid], "S": [entry.envelope.mail_from],
              "R": pending_recipients(entry)}
    for kind in FILTER_KINDS:
        group = [f for f in filters if f.kind == kind]
        if group and not any(f.holds(v) for f in group for v in values[kind]):
            return False
    return True


def run_priority(entry: QueueItem, cfg: Config) -> int:
    """sendmail's priority for ordering: size - class*ClassFactor +
    nrcpts*RecipientFactor + attempts*RetryFactor (lower runs first)."""
    env = entry.envelope
    return priority(env.size, env.precedence, env.nrcpts, class_factor=cfg.ClassFactor,
                    recipient_factor=cfg.RecipientFactor, retry_factor=cfg.RetryFactor,
                    attempts=entry.attempts)


def host_key(entry: QueueItem) -> tuple[str, ...]:
    """Domain of the first pending recipient, labels reversed (sendmail's
    byhost order groups a destination's messages together)."""
    rcpts = pending_recipients(entry) or [r.address for r in entry.envelope.recipients]
    domain = rcpts[0].rpartition("@")[2].lower() if rcpts else ""
    return tuple(reversed(domain.split(".")))


def too_young(entry: QueueItem, now: float, min_queue_age: float) -> bool:
    """MinQueueAge: the time since the last attempt (sendmail's K line).
    Never-tried messages are never too young.  ``last_attempt`` is either a
    time or the spool's per-recipient map of Attempts (the latest counts);
    without it ``created`` stands in."""
    if min_queue_age <= 0 or entry.attempts == 0:
        return False
    last = getattr(entry, "last_attempt", None)
    if isinstance(last, dict):
        last = max((a.at for a in last.values()), default=None)
    last = entry.created if last is None else last
    return 0 <= now - last < min_queue_age


def order(entries: Iterable[QueueItem], cfg: Config, rng: random.Random | None = None) -> list:
    """Sort by QueueSortOrder (priority ties broken by creation, then qid),
    urgent mail (Precedence: urgent, special-delivery) first in every order:
    on a 56k line a big message can hold the line for minutes, and sendmail's
    ClassFactor alone puts a 200 KB urgent message behind a small normal one."""
    items = list(entries)
    how = cfg.QueueSortOrder
    if how == "random":
        (rng or random.Random()).shuffle(items)
        return sorted(items, key=lambda e: e.envelope.urgency != "urgent")
    keys = {
        "priority": lambda e: (run_priority(e, cfg), e.created, e.qid),
        "time": lambda e: (e.created, e.qid),
        "host": lambda e: (host_key(e), run_priority(e, cfg), e.qid),
        "filename": lambda e: (e.qid,),
    }
    return sorted(items, key=lambda e: (e.envelope.urgency != "urgent", keys[how](e)))


def select(entries: Iterable[QueueItem], now: float, cfg: Config, *,
           filters: Sequence[QueueFilter] = (), flush: bool = False,
           rng: random.Random | None = None) -> list:
    """The entries a queue run takes, in order, at most MaxQueueRunSize.

    Held entries never.  Unfiltered runs skip entries not yet due (unless
    `flush`: ``sendmail -q`` by hand, link-up) and entries younger than
    MinQueueAge since their last attempt.  Filtered runs take every
    matching entry (sendmail ignores MinQueueAge for them).
    """
    chosen = []
    for e in entries:
        if e.held:
            continue
        if filters:
            if not matches(e, filters):
                continue
        elif too_young(e, now, cfg.MinQueueAge) or not (flush or is_due(e.next_attempt, now, cfg.retry)):
            continue
        chosen.append(e)
    ordered = order(chosen, cfg, rng)
    return ordered[:cfg.MaxQueueRunSize] if cfg.MaxQueueRunSize > 0 else ordered


def parse_filters(texts: Iterable[str]) -> list[QueueFilter]:
    return [QueueFilter.parse(t) for t in texts]


__all__ = ["QueueItem", "age", "backoff", "next_attempt", "is_due", "counted_age",
           "warn_after", "return_after", "warn_due", "expired", "LinkUpTime",
           "wall_jump", "detect_jump", "rebase", "QueueFilter", "parse_filters",
           "matches", "run_priority", "order", "select", "too_young"]
