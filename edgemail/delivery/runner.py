"""delivery/runner.py - the Runner: its parts, its hooks, the background loop, link events (DRIVER).

NAME
    driver - Runner(cfg, store, ...), the object the daemon, the SMTP
    listener, the control socket and the link manager talk to

DESCRIPTION
    See the package docstring (edgemail/delivery/__init__.py) for the whole
    story; this module builds the Runner and owns what is not one message
    or one queue run.  Decisions live in the cores it calls:
    routing.Router (where), spool.schedule (which, in what order, when
    again, warn, expire), hoststatus (skip), dsn (reports).

    Hooks: ``on_commit`` (cheap recipients delivered at once, in a
    background task), ``check_rcpt``, ``etrn`` (RFC 1985: a filtered run,
    -qR@domain).  ``run()`` is the background loop: it retries deferred
    cheap deliveries when due (message.py puts them on its list and kicks
    it) and sweeps every SWEEP_S for messages to expire or warn about.
    ``link_up``/``link_down`` keep the host status, the resolver's name
    servers and the link-up time (LINKUP_FILE in the spool) in step with
    the line; ``hoststat``/``purgestat`` answer the control socket.

    The Runner is three parts: message.py (MessageDriver: one message's
    attempt, record, warning, expiry), queuerun.py (QueueRunDriver:
    selection, the run, stop_run) and this module.

INVARIANTS
    Nothing is delivered inside the SMTP session that got the 250: on_commit
    only spawns.  Background tasks are kept in ``_tasks`` until done
    (``idle()`` waits for them).

FAILURES
    A bug in a background task is logged with its traceback
    (runner_internal_error) and the daemon goes on (``_guard``).  A host
    status file that cannot be read or written is a warning
    (runner_warning); the runner starts with an empty one.
"""

from __future__ import annotations

import asyncio
import logging
import os

from edgemail import maillog
from edgemail.clock import Clock, SystemClock
from edgemail.delivery.aliases import load as load_aliases
from edgemail.delivery.deliver import Deliverer
from edgemail.delivery.hoststatus import HostStatusStore
from edgemail.delivery.message import MessageDriver
from edgemail.delivery.mx import MxResolver
from edgemail.delivery.port import LinkPort, RunReport, is_cheap
from edgemail.delivery.queuerun import QueueRunDriver
from edgemail.delivery.reports import Reporter
from edgemail.delivery.routing import Router
from edgemail.delivery.state import drop_connections, load_linkup, save_linkup
from edgemail.smtpc.session import SmtpClient
from edgemail.smtpc.tls import SMARTHOST_TLS, TlsPolicy
from edgemail.spool import schedule

log = logging.getLogger("edgemail.runner")

#: how often the background loop looks for due warnings and expired messages
SWEEP_S = 300.0
LINKUP_FILE = "linkup.json"


class Runner(MessageDriver, QueueRunDriver):
    """Delivers queued mail.  See edgemail/delivery/__init__.py."""

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
        """SMTP ETRN (RFC 1985): a filtered run (-qR@domain) for the node;
        458 when its messages wait for our line and the line is down (the
        run would attempt nothing: RFC 1985's "cannot be sent now")."""
        if arg.startswith("#"):
            return f"458 4.3.0 Unable to queue messages for node {arg}: named queues are not supported"
        filt = f"R{arg[1:]}" if arg.startswith("@") else f"R@{arg}"
        selected = self._select([filt], flush=True)
        n = len(selected)
        if not n:
            return f"251 2.0.0 OK, no messages waiting for node {arg}"
        if not self._link_usable() and not any(is_cheap(j) for e in selected for j in self._jobs(e)[0]):
            return (f"458 4.4.2 Unable to queue messages for node {arg} now: {n} message(s) held, "
                    "but our line is down; ETRN again while it is up")
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
