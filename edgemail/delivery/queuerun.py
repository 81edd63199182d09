"""delivery/queuerun.py - queue runs: select, hold the line, deliver side by side, stop (DRIVER).

NAME
    queuerun - QueueRunDriver, the Runner's mixin for ``queue_run`` and
    ``stop_run``

DESCRIPTION
    ``queue_run(filters, reason, flush)`` selects with spool.schedule
    (``_select``: filters R/S/I with !; an unfiltered run takes what is
    due, all of it when flushed, past MinQueueAge, and leaves out messages
    that only have hold routes; the queue order; MaxQueueRunSize), logs
    run_start, holds the line (``link.hold``) and starts the messages in
    order, RUN_PARALLEL in flight at most (capped by ConnectionCacheSize;
    0 or 1: one at a time), then saves the host status and logs run_end.
    It returns the RunReport.
    Runs take turns (``_run_lock``); a request identical to one already
    waiting behind the current run joins it and gets its report (Postfix's
    trigger collapse).  ``hold`` routes are delivered only by filtered
    runs (sendmail's ``%`` mailer flag).

    A run stops starting messages on stop_run() (stopped="stop"), after
    queue_run_budget seconds ("budget"), or when a delivery was cut by the
    link ("link"); those in flight are always waited for.  ``stop_run``
    cancels the deliveries in flight (message.py cuts them).

INVARIANTS
    Expensive routes only while the link is up or being brought up on
    purpose (DESIGN invariant 3): with the link manager's line down a run
    delivers cheap routes only and says so (report.link_wait).  Without a
    link manager an explicit run treats the link as available.

FAILURES
    ``queue_run`` raises ValueError for a bad filter, before it waits or
    selects; a run that fails or is cancelled passes that on to the
    requests that joined it.

THE RUNNER SUPPLIES
    cfg, store, clock, link, hosts, runs, _waiting, _run_lock, _stop,
    _active, _current, _save_hosts() (driver.py); _jobs(), _locked() and
    _attempt() (message.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from edgemail import maillog
from edgemail.delivery.deliver import RunContext
from edgemail.delivery.port import COMING_UP, RunReport, is_cheap
from edgemail.delivery.state import item, tally
from edgemail.spool import schedule

log = logging.getLogger("edgemail.runner")

#: deliveries a queue run keeps in flight at most (ConnectionCacheSize caps
#: it; 0 or 1 = one at a time): a second connection sends while the first
#: waits for a reply, so a slow line never idles for a round trip; more would
#: only share the same line
RUN_PARALLEL = 2


class QueueRunDriver:
    """Mixin for Runner: queue runs, one at a time, and stopping them."""

    def _select(self, filters, *, flush: bool) -> list:
        parsed = schedule.parse_filters(filters)
        items = [item(e) for e in self.store.entries()]
        if not parsed:      # hold routes wait for a filtered run: do not let them take slots
            items = [i for i in items if any(j.decision.kind != "hold" for j in self._jobs(i)[0])]
        return schedule.select(items, self.clock.wall(), self.cfg, filters=parsed, flush=flush)

    async def queue_run(self, filters=(), reason: str = "request", flush: bool = False) -> RunReport:
        """One queue run (expensive routes included).  A request identical to
        one already waiting behind the current run joins it (collapse).
        Raises ValueError for a bad filter."""
        filters = tuple(filters)
        schedule.parse_filters(filters)
        key = (filters, flush)
        if key in self._waiting:
            return await asyncio.shield(self._waiting[key])
        fut = asyncio.get_running_loop().create_future()
        self._waiting[key] = fut
        try:
            async with self._run_lock:
                if self._waiting.get(key) is fut:
                    del self._waiting[key]
                report = await self._run(filters, reason, flush)
        except BaseException as exc:
            if self._waiting.get(key) is fut:
                del self._waiting[key]
            if not fut.done():
                fut.cancel() if isinstance(exc, asyncio.CancelledError) else fut.set_exception(exc)
                fut.exception() if not fut.cancelled() else None   # retrieved: no warning
            raise
        fut.set_result(report)
        return report

    async def _run(self, filters: tuple[str, ...], reason: str, flush: bool) -> RunReport:
        self.runs += 1
        self._stop.clear()
        report = RunReport(f"{os.getpid()}.{self.runs}", reason, filters)
        self._active = report.run
        t0 = self.clock.monotonic()
        selected = self._select(filters, flush=flush)
        report.selected = len(selected)
        log.info(maillog.run_start(report.run, reason, filters, len(selected)))
        ctx = RunContext(report.run, self.hosts, self.clock.wall)
        want = (lambda j: True) if filters else (lambda j: j.decision.kind != "hold")
        if not self._link_usable():
            # invariant 3: expensive routes only while the link is up or is
            # being brought up on purpose; the policy decides when to dial
            report.link_wait = True
            want = (lambda j, w=want: w(j) and is_cheap(j))
        hold = self.link.hold(f"queue run {report.run}") if self.link is not None else contextlib.nullcontext()
        async with hold:
            await self._deliver_all(selected, ctx, want, report, t0)
        if self._stop.is_set() and not report.stopped:
            report.stopped = "stop"
        self._active = None
        report.skipped_hosts = sorted(set(ctx.skipped))
        report.seconds = self.clock.monotonic() - t0
        await self._save_hosts()
        log.info(maillog.run_end(selected=report.selected, attempted=report.attempted, sent=report.sent,
                                 deferred=report.deferred, bounced=report.bounced, cut=report.cut,
                                 stopped=report.stopped))
        return report

    async def _deliver_all(self, selected, ctx: RunContext, want, report: RunReport, t0: float) -> None:
        """Start the selected messages in order, up to RUN_PARALLEL (capped by
        ConnectionCacheSize) in flight; stop starting on stop_run(), the
        time budget or a lost link; always wait for those in flight."""
        parallel = max(1, min(RUN_PARALLEL, self.cfg.ConnectionCacheSize))
        flying: set[asyncio.Task] = set()
        try:
            for entry in selected:
                while len(flying) >= parallel and not report.stopped:
                    flying = await self._harvest(flying, report)
                if report.stopped:
                    break
                if self._stop.is_set():
                    report.stopped = "stop"
                    break
                budget = self.cfg.queue_run_budget
                if budget > 0 and self.clock.monotonic() - t0 >= budget:
                    report.stopped = "budget"
                    break
                flying.add(asyncio.ensure_future(self._locked(entry.qid, self._attempt, ctx, want)))
            while flying:
                flying = await self._harvest(flying, report)
        finally:
            for task in flying:          # only when we are cancelled ourselves
                task.cancel()

    async def _harvest(self, flying: set[asyncio.Task], report: RunReport) -> set[asyncio.Task]:
        """Wait for one delivery at least; count the finished ones (a lost
        link stops the run from starting more).  Returns those still flying."""
        done, flying = await asyncio.wait(flying, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if tally(report, task.result() or {}) and not self._stop.is_set():
                report.stopped = report.stopped or "link"
        return flying

    def _link_usable(self) -> bool:
        """May this run use expensive routes?  Without a link manager, yes (an
        explicit queue run treats the link as available); with one, only
        while the link is up or coming up."""
        if self.link is None:
            return True
        return getattr(self.link, "state", "up") in ("up", *COMING_UP)

    def stop_run(self) -> bool:
        """Ask the current run to stop (link going down): the transaction in
        flight is cut and deferred without counting; no backoff grows.
        Returns whether a run was in progress."""
        self._stop.set()
        busy = self._run_lock.locked()
        for task in list(self._current):
            if not task.done():
                task.cancel()
        return busy
