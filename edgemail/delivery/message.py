"""delivery/message.py - one message's turn: route, attempt, record, log, warn, expire (DRIVER).

NAME
    message - MessageDriver, the part of the Runner that delivers one queued
    message and carries out what outcome.decide says its results mean

SYNOPSIS
    md = MessageDriver(cfg, store, clock=clock, deliverer=deliverer,
                       reporter=reporter, smtp=smtp, linkup=linkup,
                       plan=runner.pending_jobs, on_retry=retries.due)
    await md.attempt(qid, ctx, want, stoppable=None) -> {key: Attempt}
    await md.check(qid) -> bool           # the DSN timer's: return hold jobs, warn; retry cheap?
    md.link_up_s(entry, now)              # the age Timeout.* count, or None

DESCRIPTION
    Every delivery of a message goes through its lock: the message's entry
    is read fresh from the store while the lock is held, so the store has
    one writer per qid.  ``attempt`` plans the pending recipients (``plan``:
    one Job per recipient, or per expansion of an alias), reads its data
    off the loop, hands the jobs ``want`` keeps (cheap ones, or those of a
    queue run) to the Deliverer, one per final mailbox (port.one_per_mailbox:
    a job reaching a mailbox another job delivers to takes that job's
    attempt, so the mailbox gets one copy and each original recipient its
    DSN), then records: what outcome.decide returns
    (a deferral past Timeout.queuereturn is the return) - one delivery line
    per job, ``on_retry`` for the background loop, one ``store.update``,
    the failure report (Reporter), the delay warning.  ``check`` is the
    DSN timer's turn (outcome.timer_plan).  Entries are read through the
    clock guard (``guard.check()`` first, then ``guard.view``: stamps
    rebased after a clock step).

    ``stoppable`` is the queue run's set of deliveries that stop_run
    cancels: the delivery (not the recording) is put in it while in
    flight.  A delivery cancelled that way is cut: every job gets
    ``port.cut_attempt(STOPPED)`` and the cached SMTP sessions are dropped
    (their state is unknown).

INVARIANTS
    A delivery cut by the link or by stop_run is logged but never recorded
    (outcome.decide leaves it out): no attempt counted, next_attempt not
    moved.  Ages count link-up time only with retry.count_link_up_time_only,
    the time the line was up or could have been with retry.count_offline_time
    = false (``link_up_s``; spool/linetime.py).

FAILURES
    A queue file that cannot be read is logged (queue_file_unreadable) and
    skipped; it stays queued.  A message no longer queued is skipped
    (``attempt`` returns {}).  Anything else a turn raises (routing, the
    client, a transport: our bug, or content nobody expected) is logged
    once with its traceback (delivery_internal_error) and the message's
    pending recipients are deferred 4.3.0 with the normal backoff
    (outcome.internal_error); ``attempt`` and ``check`` never raise but
    CancelledError, so a queue run goes on with the other messages.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Mapping, Sequence

from edgemail import maillog
from edgemail.clock import Clock
from edgemail.config.model import Config
from edgemail.delivery import outcome
from edgemail.delivery.clockguard import ClockGuard
from edgemail.delivery.deliver import Deliverer, RunContext
from edgemail.delivery.port import Job, cut_attempt, one_per_mailbox, stat_text
from edgemail.delivery.reports import Reporter
from edgemail.delivery.state import drop_connections
from edgemail.envelope import Attempt
from edgemail.errors import CorruptQueueFile, QueueFileGone
from edgemail.smtpc.session import SmtpClient
from edgemail.spool.record import QueueEntry
from edgemail.spool.linetime import LineTime
from edgemail.spool.store import Store

log = logging.getLogger("edgemail.runner")

#: the reason given for a delivery cut by stop_run (logged, not recorded)
STOPPED = "queue run stopped (link going down)"

Plan = Callable[[QueueEntry], tuple[list[Job], dict[str, list[str]]]]


class MessageDriver:
    """One message at a time, owned through its lock (see the module docstring)."""

    def __init__(self, cfg: Config, store: Store, *, clock: Clock, deliverer: Deliverer,
                 reporter: Reporter, smtp: SmtpClient, linkup: LineTime, plan: Plan,
                 on_retry: Callable[[str, float], None], guard: ClockGuard) -> None:
        self.cfg, self.store, self.clock = cfg, store, clock
        self.deliverer, self.reporter, self.smtp = deliverer, reporter, smtp
        self.linkup, self.plan, self.on_retry, self.guard = linkup, plan, on_retry, guard
        self._locks: dict[str, asyncio.Lock] = {}

    # ------------------------------------------------------------ entry points

    async def attempt(self, qid: str, ctx: RunContext, want: Callable[[Job], bool], *,
                      stoppable: set[asyncio.Task] | None = None) -> dict[str, Attempt]:
        """Deliver the jobs of QID that WANT keeps; the attempts ({} if none).
        Never raises but CancelledError: one message never stops a run."""
        async def turn(entry: QueueEntry) -> dict[str, Attempt]:
            return await self._attempt(entry, ctx, want, stoppable)
        return await self._guarded(qid, turn) or {}

    async def check(self, qid: str) -> bool:
        """The DSN timer's turn (outcome.timer_plan): return what waits on a
        hold route past Timeout.queuereturn, send the delay warning; whether
        the cheap jobs should be tried once more now (they are returned if
        that fails)."""
        return bool(await self._guarded(qid, self._check))

    def link_up_s(self, entry: QueueEntry, now: float) -> float | None:
        """The seconds Timeout.* count for ENTRY (None: its whole age)."""
        if self.cfg.retry.count_link_up_time_only:
            return self.linkup.since(entry.created, now)
        if not self.cfg.retry.count_offline_time:
            return self.linkup.line_since(entry.created, now)
        return None

    # ------------------------------------------------------------ the lock

    async def _guarded(self, qid: str, fn: Callable[[QueueEntry], Awaitable]):
        try:
            return await self._locked(qid, fn)
        except Exception:              # a bug past the turn's own guard: the run goes on
            log.exception(maillog.runner_internal_error())
            return None

    async def _locked(self, qid: str, fn: Callable[[QueueEntry], Awaitable]):
        """Run fn(entry) owning the message (store: one writer per qid)."""
        lock = self._locks.setdefault(qid, asyncio.Lock())
        try:
            async with lock:
                self.guard.check()
                try:
                    entry = self.guard.view(self.store.get(qid))
                except KeyError:
                    return None
                return await fn(entry)
        finally:
            if not lock.locked() and not getattr(lock, "_waiters", None):
                self._locks.pop(qid, None)

    # ------------------------------------------------------------ one turn

    async def _check(self, entry: QueueEntry) -> bool:
        now = self.clock.wall()
        jobs, expansions = self.plan(entry)
        todo = outcome.timer_plan(entry, jobs, now=now, cfg=self.cfg,
                                  link_up_s=self.link_up_s(entry, now))
        if todo.expire:
            held = [j for j in jobs if j.key in todo.expire]
            await self._expire(entry, held, expansions, todo.expire, now)
        if todo.warn:
            fresh = self._fresh(entry.qid)
            data = await self._data(fresh) if fresh is not None and not fresh.warned else None
            if fresh is not None and data is not None:
                await self._warn(fresh, data, now)
        return todo.retry_cheap

    async def _attempt(self, entry: QueueEntry, ctx: RunContext, want: Callable[[Job], bool],
                       stoppable: set[asyncio.Task] | None) -> dict[str, Attempt]:
        now = self.clock.wall()
        jobs: list[Job] = []
        try:
            all_jobs, expansions = self.plan(entry)
            jobs = [j for j in all_jobs if want(j)]
            if not jobs:
                return {}
            data = await self._data(entry)
            if data is None:
                return {}
            carriers, riders = one_per_mailbox(jobs)
            attempts = await self._deliver(entry, data, carriers, ctx, stoppable, now)
            attempts.update({key: attempts[carrier] for key, carrier in riders.items()})
        except Exception as exc:       # issue 16 §8: one bad message never blocks the queue
            return await self._internal_error(entry, jobs, exc, now)
        await self._record(entry, data, jobs, expansions, attempts, now)
        return attempts

    async def _internal_error(self, entry: QueueEntry, jobs: list[Job], exc: Exception,
                              now: float) -> dict[str, Attempt]:
        """Log EXC once with its traceback; defer what was to be delivered 4.3.0."""
        reason = f"{type(exc).__name__}: {exc}"
        log.error(maillog.delivery_internal_error(entry.qid, reason), exc_info=exc)
        keys = [j.key for j in jobs] or pending_keys(entry)
        out = outcome.internal_error(entry, keys, reason, now=now, cfg=self.cfg)
        for key, a in out.record.items():
            log.info(maillog.delivery(entry.qid, key, delay=now - entry.created, xdelay=0.0,
                                      mailer="none", pri=entry.priority, relay=a.relay,
                                      dsn=a.dsn, stat=stat_text(a)))
        if out.retry_at is not None:
            self.on_retry(entry.qid, out.retry_at)
        await self.store.update(entry.qid, out.record, next_attempt=out.next_attempt)
        return out.record

    async def _deliver(self, entry: QueueEntry, data: bytes, jobs: list[Job], ctx: RunContext,
                       stoppable: set[asyncio.Task] | None, now: float) -> dict[str, Attempt]:
        task = asyncio.ensure_future(self.deliverer.deliver(entry.envelope, data, jobs, ctx,
                                                            qid=entry.qid))
        if stoppable is not None:
            stoppable.add(task)           # stop_run() cancels this delivery, not the run
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if (current is not None and current.cancelling()) or not task.cancelled():
                raise                     # we are being cancelled ourselves
            drop_connections(self.smtp)
            return {j.key: cut_attempt(STOPPED, "none", now) for j in jobs}
        finally:
            if stoppable is not None:
                stoppable.discard(task)

    async def _expire(self, entry: QueueEntry, jobs: list[Job], expansions: dict[str, list[str]],
                      attempts: dict[str, Attempt], now: float) -> None:
        data = await self._data(entry) or b""
        await self._record(entry, data, jobs, expansions, attempts, now)

    async def _record(self, entry: QueueEntry, data: bytes, jobs: Sequence[Job],
                      expansions: Mapping[str, list[str]], attempts: Mapping[str, Attempt],
                      t0: float) -> None:
        now = self.clock.wall()
        out = outcome.decide(entry, jobs, expansions, attempts, now=now, cfg=self.cfg,
                             link_up_s=self.link_up_s(entry, now))
        for j in jobs:
            self._log(entry, j, out.record.get(j.key, attempts[j.key]), t0, now)
        if out.retry_at is not None:
            self.on_retry(entry.qid, out.retry_at)
        if not out.record:
            return
        after = self.guard.view(await self.store.update(entry.qid, out.record,
                                                        next_attempt=out.next_attempt))
        try:
            await self.reporter.failed(entry, data, out.failed, now)
            await self.reporter.delivered(entry, data, out.delivered, now)
            if out.warn:
                await self._warn(after, data, now)
        except Exception:              # recorded already; the report is what failed
            log.exception(maillog.runner_internal_error())

    async def _warn(self, entry: QueueEntry, data: bytes, now: float) -> None:
        jobs, _ = self.plan(entry)
        await self.reporter.delayed(entry, data, jobs, now)
        await self.store.mark_warned(entry.qid)

    # ------------------------------------------------------------ helpers

    def _fresh(self, qid: str) -> QueueEntry | None:
        try:
            return self.guard.view(self.store.get(qid))
        except KeyError:
            return None

    async def _data(self, entry: QueueEntry) -> bytes | None:
        try:
            return await asyncio.to_thread(self.store.read_data, entry.qid)
        except CorruptQueueFile as exc:
            log.error(maillog.queue_file_unreadable(entry.qid, exc))
            return None
        except QueueFileGone:
            return None                  # said by the store (queue_file_gone)

    def _log(self, entry: QueueEntry, job: Job, a: Attempt, t0: float, now: float) -> None:
        log.info(maillog.delivery(entry.qid, job.decision.address, delay=now - entry.created,
                                  xdelay=now - t0, mailer=job.decision.kind, pri=entry.priority,
                                  relay=a.relay, dsn=a.dsn, stat=stat_text(a)))


def pending_keys(entry: QueueEntry) -> list[str]:
    """The envelope recipients not final yet (when routing itself failed)."""
    return [r.address for r in entry.envelope.recipients
            if not (entry.rcpt_status.get(r.address) and entry.rcpt_status[r.address].final)]
