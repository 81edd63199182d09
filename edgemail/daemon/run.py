"""daemon/run.py - the composition root: ``edgemail run``.

Owns: the order of start-up and shutdown, and the wiring (``_build``: each
part gets what it needs in its constructor, in the order they need each
other; ``CommitHooks``: what a commit sets off).  Everything else is done by
the part that owns it (the control ops the daemon answers itself:
daemon/ops.py; SIGHUP and reload: daemon/reload.py; the link manager wired
to its MTA port: wiredlink.Link; RunAsUser: daemon/privileges.py); every part
can be passed in (hypercorn's ``worker_serve`` style), so tests wire what
they need::

    await serve(cfg, clock=None, store=None, runner=None, link=None,
                notifier=None, shutdown=None)

Start-up, in this order (each step only after the one before succeeded):

  0. with RunAsUser, started as root: bind the SMTP sockets, then become
     the user (``give_up_root``; daemon/privileges.py);
  1. recover the spool: stale tmp/ removed, unreadable files to corrupt/,
     index rebuilt, maildrop/ imported (``Store.recover``) - BEFORE any
     socket is bound, so nothing is accepted into a spool not yet checked;
  2. serve on every SMTP listener (bound now, or in step 0), then bind the
     control socket, then write the config's snapshot for the command line
     (config/snapshot.py; removed at shutdown);
  3. ``READY=1`` to systemd, the ``daemon: ready`` log line;
  4. one ``asyncio.TaskGroup`` runs the watchdog, the runner and the link
     manager (when given) and waits for the shutdown trigger.

Shutdown: SIGTERM or SIGINT (or the ``shutdown`` awaitable returning) ->
``STOPPING=1`` -> the group is cancelled -> listeners and the control socket
closed.  A message in flight is either committed (it got its 250) or not;
the spool makes a kill at any instant safe (DESIGN invariant 2).

Never does: DNS or any name resolution (invariant 1: listeners bind to
numeric addresses from the config; the host name comes from the config or
/etc/hostname), and nothing towards the WAN.

The link (``[link] mode`` not "none"): ``make_manager`` builds the
LinkManager (policy file parsed with link.policy: an error is a
ConfigError naming file:line:field, exit 78; the modem, pppd and netlink
watcher from ``[link]``; the ledger at ``link.state_file``) and its MTA
port (edgemail.daemon.mtaport.MtaPort, given the listeners: it counts their
ISP sessions), held together as a wiredlink.Link.  The manager is the runner's
LinkPort (DialDelay waits for it), runs in the task group, and hears
``demand_changed()`` after every commit (``Link.committed`` is a commit
hook), every run and when deferred mail becomes due.  The control ops
``link_up``/``link_down`` (the ppp hooks) go to the manager (idempotent with
netlink; the manager then drives the runner), and ``link_explain``,
``link_dial``, ``link_hangup`` are added; ``status`` carries the manager's
status() and the queue demand.  systemd hears ``STATUS=link STATE, N queued
(M for the link)`` whenever either changes.

Seams for other parts (all optional, duck-typed):
  runner  ``async run()`` (long-running), ``on_commit(qid)`` (cheap routes
          at once), ``async queue_run(filters, reason=, flush=) -> RunReport``
          (a -q request), ``check_rcpt``, ``etrn``, and the ops of
          ``runner_ops`` (hoststat, purgestat, link_up, link_down); built by
          ``make_runner`` when not given;
  link    ``async run()`` (long-running), ``state`` (str), ``status() -> dict``;
  store   a ``spool.store.Store`` (default: built from the config).

Failures: a ConfigError ends ``run()`` with exit 78; a spool locked by
another daemon (flock on the spool directory, taken before recovery), a
socket that cannot be bound or a live control socket end it with exit 71;
one clear line each; a bad control request gets an error
reply; one bad message never stops the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from edgemail import maillog
from edgemail.clock import Clock, SystemClock
from edgemail.config import snapshot
from edgemail.config.model import Config
from edgemail.daemon import privileges
from edgemail.daemon.control import ControlServer
from edgemail.daemon.mtaport import MtaPort
from edgemail.daemon.notify import Notifier
from edgemail.daemon.ops import ControlOps, version
from edgemail.daemon.hostaddrs import with_host_addresses
from edgemail.daemon.reload import HangUp, Reloader, load_policy
from edgemail.daemon.wiredlink import Link
from edgemail.errors import ConfigError, ControlError, SpoolError

log = logging.getLogger("edgemail.daemon")

#: how often maildrop/ is looked at while running (sendmail writes there only
#: when it cannot reach the daemon, so this is a safety net)
PICKUP_S = 10.0


class _Shutdown(Exception):
    """Raised inside the task group to stop it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def make_store(cfg: Config, clock: Clock):
    from edgemail.daemon.submission import drop_envelope
    from edgemail.spool.store import Store
    store = Store(cfg.spool_dir, min_free_blocks=cfg.MinFreeBlocks, clock=clock,
                  class_factor=cfg.ClassFactor, recipient_factor=cfg.RecipientFactor,
                  retry_factor=cfg.RetryFactor, commit_helpers=cfg.commit_helpers)
    store.maildrop.check = drop_envelope(cfg)   # a drop is a local user's submission
    return store


