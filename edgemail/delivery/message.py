"""delivery/message.py - one message's turn: route, attempt, record, log, warn, expire (DRIVER).

NAME
    message - MessageDriver, the Runner's mixin that delivers one queued
    message and records the outcome

DESCRIPTION
    Every delivery of a message goes through ``_locked(qid, fn, ...)``: the
    message's lock is held and its entry read fresh from the store, so the
    store has one writer per qid.  ``_attempt`` routes the pending
    recipients (``_jobs``: one Job per recipient, or per expansion of an
    alias, keyed "rcpt>address"), expires the message if it is past
    Timeout.queuereturn, reads its data off the loop, hands the jobs the
    caller wants (cheap ones, or those of a queue run) to the Deliverer,
    and ``_record``s the attempts: one delivery line per job, one
    ``store.update`` for what is not cut, failure reports (Reporter), then
    the delay warning when due (Timeout.queuewarn, once per message).  An
    aliased envelope recipient becomes final when all its expansions are
    (``port.combine``).  ``_cheap(qid)`` is the delivery on_commit spawns;
    ``_check`` is the sweep's (expire, or warn).  Deferred cheap deliveries
    are put back on the background loop's list (``_due``) for the time
    spool.schedule.next_attempt gives; one cut by the link comes back after
    retry.min_backoff, as a retry, not a backoff.

INVARIANTS
    A delivery cut by the link or by stop_run (``port.is_cut``) is logged
    but never recorded: no attempt counted, next_attempt not moved.  A
    delivery of the active queue run is in ``_current`` while in flight,
    so that stop_run cancels the delivery and not the run; the run's
    recipients are then cut with STOPPED and the cached SMTP sessions
    dropped (their state is unknown).  Ages count link-up time only with
    retry.count_link_up_time_only (``_link_up_s``).

FAILURES
    A queue file that cannot be read is logged (queue_file_unreadable) and
    skipped; it stays queued.  A message no longer queued is skipped.

THE RUNNER SUPPLIES
    cfg, store, clock, router, smtp, hosts, linkup, deliverer, reporter,
    _locks, _cheap_due, _kick, _active, _current (driver.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from edgemail import maillog
from edgemail.delivery.deliver import RunContext
from edgemail.delivery.port import (
    Job,
    combine,
    cut_attempt,
    is_cheap,
    is_cut,
    stat_text,
)
from edgemail.delivery.state import drop_connections
from edgemail.envelope import Attempt, RcptStatus
from edgemail.errors import CorruptQueueFile
from edgemail.spool import schedule

log = logging.getLogger("edgemail.runner")

#: the reason given for a delivery cut by stop_run (logged, not recorded)
STOPPED = "queue run stopped (link going down)"


class MessageDriver:
    """Mixin for Runner: one message at a time, owned through its lock."""

    def _lock(self, qid: str) -> asyncio.Lock:
        return self._locks.setdefault(qid, asyncio.Lock())

    async def _locked(self, qid: str, fn, *args):
        """Run fn(entry, *args) owning the message (store: one writer per qid)."""
        lock = self._lock(qid)
        try:
            async with lock:
                try:
                    entry = self.store.get(qid)
                except KeyError:
                    return None
                return await fn(entry, *args)
        finally:
            if not lock.locked() and not getattr(lock, "_waiters", None):
                self._locks.pop(qid, None)

    async def _cheap(self, qid: str) -> None:
        ctx = RunContext(f"cheap-{qid}", self.hosts, self.clock.wall)
        await self._locked(qid, self._attempt, ctx, is_cheap)

    async def _check(self, entry) -> None:
        """Sweep: expire, or send the delay warning."""
        now = self.clock.wall()
        jobs, exp = self._jobs(entry)
        if schedule.expired(entry.envelope, entry.created, now, self.cfg, link_up_s=self._link_up_s(entry, now)):
            await self._expire(entry, jobs, exp, now)
        elif jobs:
            await self._maybe_warn(entry, await self._data(entry), now)

    def _jobs(self, entry) -> tuple[list[Job], dict[str, list[str]]]:
        """Pending deliveries, and for aliased recipients the keys of their expansions."""
        jobs, expansions = [], {}
        for rcpt in entry.envelope.recipients:
            st = entry.rcpt_status.get(rcpt.address)
            if st is not None and st.final:
                continue
            decisions = list({d.address.lower(): d for d in self.router.route(rcpt.address)}.values())
            if len(decisions) == 1:
                keys = [rcpt.address]
            else:
                keys = [f"{rcpt.address}>{d.address}" for d in decisions]
                expansions[rcpt.address] = keys
            for d, key in zip(decisions, keys):
                st = entry.rcpt_status.get(key)
                if st is None or not st.final:
                    jobs.append(Job(rcpt, d, key))
        return jobs, expansions

    async def _data(self, entry) -> bytes | None:
        try:
            return await asyncio.to_thread(self.store.read_data, entry.qid)
        except CorruptQueueFile as exc:
            log.error(maillog.queue_file_unreadable(entry.qid, exc))
            return None

    async def _attempt(self, entry, ctx: RunContext, want: Callable[[Job], bool]) -> dict[str, Attempt]:
        now = self.clock.wall()
        all_jobs, expansions = self._jobs(entry)
        if schedule.expired(entry.envelope, entry.created, now, self.cfg,
                            link_up_s=self._link_up_s(entry, now)):
            await self._expire(entry, all_jobs, expansions, now)
            return {}
        jobs = [j for j in all_jobs if want(j)]
        if not jobs:
            return {}
        data = await self._data(entry)
        if data is None:
            return {}
        task = asyncio.ensure_future(self.deliverer.deliver(entry.envelope, data, jobs, ctx))
        if ctx.run == self._active:
            self._current.add(task)       # stop_run() cancels these deliveries, not the run
        try:
            attempts = await task
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling() or not task.cancelled():
                raise                     # we are being cancelled ourselves
            attempts = {j.key: cut_attempt(STOPPED, "none", now) for j in jobs}
            drop_connections(self.smtp)
        finally:
            self._current.discard(task)
        await self._record(entry, data, jobs, expansions, attempts, now)
        return attempts

    async def _record(self, entry, data, jobs, expansions, attempts, t0) -> None:
        now = self.clock.wall()
        for j in jobs:
            self._log(entry, j, attempts[j.key], t0, now)
        recorded = {k: a for k, a in attempts.items() if not is_cut(a)}
        recorded.update(self._originals(entry, expansions, recorded, now))
        deferred = [j for j in jobs if j.key in recorded and recorded[j.key].status is RcptStatus.DEFERRED]
        if any(is_cheap(j) and is_cut(attempts[j.key]) for j in jobs):
            # cut by the link: nothing recorded, so try again soon (not a backoff)
            self._due(entry.qid, now + self.cfg.retry.min_backoff)
        if not recorded:
            return
        next_at = schedule.next_attempt(now, entry.created, self.cfg.retry) if deferred else None
        after = await self.store.update(entry.qid, recorded, next_attempt=next_at)
        if any(is_cheap(j) for j in deferred):
            self._due(entry.qid, next_at)
        await self.reporter.failed(entry, data, jobs, recorded, now)
        if not after.done:
            await self._maybe_warn(after, data, now)

    def _originals(self, entry, expansions, recorded, now) -> dict[str, Attempt]:
        """An aliased envelope recipient is final once all its expansions are."""
        out = {}
        for rcpt, keys in expansions.items():
            states = [recorded.get(k) or entry.last_attempt.get(k) for k in keys]
            if all(s is not None and s.status.final for s in states):
                out[rcpt] = combine(states, now)
        return out

    def _due(self, qid: str, when: float) -> None:
        self._cheap_due[qid] = when
        self._kick.set()

    async def _expire(self, entry, jobs, expansions, now) -> None:
        days = schedule.return_after(entry.envelope, self.cfg.Timeout) / 86400
        text = f"Cannot send message for {days:g} days (Timeout.queuereturn)"
        attempts = {j.key: Attempt(RcptStatus.EXPIRED, "4.4.7", text, relay="none", at=now) for j in jobs}
        data = await self._data(entry) or b""
        await self._record(entry, data, jobs, expansions, attempts, now)

    async def _maybe_warn(self, entry, data: bytes | None, now: float) -> None:
        if data is None or not schedule.warn_due(entry.envelope, entry.created, now, self.cfg,
                                                 warned=entry.warned, link_up_s=self._link_up_s(entry, now)):
            return
        jobs, _ = self._jobs(entry)
        await self.reporter.delayed(entry, data, jobs, now)
        await self.store.mark_warned(entry.qid)

    def _log(self, entry, job: Job, a: Attempt, t0: float, now: float) -> None:
        log.info(maillog.delivery(entry.qid, job.decision.address, delay=now - entry.created,
                                  xdelay=now - t0, mailer=job.decision.kind, pri=entry.priority,
                                  relay=a.relay, dsn=a.dsn, stat=stat_text(a)))

    def _link_up_s(self, entry, now: float) -> float | None:
        if not self.cfg.retry.count_link_up_time_only:
            return None
        return self.linkup.since(entry.created, now)
