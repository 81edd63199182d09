"""delivery/outcome.py - what one delivery attempt's results mean (CORE).

NAME
    outcome - decide(), internal_error(), dsn_timer(), timer_plan(): the
    runner's decisions about a message, as pure functions

SYNOPSIS
    out = decide(entry, jobs, expansions, attempts, now=now, cfg=cfg, link_up_s=lu)
    out.record          # -> store.update(qid, out.record, next_attempt=out.next_attempt)
    out.retry_at        # -> the background loop's list (cheap jobs), or None
    out.failed          # -> Reporter.failed: (job, attempt) for the failure report
    out.warn            # -> Reporter.delayed + store.mark_warned
    internal_error(entry, keys, reason, now=now, cfg=cfg) -> Outcome   # 4.3.0, backoff
    dsn_timer(entry, now=now, cfg=cfg, link_up_s=lu, counting=True) -> wall time | None
    timer_plan(entry, jobs, now=now, cfg=cfg, link_up_s=lu) -> TimerPlan(expire, warn, retry_cheap)
    dsn_overdue(entry, now=now, cfg=cfg, link_up_s=lu) -> bool       # at start: check now
    expiry(entry, jobs, now=now, cfg=cfg, link_up_s=lu) -> {key: Attempt} | None

DESCRIPTION
    ``decide`` turns one attempt's results (one Attempt per Job, keyed like
    the spool: the recipient, or "rcpt>address" for an alias expansion)
    into what the driver does next:

      record        every attempt that was not cut by the link or by
                    stop_run (``port.is_cut``); past Timeout.queuereturn a
                    deferral is the return (EXPIRED 4.4.7, sendmail's
                    markfailure: "Cannot send message for 5 days"), so
                    every return follows a failed attempt; plus the envelope recipient
                    of an alias once all its expansions are final
                    (``combine``).  Empty: nothing is written, no attempt is
                    counted, no backoff grows.
      next_attempt  a recorded deferral moves the entry's next attempt by
                    Postfix's backoff (spool.schedule.next_attempt: the age,
                    clamped to [min_backoff, max_backoff]); else None (the
                    store leaves it as it is).
      retry_at      cheap jobs (``port.is_cheap``) are retried by the
                    runner's background loop: at next_attempt when one was
                    deferred, at now + retry.min_backoff when one was only
                    cut (a retry, not a backoff); else None.
      failed        the jobs that became BOUNCED or EXPIRED, for the RFC
                    3464 failure report.
      warn          a delay warning is due: something was recorded, the
                    message stays queued (not every recipient final) and
                    Timeout.queuewarn has passed (once: the entry's warned
                    flag; 0 disables it).

    ``internal_error``: a delivery that raised defers KEYS 4.3.0 with the
    normal backoff (issue 16 §8).  ``dsn_timer`` is when the next
    queuewarn/queuereturn decision is due (by urgency; ``link_up_s`` with
    retry.count_link_up_time_only, where the age grows only while the link
    is up: ``counting``); ``timer_plan`` is what the timer then does: hold
    jobs returned by age (``expiry``: EXPIRED 4.4.7, which ``decide``
    records and reports like a bounce), cheap jobs tried once more, the
    warning once.

NEVER
    Does I/O, reads a clock or logs: ``now`` (wall time of the record) and
    ``link_up_s`` (the link-up seconds since the message arrived, or None
    when ages count all time) come from the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from edgemail.config.model import Config
from edgemail.delivery.port import Job, is_cheap, is_cut
from edgemail.envelope import Attempt, RcptStatus
from edgemail.spool import schedule
from edgemail.spool.record import QueueEntry, StateUpdate, apply
from link.durations import describe

@dataclass(frozen=True)
class Outcome:
    """What the driver does with one attempt's results (see the module docstring)."""

    record: dict[str, Attempt]
    next_attempt: float | None
    retry_at: float | None
    failed: tuple[tuple[Job, Attempt], ...]
    warn: bool
    #: the jobs that were SENT now, for success reports (Reporter.delivered)
    delivered: tuple[tuple[Job, Attempt], ...] = ()


