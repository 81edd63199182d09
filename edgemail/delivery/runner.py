"""delivery/runner.py - the Runner: its parts, its hooks, link events, host status (DRIVER).

NAME
    runner - Runner(cfg, store, ...), the object the daemon, the SMTP
    listener, the control socket and the link manager talk to

DESCRIPTION
    See the package docstring (edgemail/delivery/__init__.py) for the whole
    story; this module builds the Runner from its parts and owns what is
    not one message or one queue run.  Decisions live in the cores the
    parts call: routing.Router (where), spool.schedule (which, in what
    order, when again), outcome (what an attempt's results mean: record,
    backoff, bounce, warn, expire), hoststatus (skip), dsn (reports).

    The parts, each a class in its own file with its own state, built here
    and named on the Runner:

      messages    message.MessageDriver: one message's attempt, record,
                  warning, expiry, under the message's lock
      queue_runs  queuerun.QueueRunDriver: selection, the run, stop_run
      retries     retryloop.RetryLoop: the background loop (cheap retries,
                  each message's DSN timer; monotonic deadlines)
      guard       clockguard.ClockGuard: wall-clock steps, the rebased view
      deliverer   deliver.Deliverer: one message's jobs to their next hops
      reporter    reports.Reporter: failure and delay reports queued
      flushes     flush.Flusher: ISP mode, held mail flushed after ETRN
                  or pushed over ATRN's turned connection
      tasks       state.TaskSet: background tasks until done (idle())
    and the shared things they are given: router (reload replaces it;
    the parts see the new one through ``pending_jobs``), resolver, smtp,
    hosts (HostStatusCache), linkup (LineTime: link-up time, and the time
    the line could have been up, told by ``line_tried``).

    Hooks: ``on_commit`` (cheap recipients delivered at once, in a
    background task), ``check_rcpt``, ``etrn`` (RFC 1985: held mail
    flushed for the customer or LAN that may ask, flush.py; any other node
    from the LAN: a filtered run, -qR@domain), ``atrn`` (RFC 2645: the
    reply, and after a 250 the push over the turned connection).  ``run()``
    is the background loop (RetryLoop); ``plan_timer(qid)`` gives it a
    message's next DSN decision (outcome.dsn_timer; on every commit, after
    every check, on link events and clock steps) and ``dsn_check(qid)`` is
    what it calls then (MessageDriver.check, then one more cheap attempt past
    queuereturn).  ``clock_stepped`` is the guard's hook: link-up time
    rebased, host status cleared, timers planned again.  ``link_up``/``link_down`` keep the host
    status, the resolver's name servers and the link-up time (LINKUP_FILE
    in the spool) in step with the line; ``hoststat``/``purgestat`` answer
    the control socket.

INVARIANTS
    Nothing is delivered inside the SMTP session that got the 250: on_commit
    only spawns.

FAILURES
    A bug in a background task is logged with its traceback
    (runner_internal_error) and the daemon goes on (state.TaskSet).  A host
    status file that cannot be read or written is a warning
    (runner_warning); the runner starts with an empty one.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Sequence

from edgemail import maillog
from edgemail.clock import Clock, SystemClock
from edgemail.config.model import Config
from edgemail.delivery import outcome
from edgemail.delivery.aliases import load as load_aliases
from edgemail.delivery.clockguard import ClockGuard
from edgemail.delivery.customers import Client
from edgemail.delivery.deliver import Deliverer, RunContext
from edgemail.delivery.flush import Flusher, line_down_reply
from edgemail.delivery.hoststatus import HostStatusStore
from edgemail.delivery.message import MessageDriver
from edgemail.delivery.mx import MxResolver
from edgemail.delivery.port import Job, LinkPort, RunReport, is_cheap, pending_jobs
from edgemail.delivery.queuerun import QueueRunDriver
from edgemail.delivery.reports import Reporter
from edgemail.delivery.retryloop import RetryLoop
from edgemail.delivery.routing import Router
from edgemail.delivery.state import TaskSet, drop_connections, load_linkup, save_linkup
from edgemail.delivery.users import known_users
from edgemail.smtpc.session import SmtpClient
from edgemail.smtpc.tls import SMARTHOST_TLS, TlsPolicy
from edgemail.spool.index import Timers
from edgemail.spool.record import QueueEntry
from edgemail.spool.store import Store

log = logging.getLogger("edgemail.runner")

LINKUP_FILE = "linkup.json"
CLOCKSTEPS_FILE = "clocksteps.json"


class Runner:
    """Delivers queued mail.  See edgemail/delivery/__init__.py."""

    def __init__(self, cfg: Config, store: Store, *, clock: Clock | None = None,
                 router: Router | None = None, resolver: MxResolver | None = None,
                 smtp: SmtpClient | None = None, hoststatus: HostStatusStore | None = None,
                 link: LinkPort | None = None, smarthost_tls: TlsPolicy = SMARTHOST_TLS,
                 hosts_file: str = "/etc/hosts", mx_port: int = 25) -> None:
        self.cfg, self.store, self.link = cfg, store, link
        self.clock: Clock = clock or SystemClock()
        self.router = router or Router(cfg, _aliases(cfg), known_users(cfg.local))
        self.resolver = resolver or MxResolver.from_config(cfg, clock=self.clock)
        self.smtp = smtp or SmtpClient.from_config(cfg, clock=self.clock)
        self.hoststore = hoststatus or HostStatusStore(cfg.spool_dir)
        self.hosts = self.hoststore.load()
        if self.hoststore.problem:
            log.warning(maillog.runner_warning(self.hoststore.problem))
        self.linkup_path = os.path.join(cfg.spool_dir, LINKUP_FILE)
        self.linkup = load_linkup(self.linkup_path, cfg.retry.offline_after)
        self.tasks = TaskSet()
        self.guard = ClockGuard(self.clock, store, os.path.join(cfg.spool_dir, CLOCKSTEPS_FILE),
                                on_step=self.clock_stepped, spawn=self.tasks.spawn)
        self.retries = RetryLoop(self.clock, on_due=self.on_commit, on_timer=self.dsn_check,
                                 on_wake=self.guard.check, timers=Timers(store.index))
        self.deliverer = Deliverer(cfg, clock=self.clock, smtp=self.smtp, resolver=self.resolver,
                                   link=link, smarthost_tls=smarthost_tls, hosts_file=hosts_file,
                                   mx_port=mx_port)
        self.reporter = Reporter(cfg, store, self.on_commit)
        self.messages = MessageDriver(cfg, store, clock=self.clock, deliverer=self.deliverer,
                                      reporter=self.reporter, smtp=self.smtp, linkup=self.linkup,
                                      plan=self.pending_jobs, on_retry=self.retries.due,
                                      guard=self.guard)
        self.queue_runs = QueueRunDriver(cfg, store, clock=self.clock, link=link, hosts=self.hosts,
                                         messages=self.messages, plan=self.pending_jobs,
                                         save_hosts=self._save_hosts, guard=self.guard)
        self.flushes = Flusher(cfg, store, clock=self.clock, messages=self.messages, plan=self.pending_jobs,
                               link=link, hosts=self.hosts, tasks=self.tasks)

    # ================================================================ hooks

    def on_commit(self, qid: str) -> None:
        """A message was committed: deliver its cheap recipients now, in the
        background (never inside the SMTP session that got the 250).  Mail
        with nothing cheap to do (everything waits for the link) costs no task."""
        try:
            entry = self.store.get(qid)
        except KeyError:                  # not queued (any more): nothing to deliver
            return
        self.plan_timer(qid)
        if entry.envelope.urgency == "urgent" and entry.attempts == 0:
            self.queue_runs.urgent_arrived(qid)     # new: a run in progress takes it next
        try:
            cheap = any(is_cheap(job) for job in self.pending_jobs(entry)[0])
        except Exception:                 # the attempt logs it and defers the message (4.3.0)
            cheap = True
        if cheap:
            ctx = RunContext(f"cheap-{qid}", self.hosts, self.clock.wall)
            self.tasks.spawn(self.messages.attempt(qid, ctx, is_cheap))

    def check_rcpt(self, address: str) -> str | None:
        return self.router.check_rcpt(address)

    def pending_jobs(self, entry: QueueEntry) -> tuple[list[Job], dict[str, list[str]]]:
        """ENTRY's deliveries still to do (port.pending_jobs with the current router)."""
        return pending_jobs(entry, self.router.route)

    def big_wait(self, entry: QueueEntry) -> str:
        """Why ENTRY waits for a cheap window ("" : it does not; queuerun.big_wait)."""
        return self.queue_runs.big_wait(entry)

    def held_for(self, entry: QueueEntry) -> dict[str, str]:
        """ENTRY's recipients whose mail is held (ISP mode) -> the customer it is
        held for ("" : a hold route of [routes], for the LAN's ETRN)."""
        return {j.rcpt.address: j.decision.target for j in self.pending_jobs(entry)[0]
                if j.decision.kind == "hold"}

    async def etrn(self, arg: str, client: Client | None = None) -> str:
        """SMTP ETRN (RFC 1985) from CLIENT (None: a trusted one): held mail
        is flushed for whom may ask (flush.py); any other node, from the LAN,
        is a filtered run (-qR@domain)."""
        return await self.flushes.etrn(arg, client or Client("127.0.0.1", trusted=True), self._lan_etrn)

    def atrn(self, user: str | None, domains: tuple[str, ...], relay: str):
        """SMTP ATRN (RFC 2645): (reply, the push to run after a 250, or None)."""
        return self.flushes.atrn(user, domains, relay)

    async def _lan_etrn(self, arg: str, client: Client) -> str:
        if not client.trusted:
            return f"459 4.7.1 Node {arg[:64]} not allowed: ETRN from LAN only"
        if arg.startswith("#"):
            return f"459 4.7.1 Node {arg[:64]} not allowed: no such queue"
        filt = f"R{arg[1:]}" if arg.startswith("@") else f"R@{arg}"
        selected = self.queue_runs.select([filt], flush=True)
        n = len(selected)
        if not n:
            return f"251 2.0.0 OK, no messages waiting for node {arg}"
        if not self.queue_runs.link_usable() and not any(is_cheap(j) for i in selected
                                                          for j in self.pending_jobs(self.store.get(i.qid))[0]):
            return line_down_reply(arg, n)
        self.tasks.spawn(self.queue_run([filt], reason=f"etrn {arg}"))
        return f"253 2.0.0 OK, {n} pending messages for node {arg} started"

    async def idle(self) -> None:
        """Wait until no background delivery is in flight (tests, shutdown)."""
        await self.tasks.idle()

    # ================================================================ queue runs

    async def queue_run(self, filters: Sequence[str] = (), reason: str = "request",
                        flush: bool = False) -> RunReport:
        """One queue run (queuerun.py).  Raises ValueError for a bad filter."""
        return await self.queue_runs.queue_run(filters, reason, flush)

    def stop_run(self) -> bool:
        """Cut the run in flight, no backoff grows; whether one was running."""
        return self.queue_runs.stop_run()

    @property
    def runs(self) -> int:
        """Queue runs started (tests count collapsed requests)."""
        return self.queue_runs.runs

    @property
    def in_flight(self) -> int:
        """Deliveries of the current queue run in flight (what stop_run cuts)."""
        return self.queue_runs.in_flight

    # ================================================================ background loop

    async def run(self) -> None:
        """Retry deferred cheap deliveries on their schedule; warn and return
        on each message's own DSN timer (RetryLoop)."""
        try:
            entries = self.store.entries()
            for e in entries:
                self.plan_timer(e.qid, start=True)
            await self.retries.run([(e.qid, self.guard.view(e).next_attempt) for e in entries])
        finally:
            self.close()

    def dsn_check(self, qid: str) -> None:
        """QID's DSN timer is due: warn or return (MessageDriver.check), then plan the next."""
        async def turn() -> None:
            try:
                if await self.messages.check(qid):
                    self.on_commit(qid)   # past queuereturn: cheap jobs once more, returned if they fail
            finally:
                self.plan_timer(qid)
        self.tasks.spawn(turn())

    def plan_timer(self, qid: str, *, start: bool = False) -> None:
        """Give QID's next queuewarn/queuereturn decision to the background
        loop (or none); at START, one now if it fell due while we were down."""
        try:
            entry = self.guard.view(self.store.get(qid))
        except KeyError:
            self.retries.timer(qid, None)
            return
        now = self.clock.wall()
        lu = self.messages.link_up_s(entry, now)
        if start and outcome.dsn_overdue(entry, now=now, cfg=self.cfg, link_up_s=lu):
            self.retries.timer(qid, now)
            return
        counting = self._counting(now)
        self.retries.timer(qid, outcome.dsn_timer(entry, now=now, cfg=self.cfg, counting=counting,
                                                  link_up_s=lu))

    def _counting(self, now: float) -> bool:
        """Whether the ages Timeout.* count grow now (retry: all time, link-up, the line's)."""
        if self.cfg.retry.count_link_up_time_only:
            return self.linkup.up_since is not None
        return self.cfg.retry.count_offline_time or self.linkup.counting(now)

    def plan_timers(self) -> None:
        for e in self.store.entries():
            self.plan_timer(e.qid)

    def clock_stepped(self, step: float) -> None:
        """The wall clock was stepped (ClockGuard): move the link-up time,
        give every host a new chance, plan the DSN timers again."""
        self.linkup.rebase(step)
        self.hosts.clear()
        self.tasks.spawn(self._save_linkup())
        self.tasks.spawn(self._save_hosts())
        self.plan_timers()

    def close(self) -> None:
        """Drop cached SMTP connections at once (shutdown)."""
        drop_connections(self.smtp)

    # ================================================================ link events

    async def link_up(self, **info: str) -> RunReport:
        """ppp0 is up: clear host status, re-read peer DNS, run the queue."""
        dropped = self.hosts.clear()
        await self._save_hosts()
        servers = self.resolver.reload_nameservers() if hasattr(self.resolver, "reload_nameservers") else ()
        self.guard.check()
        self.linkup.up(self.clock.wall())
        await self._save_linkup()
        self.plan_timers()
        log.info(maillog.link_up(cleared=dropped, nameservers=servers, info=info))
        return await self.queue_run(reason="link-up", flush=True)

    async def link_down(self) -> bool:
        """The link went (or is going) down: stop the run, stop counting link-up time."""
        busy = self.stop_run()
        # cached SMTP sessions died with the line (the next call may even
        # have a new address): never probe them on the next call
        drop_connections(self.smtp)
        self.guard.check()
        self.linkup.down(self.clock.wall())
        await self._save_linkup()
        self.plan_timers()
        return busy

    def line_tried(self, placed: bool) -> None:
        """The link tried to dial: PLACED (the call reached the network, or
        connected) vouches for the line, else the line cannot be used now
        (retry.count_offline_time; spool/linetime.py)."""
        self.guard.check()
        self.linkup.tried(self.clock.wall(), placed=placed)
        self.tasks.spawn(self._save_linkup())
        if not self.cfg.retry.count_offline_time:    # else the timers do not depend on it
            self.plan_timers()

    async def _save_linkup(self) -> None:
        try:
            await asyncio.to_thread(save_linkup, self.linkup_path, self.linkup)
        except OSError as exc:
            log.warning(maillog.runner_warning(f"cannot save {self.linkup_path}: {exc}"))

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


def _aliases(cfg: Config):
    """The aliases table; a file named but missing is said once (no aliases, as sendmail)."""
    table = load_aliases(cfg.local.aliases, cfg.local)
    if table.missing:
        log.warning(maillog.warning(f"aliases file {table.source} does not exist: no aliases until it "
                                    "does (then newaliases)"))
    return table
