"""delivery/queuerun.py - queue runs: select, hold the line, deliver side by side, stop (DRIVER).

NAME
    queuerun - QueueRunDriver, the part of the Runner that does ``queue_run``
    and ``stop_run``

SYNOPSIS
    qr = QueueRunDriver(cfg, store, clock=clock, link=link, hosts=hosts,
                        messages=message_driver, plan=runner.pending_jobs,
                        save_hosts=runner._save_hosts)
    await qr.queue_run(filters=(), reason="request", flush=False) -> RunReport
    qr.select(filters, flush=False) -> [queue items]   # what a run would take
    qr.stop_run() -> bool;  qr.runs;  qr.in_flight
    qr.urgent_arrived(qid)     # urgent mail committed: the run in progress starts it next

DESCRIPTION
    ``queue_run(filters, reason, flush)`` selects with spool.schedule
    (``select``: filters R/S/I with !; an unfiltered run takes what is
    due, all of it when flushed, past MinQueueAge, and leaves out messages
    that only have hold routes; the queue order, urgent mail first;
    MaxQueueRunSize), logs
    run_start, holds the line (``link.hold``) and starts the messages in
    order through the MessageDriver, RUN_PARALLEL in flight at most (capped
    by ConnectionCacheSize; 0 or 1: one at a time; urgent mail committed
    during the run, ``urgent_arrived``, is started next, before the rest of
    the selection: urgent mail never waits behind a run's transfers), then saves the host
    status (``save_hosts``) and logs run_end.  It returns the RunReport.
    Runs take turns; a request identical to one already waiting behind the
    current run joins it and gets its report (Postfix's trigger collapse).
    ``hold`` routes are delivered only by filtered runs (sendmail's ``%``
    mailer flag).

    A run stops starting messages on stop_run() (stopped="stop"), after
    queue_run_budget seconds ("budget"), or when a delivery was cut by the
    link ("link"); those in flight are always waited for.  ``stop_run``
    cancels the deliveries in flight (``in_flight`` counts them; the
    MessageDriver cuts them and records nothing).

INVARIANTS
    Expensive routes only while the link is up or being brought up on
    purpose (DESIGN invariant 3): with the link manager's line down a run
    delivers cheap routes only and says so (report.link_wait).  Without a
    link manager an explicit run treats the link as available.

FAILURES
    ``queue_run`` raises ValueError for a bad filter, before it waits or
    selects; a run that fails or is cancelled passes that on to the
    requests that joined it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Awaitable, Callable, Sequence

from edgemail import maillog
from edgemail.clock import Clock
from edgemail.config.model import Config
from edgemail.delivery.clockguard import ClockGuard
from edgemail.delivery.deliver import RunContext
from edgemail.delivery.hoststatus import HostStatusCache
from edgemail.delivery.message import MessageDriver, Plan
from edgemail.delivery.port import COMING_UP, Job, LinkPort, RunReport, is_cheap
from edgemail.delivery.state import Item, item, tally
from edgemail.spool import schedule
from edgemail.spool.store import Store

log = logging.getLogger("edgemail.runner")

#: deliveries a queue run keeps in flight at most (ConnectionCacheSize caps
#: it; 0 or 1 = one at a time): a second connection sends while the first
#: waits for a reply, so a slow line never idles for a round trip; more would
#: only share the same line
RUN_PARALLEL = 2

Want = Callable[[Job], bool]


class QueueRunDriver:
    """Queue runs, one at a time, and stopping them (see the module docstring)."""

    def __init__(self, cfg: Config, store: Store, *, clock: Clock, link: LinkPort | None,
                 hosts: HostStatusCache, messages: MessageDriver, plan: Plan,
                 save_hosts: Callable[[], Awaitable[None]], guard: ClockGuard) -> None:
        self.cfg, self.store, self.clock, self.link, self.guard = cfg, store, clock, link, guard
        self.hosts, self.messages, self.plan, self.save_hosts = hosts, messages, plan, save_hosts
        self.runs = 0                 # queue runs started (tests count collapsed requests)
        self._lock = asyncio.Lock()
        self._waiting: dict[tuple, asyncio.Future] = {}
        self._stop = asyncio.Event()
        self._current: set[asyncio.Task] = set()
        self._urgent: list[str] = []  # urgent mail committed during the run, taken next

    @property
    def in_flight(self) -> int:
        """Deliveries of the current run in flight (what stop_run would cut)."""
        return sum(1 for task in self._current if not task.done())

    def select(self, filters: Sequence[str], *, flush: bool) -> list[Item]:
        """What a run with FILTERS would take, in order (spool.schedule.select)."""
        parsed = schedule.parse_filters(filters)
        self.guard.check()
        entries = [self.guard.view(e) for e in self.store.entries()]
        if not parsed:      # hold routes wait for a filtered run: do not let them take slots
            entries = [e for e in entries if not self._only_hold(e) and not self.big_wait(e)]
        return schedule.select([item(e) for e in entries], self.clock.wall(), self.cfg,
                               filters=parsed, flush=flush)

    def big_wait(self, entry) -> str:
        """Why ENTRY, big and bound for an expensive route, waits for a cheap
        window (the dial policy's big_mail; "" : it goes in unfiltered runs)."""
        ask = getattr(self.link, "big_mail_wait", None)
        if ask is None:
            return ""
        why = ask(entry.size, entry.envelope.urgency == "urgent")
        try:
            return why if why and any(not is_cheap(j) for j in self.plan(entry)[0]) else ""
        except Exception:
            return ""

    def _only_hold(self, entry) -> bool:
        """Only hold routes are left (a message routing cannot plan is taken:
        its attempt logs why and defers it 4.3.0)."""
        try:
            return all(j.decision.kind == "hold" for j in self.plan(entry)[0])
        except Exception:
            return False

    async def queue_run(self, filters: Sequence[str] = (), reason: str = "request",
                        flush: bool = False) -> RunReport:
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
            async with self._lock:
                if self._waiting.get(key) is fut:
                    del self._waiting[key]
                report = await self._run(filters, reason, flush)
        except BaseException as exc:
            self._fail_joined(key, fut, exc)
            raise
        fut.set_result(report)
        return report

    def _fail_joined(self, key: tuple, fut: asyncio.Future, exc: BaseException) -> None:
        """The run failed or was cancelled: so does every request that joined it."""
        if self._waiting.get(key) is fut:
            del self._waiting[key]
        if fut.done():
            return
        if isinstance(exc, asyncio.CancelledError):
            fut.cancel()
        else:
            fut.set_exception(exc)
            fut.exception()            # retrieved: no "never retrieved" warning

    async def _run(self, filters: tuple[str, ...], reason: str, flush: bool) -> RunReport:
        self.runs += 1
        self._stop.clear()
        report = RunReport(f"{os.getpid()}.{self.runs}", reason, filters)
        t0 = self.clock.monotonic()
        selected = self.select(filters, flush=flush)
        report.selected = len(selected)
        log.info(maillog.run_start(report.run, reason, filters, len(selected)))
        ctx = RunContext(report.run, self.hosts, self.clock.wall)
        hold = self.link.hold(f"queue run {report.run}") if self.link is not None else contextlib.nullcontext()
        async with hold:
            await self._deliver_all(selected, ctx, self._want(filters, report), report, t0, filters)
        if self._stop.is_set() and not report.stopped:
            report.stopped = "stop"
        report.skipped_hosts = sorted(set(ctx.skipped))
        report.seconds = self.clock.monotonic() - t0
        await self.save_hosts()
        log.info(maillog.run_end(selected=report.selected, attempted=report.attempted, sent=report.sent,
                                 deferred=report.deferred, bounced=report.bounced, cut=report.cut,
                                 stopped=report.stopped))
        return report

    def _want(self, filters: tuple[str, ...], report: RunReport) -> Want:
        """Which jobs this run delivers: hold routes only in filtered runs;
        expensive routes only with the link usable (else report.link_wait)."""
        def not_hold(j: Job) -> bool:
            return j.decision.kind != "hold"
        base: Want = (lambda j: True) if filters else not_hold
        if self.link_usable():
            return base
        # invariant 3: expensive routes only while the link is up or is
        # being brought up on purpose; the policy decides when to dial
        report.link_wait = True
        return lambda j: base(j) and is_cheap(j)

    def urgent_arrived(self, qid: str) -> None:
        """Urgent mail was committed: a run in progress starts it next, before
        the rest of its selection (a message in flight is not cut)."""
        if self._lock.locked():
            self._urgent.append(qid)

    async def _deliver_all(self, selected: list[Item], ctx: RunContext, want: Want,
                           report: RunReport, t0: float, filters: tuple[str, ...] = ()) -> None:
        """Start the selected messages in order (urgent mail committed meanwhile
        first), up to RUN_PARALLEL (capped by ConnectionCacheSize) in flight;
        stop starting on stop_run(), the time budget or a lost link; always
        wait for those in flight."""
        parallel = max(1, min(RUN_PARALLEL, self.cfg.ConnectionCacheSize))
        flying: set[asyncio.Future] = set()
        todo, started = [e.qid for e in selected], set[str]()
        self._urgent.clear()
        try:
            while todo or self._urgent:
                while len(flying) >= parallel and not report.stopped:
                    flying = await self._harvest(flying, report)
                report.stopped = report.stopped or self._why_stop(t0)
                qid = self._next_urgent(started, filters) or (todo.pop(0) if todo else None)
                if report.stopped or qid is None:
                    break
                if qid not in started:
                    started.add(qid)
                    flying.add(asyncio.ensure_future(
                        self.messages.attempt(qid, ctx, want, stoppable=self._current)))
            while flying:
                flying = await self._harvest(flying, report)
        finally:
            for task in flying:          # only when we are cancelled ourselves
                task.cancel()

    def _next_urgent(self, started: set[str], filters: tuple[str, ...]) -> str | None:
        """The first urgent arrival this run may take (not started, passing its filters)."""
        parsed = schedule.parse_filters(filters)
        while self._urgent:
            qid = self._urgent.pop(0)
            try:
                entry = self.store.get(qid)
            except KeyError:
                continue
            if qid not in started and not entry.held and (not parsed or schedule.matches(item(entry), parsed)):
                return qid
        return None

    def _why_stop(self, t0: float) -> str:
        """"stop" after stop_run(), "budget" past queue_run_budget, else ""."""
        if self._stop.is_set():
            return "stop"
        budget = self.cfg.queue_run_budget
        if budget > 0 and self.clock.monotonic() - t0 >= budget:
            return "budget"
        return ""

    async def _harvest(self, flying: set[asyncio.Future], report: RunReport) -> set[asyncio.Future]:
        """Wait for one delivery at least; count the finished ones (a lost
        link stops the run from starting more).  Returns those still flying."""
        done, pending = await asyncio.wait(flying, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if tally(report, task.result() or {}) and not self._stop.is_set():
                report.stopped = report.stopped or "link"
        return pending

    def link_usable(self) -> bool:
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
        busy = self._lock.locked()
        for task in list(self._current):
            if not task.done():
                task.cancel()
        return busy