def make_runner(cfg: Config, store, clock: Clock, link=None):
    """The delivery runner (no I/O but reading the aliases and host status files)."""
    from edgemail.delivery.runner import Runner
    from edgemail.smtpc.tls import TlsPolicy
    # SmartHostTLSVerify / SmartHostCAFile: how the smart host's certificate is checked
    tls = TlsPolicy("may", verify=cfg.SmartHostTLSVerify, cafile=cfg.SmartHostCAFile or None)
    return Runner(cfg, store, clock=clock, link=link, smarthost_tls=tls)


def make_listeners(cfg: Config, store, runner, on_commit=None, socks: dict | None = None) -> list:
    """The SMTP listeners; those with AUTH share one AuthService (one
    client's failures count together; one reload).  Raises ConfigError
    (a certificate or the credentials file that does not load)."""
    from edgemail.smtpd.credentials import AuthService
    from edgemail.smtpd.listener import SmtpListener
    socks = socks or {}
    smtpd = cfg.smtpd
    auth = AuthService.of(smtpd) if any(lst.auth for lst in cfg.listeners) else None
    return [SmtpListener(cfg, lst, store, on_commit=on_commit or getattr(runner, "on_commit", None),
                         check_rcpt=getattr(runner, "check_rcpt", None),
                         on_etrn=getattr(runner, "etrn", None), on_atrn=getattr(runner, "atrn", None),
                         sock=socks.get(lst.name), auth=auth)
            for lst in cfg.listeners]


def give_up_root(cfg: Config) -> dict:
    """RunAsUser (daemon/privileges.py): bind the SMTP sockets while root, make sure
    the user owns what the daemon writes, become the user.  Returns the bound
    sockets by listener name ({} when RunAsUser is empty or we are not root)."""
    if not cfg.RunAsUser:
        return {}
    ident = privileges.resolve(cfg.RunAsUser)
    if os.geteuid() != 0:
        if os.geteuid() != ident.uid:
            log.warning(maillog.warning(f"RunAsUser={cfg.RunAsUser} ignored: not started as root "
                                        f"(running as uid {os.geteuid()})"))
        return {}
    from edgemail.smtpd.listener import listen_socket
    socks = {lst.name: listen_socket(lst) for lst in cfg.listeners}
    try:
        privileges.prepare(ident, [
            (cfg.spool_dir, 0o750), (os.path.dirname(cfg.control_socket), 0o755),
            (os.path.dirname(cfg.link.state_file) if cfg.link.mode != "none" else "", 0o750)])
        privileges.preload()
        privileges.drop(ident)
    except BaseException:
        for sock in socks.values():
            sock.close()
        raise
    log.info(maillog.running_as(str(ident)))
    return socks


