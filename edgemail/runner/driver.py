"""runner/driver.py - the Runner: cheap routes at once, queue runs, link-up, retries.

See the package docstring (edgemail/runner/__init__.py) for the whole story;
this module is the asyncio driver.  Decisions live in the cores it calls:
routing.Router (where), spool.schedule (which, in what order, when again,
warn, expire), hoststatus (skip), dsn (reports).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Callable

from .. import maillog
from ..aliases import load as load_aliases
from ..clock import Clock, SystemClock
from ..envelope import Attempt, RcptStatus
from ..errors import CorruptQueueFile
from ..hoststatus import HostStatusStore
from ..mx import MxResolver
from ..routing import Router
from ..smtpc.session import SMARTHOST_TLS, SmtpClient, TlsPolicy
from ..spool import schedule
from .deliver import Deliverer, RunContext
from .port import COMING_UP, Job, LinkPort, RunReport, combine, cut_attempt, is_cut, stat_text
from .reports import Reporter
from .state import drop_connections, item, load_linkup, save_linkup, tally

log = logging.getLogger("edgemail.runner")

#: how often the background loop looks for due warnings and expired messages
SWEEP_S = 300.0
LINKUP_FILE = "linkup.json"
STOPPED = "queue run stopped (link going down)"
#: deliveries a queue run keeps in flight at most (ConnectionCacheSize caps
#: it; 0 or 1 = one at a time): a second connection sends while the first
#: waits for a reply, so a slow line never idles for a round trip; more would
#: only share the same line
RUN_PARALLEL = 2


def is_cheap(job: Job) -> bool:
    """Delivered at once after commit: not expensive, and no DNS needed (mx and
    hold always need DNS, so they are never cheap, whatever the flag says)."""
    return not job.decision.expensive and job.decision.kind not in ("mx", "hold")


class Runner:
    """Delivers queued mail.  See edgemail/runner/__init__.py."""

    def __init__(self, cfg, store, *, clock: Clock | None = None, router: Router | None = None,
                 resolver=None, smtp: SmtpClient | None = None,
                 hoststatus: HostStatusStore | None = None, link: LinkPort | None = None,
                 smarthost_tls: TlsPolicy = SMARTHOST_TLS, hosts_file: str = "/etc/hosts",
                 mx_port: int = 25) -> None:
        self.cfg, self.store, self.link = cfg, store, link
        self.clock = clock or SystemClock()
        self.router = router or Router(cfg, load_aliases(cfg.local.aliases, cfg.local))
        self.resolver = resolver or MxResolver.from_config(cfg, clock=self.clock)
        self.smtp = smtp or SmtpClient.from_config(cfg, clock=self.clock)
        self.hoststore = hoststatus or HostStatusStore(cfg.spool_dir)
        self.hosts = self.hoststore.load()
        if self.hoststore.problem:
            log.warning(maillog.runner_warning(self.hoststore.problem))
        self.linkup_path = os.path.join(cfg.spool_dir, LINKUP_FILE)
        self.linkup = load_linkup(self.linkup_path)
        self.deliverer = Deliverer(cfg, clock=self.clock, smtp=self.smtp, resolver=self.resolver,
                                   link=link, smarthost_tls=smarthost_tls, hosts_file=hosts_file,
                                   mx_port=mx_port)
        self.reporter = Reporter(cfg, store, self.on_commit)
        self.runs = 0                 # queue runs started (tests count collapsed requests)
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task] = set()
        self._cheap_due: dict[str, float] = {}
        self._kick = asyncio.Event()
        self._run_lock = asyncio.Lock()
        self._waiting: dict[tuple, asyncio.Future] = {}
        self._stop = asyncio.Event()
        self._current: set[asyncio.Task] = set()
        self._active: str | None = None

    # ================================================================ hooks

    def on_commit(self, qid: str) -> None:
        """A message was committed: deliver its cheap recipients now, in the
        background (never inside the SMTP session that got the 250).  Mail
        with nothing cheap to do (everything waits for the link) costs no task."""
        try:
            entry = self.store.get(qid)
        except KeyError:                  # not queued (any more): nothing to deliver
            return
        if any(is_cheap(job) for job in self._jobs(entry)[0]):
            self._spawn(self._cheap(qid))

    def check_rcpt(self, address: str) -> str | None:
        return self.router.check_rcpt(address)

    async def etrn(self, arg: str) -> str:
        """SMTP ETRN (RFC 1985): a filtered run (-qR@domain) for the node."""
        if arg.startswith("#"):
            return f"458 4.3.0 Unable to queue messages for node {arg}: named queues are not supported"
        filt = f"R{arg[1:]}" if arg.startswith("@") else f"R@{arg}"
        n = len(self._select([filt], flush=True))
        if not n:
            return f"251 2.0.0 OK, no messages waiting for node {arg}"
        self._spawn(self.queue_run([filt], reason=f"etrn {arg}"))
        return f"253 2.0.0 OK, {n} pending messages for node {arg} started"

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(self._guard(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    @staticmethod
    async def _guard(coro):
        try:
            return await coro
        except asyncio.CancelledError:
            raise
        except Exception:      # one message never stops the daemon
            log.exception(maillog.runner_internal_error())

    async def idle(self) -> None:
        """Wait until no background delivery is in flight (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # ================================================================ background loop

    async def run(self) -> None:
        """Retry deferred cheap deliveries on their schedule; warn and expire."""
        for e in self.store.entries():         # after recovery: cheap mail left over
            self._cheap_due[e.qid] = e.next_attempt
        next_sweep = self.clock.wall()
        try:
            while True:
                self._kick.clear()
                now = self.clock.wall()
                for qid in [q for q, t in self._cheap_due.items() if t <= now]:
                    del self._cheap_due[qid]
                    self.on_commit(qid)
                if now >= next_sweep:
                    await self.sweep()
                    next_sweep = now + SWEEP_S
                wake = min([next_sweep, *self._cheap_due.values()])
                await self._wait(max(0.0, wake - now))
        finally:
            self.close()

    async def _wait(self, seconds: float) -> None:
        kick = asyncio.ensure_future(self._kick.wait())
        sleep = asyncio.ensure_future(self.clock.sleep(seconds))
        try:
            await asyncio.wait({kick, sleep}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            kick.cancel()
            sleep.cancel()

    async def sweep(self) -> None:
        """Expire messages past Timeout.queuereturn, warn past Timeout.queuewarn."""
        now = self.clock.wall()
        for e in self.store.entries():
            lu = self._link_up_s(e, now)
            if (schedule.expired(e.envelope, e.created, now, self.cfg, link_up_s=lu)
                    or schedule.warn_due(e.envelope, e.created, now, self.cfg, warned=e.warned, link_up_s=lu)):
                self._spawn(self._locked(e.qid, self._check))

    def close(self) -> None:
        """Drop cached SMTP connections at once (shutdown)."""
        drop_connections(self.smtp)

    # ================================================================ one message

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

    # ================================================================ queue runs

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
            for item in selected:
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
                flying.add(asyncio.ensure_future(self._locked(item.qid, self._attempt, ctx, want)))
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

    # ================================================================ link events

    async def link_up(self, **info) -> RunReport:
        """ppp0 is up: clear host status, re-read peer DNS, run the queue."""
        dropped = self.hosts.clear()
        await self._save_hosts()
        servers = self.resolver.reload_nameservers() if hasattr(self.resolver, "reload_nameservers") else ()
        self.linkup.up(self.clock.wall())
        await asyncio.to_thread(save_linkup, self.linkup_path, self.linkup)
        log.info(maillog.link_up(cleared=dropped, nameservers=servers, info=info))
        return await self.queue_run(reason="link-up", flush=True)

    async def link_down(self) -> bool:
        """The link went (or is going) down: stop the run, stop counting link-up time."""
        busy = self.stop_run()
        # cached SMTP sessions died with the line (the next call may even
        # have a new address): never probe them on the next call
        drop_connections(self.smtp)
        self.linkup.down(self.clock.wall())
        await asyncio.to_thread(save_linkup, self.linkup_path, self.linkup)
        return busy

    # ================================================================ host status

    def hoststat(self) -> str:
        return self.hosts.hoststat(self.clock.wall())

    async def purgestat(self, *, everything: bool = False) -> list[str]:
        if everything:
            gone = sorted(self.hosts.entries)
            self.hosts.clear()
        else:
            gone = self.hosts.purge(self.clock.wall(), self.cfg.Timeout.hoststatus)
        await self._save_hosts()
        return gone

    async def _save_hosts(self) -> None:
        try:
            await asyncio.to_thread(self.hoststore.save, self.hosts)
        except OSError as exc:
            log.warning(maillog.runner_warning(f"cannot save host status: {exc}"))