def decide(entry: QueueEntry, jobs: Sequence[Job], expansions: Mapping[str, list[str]],
           attempts: Mapping[str, Attempt], *, now: float, cfg: Config,
           link_up_s: float | None = None) -> Outcome:
    """The meaning of ATTEMPTS (one per job) for ENTRY as it was before them."""
    record = expire_deferred(entry, {k: a for k, a in attempts.items() if not is_cut(a)},
                             now=now, cfg=cfg, link_up_s=link_up_s)
    record.update(originals(entry, expansions, record, now))
    deferred = [j for j in jobs if _status(record, j) is RcptStatus.DEFERRED]
    next_at = schedule.next_attempt(now, entry.created, cfg.retry) if deferred else None
    failed = tuple((j, record[j.key]) for j in jobs
                   if _status(record, j) in (RcptStatus.BOUNCED, RcptStatus.EXPIRED))
    delivered = tuple((j, record[j.key]) for j in jobs if _status(record, j) is RcptStatus.SENT)
    return Outcome(record, next_at, _retry_at(jobs, attempts, deferred, next_at, now, cfg),
                   failed, _warn(entry, record, now, cfg, link_up_s), delivered)


def _status(record: Mapping[str, Attempt], job: Job) -> RcptStatus | None:
    a = record.get(job.key)
    return a.status if a is not None else None


def _retry_at(jobs, attempts, deferred, next_at, now, cfg: Config) -> float | None:
    if any(is_cheap(j) for j in deferred):
        return next_at
    if any(is_cheap(j) and j.key in attempts and is_cut(attempts[j.key]) for j in jobs):
        return now + cfg.retry.min_backoff
    return None


def _warn(entry: QueueEntry, record: dict[str, Attempt], now: float, cfg: Config,
          link_up_s: float | None) -> bool:
    if not record or apply(entry, StateUpdate(dict(record))).done:
        return False
    return schedule.warn_due(entry.envelope, entry.created, now, cfg, warned=entry.warned,
                             link_up_s=link_up_s)


def originals(entry: QueueEntry, expansions: Mapping[str, list[str]],
              record: Mapping[str, Attempt], now: float) -> dict[str, Attempt]:
    """An aliased envelope recipient is final once all its expansions are
    (recorded now, or earlier: the entry's last_attempt)."""
    out = {}
    for rcpt, keys in expansions.items():
        states = [record.get(k) or entry.last_attempt.get(k) for k in keys]
        finals = [s for s in states if s is not None and s.status.final]
        if len(finals) == len(keys):
            out[rcpt] = combine(finals, now)
    return out


def combine(attempts: list[Attempt], now: float) -> Attempt:
    """The envelope recipient's state from its expansions' (all final):
    sent when all were sent, else the first failure's."""
    sent = [a for a in attempts if a.status is RcptStatus.SENT]
    if len(sent) == len(attempts):
        return Attempt(RcptStatus.SENT, "2.0.0", f"delivered to {len(sent)} address(es) (alias)",
                       relay="alias", at=now)
    bad = next(a for a in attempts if a.status is not RcptStatus.SENT)
    return Attempt(bad.status, bad.dsn, bad.text, relay=bad.relay, at=now)


def expire_deferred(entry: QueueEntry, record: Mapping[str, Attempt], *, now: float, cfg: Config,
                    link_up_s: float | None = None) -> dict[str, Attempt]:
    """RECORD with every deferral turned into EXPIRED (4.4.7) once ENTRY is
    past Timeout.queuereturn: sendmail returns a message only after a
    delivery attempt failed (markfailure), never for time alone."""
    if not schedule.expired(entry.envelope, entry.created, now, cfg, link_up_s=link_up_s):
        return dict(record)
    text = expiry_text(entry, cfg)
    return {k: (Attempt(RcptStatus.EXPIRED, "4.4.7", f"{text}; last attempt: {a.text}",
                        relay=a.relay, at=a.at, extra=a.extra)
                if a.status is RcptStatus.DEFERRED else a) for k, a in record.items()}


def expiry_text(entry: QueueEntry, cfg: Config) -> str:
    """sendmail's "Cannot send message for 5 days" (pintvl: the configured time, spelled out)."""
    return (f"Cannot send message for {describe(schedule.return_after(entry.envelope, cfg.Timeout))} "
            "(Timeout.queuereturn)")