async def serve(cfg: Config, *, clock: Clock | None = None, store=None, runner=None, link=None,
                notifier: Notifier | None = None,
                shutdown: Callable[[], Awaitable[object]] | None = None,
                listeners: list | None = None) -> None:
    """Run the daemon until `shutdown` returns (default: SIGTERM/SIGINT)."""
    clock = clock or SystemClock()
    cfg = with_host_addresses(cfg)        # a wildcard listener's literals are ours (16 §5)
    notifier = notifier or Notifier()
    shutdown = shutdown or SignalTrigger()     # installed now: a SIGTERM during recovery still stops cleanly
    log.info(maillog.starting(version(), cfg.path))
    socks = give_up_root(cfg) if listeners is None else {}
    lock = lock_spool(cfg.spool_dir)      # before recover(): it deletes tmp/ files
    hup = HangUp()                        # at once: SIGHUP's default action would end the daemon
    try:
        await _serve_locked(cfg, clock, notifier, shutdown, hup, socks,
                            dict(store=store, runner=runner, link=link, listeners=listeners))
    finally:
        hup.remove()
        os.close(lock)
        log.info(maillog.stopped())


def make_manager(cfg: Config, policy, clock: Clock):
    """The LinkManager from [link] (its port is set by make_link once the MTA parts exist)."""
    from link.accounting import Ledger
    from link.manager import LinkManager
    ledger = Ledger(cfg.link.state_file, policy.zone, tariff=policy.tariff) if cfg.link.state_file else None
    try:
        import schedule
        scheduler = schedule.Scheduler()
    except ImportError:          # the policy core stays the authority; jobs only wake the loop
        scheduler = None
    return LinkManager(cfg.link, policy, clock=clock, port=None, etrn_domains=cfg.local_domains,
                       ledger=ledger, scheduler=scheduler)


class CommitHooks:
    """What runs when a message is committed (SMTP, the control socket,
    maildrop/): the runner's cheap deliveries first, then whoever was added
    (the link: the demand changed).  Built before the listeners, which are
    built before the link's port, which counts their sessions."""

    def __init__(self, first: Callable[[str], None] | None) -> None:
        self.hooks = [first] if first is not None else []

    def add(self, hook: Callable[[str], None]) -> None:
        self.hooks.append(hook)

    def __call__(self, qid: str) -> None:
        for hook in self.hooks:
            hook(qid)


@dataclass
class Parts:
    """Everything serve() runs, as _build() made or was given it."""

    store: Any
    runner: Any
    link: Any                       # wiredlink.Link, a given link, or None
    listeners: list
    commits: CommitHooks
    ops: ControlOps
    control: ControlServer


async def _build(cfg: Config, clock: Clock, socks: dict, *, store=None, runner=None, link=None,
                 listeners=None) -> Parts:
    """The parts in the order they need each other: a link manager (its
    policy's ConfigError before any socket), the recovered spool, the
    runner, the listeners, the manager's MTA port, the control ops."""
    store = store if store is not None else make_store(cfg, clock)
    manager = None
    if link is None and runner is None and cfg.link.mode != "none":   # a given runner brings its own link
        manager = make_manager(cfg, load_policy(cfg), clock)
    _log_recovery(await asyncio.to_thread(store.recover))
    runner = runner if runner is not None else make_runner(cfg, store, clock, link or manager)
    commits = CommitHooks(getattr(runner, "on_commit", None))
    listeners = listeners if listeners is not None else make_listeners(cfg, store, runner, commits, socks)
    if manager is not None:
        link = Link(manager, MtaPort(cfg, store, runner, listeners=listeners, clock=clock))
        commits.add(link.committed)
    ops = ControlOps(cfg, store, clock, runner=runner, link=link, listeners=listeners, on_commit=commits,
                     reloader=Reloader(cfg, runner, link, listeners))
    control = ControlServer(cfg.control_socket, ops.handlers(), timeout=cfg.Timeout.control,
                            public=ops.public())
    return Parts(store, runner, link, listeners, commits, ops, control)


async def _serve_locked(cfg: Config, clock: Clock, notifier: Notifier, shutdown, hup: HangUp,
                        socks: dict, given: dict) -> None:
    parts = await _build(cfg, clock, socks, **given)
    published = None
    try:
        for lst in parts.listeners:
            await lst.start()
        await parts.control.start()
        published = snapshot.publish(cfg)      # what sendmail and mailq read of the config
        bound = [f"{c.name}=[{c.address}]:{lst.port}" for c, lst in zip(cfg.listeners, parts.listeners)]
        queued = len(parts.store.entries())
        notifier.ready(f"{queued} queued")
        log.info(maillog.ready(bound, cfg.control_socket, queued))
        if parts.ops.reloader is not None:
            hup.arm(parts.ops.reloader)
        await _run_group(clock, notifier, parts, shutdown)
    finally:
        notifier.stopping()
        if published:
            snapshot.remove(cfg.path)
        for closer in [parts.control.close, *(lst.close for lst in parts.listeners)]:
            with contextlib.suppress(Exception):
                await closer()
        if hasattr(parts.store, "close"):
            await asyncio.to_thread(parts.store.close)   # let commits already handed over finish


def lock_spool(directory: str) -> int:
    """An exclusive flock on the spool directory itself (nothing is written into
    it), held for the daemon's life: a second daemon on the same spool would
    delete the first one's tmp/ files in its recovery.  Raises SpoolError."""
    os.makedirs(directory, mode=0o750, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SpoolError(f"spool {directory} is in use by another edgemail daemon") from None
    return fd


async def _run_group(clock: Clock, notifier: Notifier, parts: Parts, trigger) -> None:
    async def wait_shutdown() -> None:
        reason = await trigger()
        notifier.stopping()
        log.info(maillog.stopping(str(reason or "shutdown")))
        raise _Shutdown(str(reason))

    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(notifier.watchdog(clock))
            if hasattr(parts.store, "pickup"):
                tg.create_task(_pickup_loop(parts.store, clock, parts.commits))
            for part in (parts.runner, parts.link):
                if part is not None and hasattr(part, "run"):
                    tg.create_task(part.run())
            if isinstance(parts.link, Link):
                tg.create_task(parts.link.notify_loop(notifier, clock))
            tg.create_task(wait_shutdown())
    except* _Shutdown:
        pass


class SignalTrigger:
    """The default shutdown trigger: SIGTERM or SIGINT.  Handlers are installed
    on construction (inside the running loop) and removed when it fires."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._got: asyncio.Future[str] = self._loop.create_future()
        for sig in self.SIGNALS:
            self._loop.add_signal_handler(sig, self._fire, sig)

    def _fire(self, sig: signal.Signals) -> None:
        if not self._got.done():
            self._got.set_result(sig.name)

    async def __call__(self) -> str:
        try:
            return await self._got
        finally:
            for sig in self.SIGNALS:
                self._loop.remove_signal_handler(sig)


def _log_recovery(report) -> None:
    log.info(maillog.recovered(entries=report.loaded, tmp_removed=len(report.stale_tmp),
                               corrupt=len(report.corrupt), maildrop=len(report.imported)))


async def _pickup_loop(store, clock: Clock, on_commit: Callable[[str], None]) -> None:
    """Import maildrop/ files written while the daemon was starting (a
    ``sendmail`` that found no control socket yet), then every PICKUP_S."""
    while True:
        try:
            for qid in await store.pickup():
                on_commit(qid)
        except SpoolError as exc:
            log.warning(maillog.warning(f"maildrop pickup failed: {exc}"))
        await clock.sleep(PICKUP_S)


# ====================================================================== edgemail run

EX_SOFTWARE, EX_OSERR, EX_NOPERM = 70, 71, 77


def run(cfg: Config, *, syslog: bool = False) -> int:
    """``edgemail run``: log set-up, root check, the event loop.  Returns an exit code."""
    maillog.setup(cfg.LogLevel, syslog=syslog)
    if os.geteuid() == 0 and not cfg.RunAsUser:
        log.warning(maillog.warning("running as root: run edgemail as its own unprivileged user "
                                    "(RunAsUser, or systemd User=edgemail; port 25 needs only "
                                    "CAP_NET_BIND_SERVICE)"))
    try:
        asyncio.run(serve(cfg))
    except ConfigError as exc:
        print(f"edgemail: configuration error: {exc}", file=sys.stderr)
        return 78
    except privileges.PrivilegeError as exc:
        log.error(maillog.warning(f"cannot start: {exc}"))
        return EX_NOPERM
    except (OSError, ControlError, SpoolError) as exc:
        log.error(maillog.warning(f"cannot start: {exc}"))
        return EX_OSERR
    except KeyboardInterrupt:
        pass
    except Exception as exc:     # incl. an ExceptionGroup from a part that crashed: say it once
        log.critical(maillog.warning(f"stopped by an internal error: {exc!r}"), exc_info=True)
        return EX_SOFTWARE
    return 0