def expiry(entry: QueueEntry, jobs: Sequence[Job], *, now: float, cfg: Config,
           link_up_s: float | None = None) -> dict[str, Attempt] | None:
    """Past Timeout.queuereturn: an EXPIRED attempt (4.4.7) for every one of
    JOBS (the timer's, for jobs no attempt is made for: hold routes); else None."""
    if not schedule.expired(entry.envelope, entry.created, now, cfg, link_up_s=link_up_s):
        return None
    text = expiry_text(entry, cfg)
    return {j.key: Attempt(RcptStatus.EXPIRED, "4.4.7", text, relay="none", at=now) for j in jobs}


def internal_error(entry: QueueEntry, keys: Sequence[str], reason: str, *, now: float,
                   cfg: Config) -> Outcome:
    """A delivery of ENTRY raised (our bug, or content nothing expected):
    every key in KEYS deferred 4.3.0 with the normal backoff, retried by
    the background loop at that time (whatever its routes)."""
    a = Attempt(RcptStatus.DEFERRED, "4.3.0", f"internal error: {reason}", relay="none", at=now,
                extra={"scope": "message"})
    next_at = schedule.next_attempt(now, entry.created, cfg.retry)
    return Outcome({k: a for k in keys}, next_at, next_at, (), False)


def dsn_timer(entry: QueueEntry, *, now: float, cfg: Config, link_up_s: float | None = None,
              counting: bool = True) -> float | None:
    """When the next Timeout.queuewarn / queuereturn decision about ENTRY is
    due (wall time, strictly after NOW), or None: both behind it, or the age
    that counts does not grow now (``counting`` false: link-up time only,
    with the link down)."""
    if not counting:
        return None
    aged = schedule.counted_age(now, entry.created, cfg.retry, link_up_s)
    limits = [schedule.return_after(entry.envelope, cfg.Timeout)]
    if not entry.warned and schedule.warn_after(entry.envelope, cfg.Timeout) > 0:
        limits.append(schedule.warn_after(entry.envelope, cfg.Timeout))
    ahead = [limit - aged for limit in limits if limit > aged]
    return now + min(ahead) if ahead else None


def dsn_overdue(entry: QueueEntry, *, now: float, cfg: Config,
                link_up_s: float | None = None) -> bool:
    """A decision fell due while nobody looked (the daemon was down): the
    warning is due, or Timeout.queuereturn has passed."""
    return (schedule.expired(entry.envelope, entry.created, now, cfg, link_up_s=link_up_s)
            or schedule.warn_due(entry.envelope, entry.created, now, cfg, warned=entry.warned,
                                 link_up_s=link_up_s))


@dataclass(frozen=True)
class TimerPlan:
    """What a DSN timer does for one message (timer_plan)."""

    expire: dict[str, Attempt]      # hold jobs past Timeout.queuereturn: returned without an attempt
    warn: bool                      # the delay warning is due and something stays queued
    retry_cheap: bool               # past queuereturn: try the cheap jobs once more now


def timer_plan(entry: QueueEntry, jobs: Sequence[Job], *, now: float, cfg: Config,
               link_up_s: float | None = None) -> TimerPlan:
    """The DSN timer's decisions for ENTRY (its pending JOBS).  Past
    Timeout.queuereturn, jobs on hold routes (sendmail's ``%`` mailers:
    delivered only when the customer asks, ETRN) are returned by age;
    cheap jobs get one more attempt now, returned if it fails; jobs for the
    link wait for the next queue run's attempt.  The warning is due past
    queuewarn (once) unless every pending job is being returned."""
    expire: dict[str, Attempt] = {}
    past = schedule.expired(entry.envelope, entry.created, now, cfg, link_up_s=link_up_s)
    if past:
        expire = expiry(entry, [j for j in jobs if j.decision.kind == "hold"], now=now, cfg=cfg,
                        link_up_s=link_up_s) or {}
    left = [j for j in jobs if j.key not in expire]
    warn = bool(left) and schedule.warn_due(entry.envelope, entry.created, now, cfg,
                                            warned=entry.warned, link_up_s=link_up_s)
    return TimerPlan(expire, warn, past and any(is_cheap(j) for j in left))
