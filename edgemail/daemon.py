"""daemon.py - the composition root: ``edgemail run``.

Owns: the order of start-up and shutdown, and the control ops that belong
to no single module (submit, queue_list, queue_show, queue_run, status).
Everything else is built by the part that owns it; every part can be passed
in (hypercorn's ``worker_serve`` style), so tests wire what they need::

    await serve(cfg, clock=None, store=None, runner=None, link=None,
                notifier=None, shutdown=None)

Start-up, in this order (each step only after the one before succeeded):

  1. recover the spool: stale tmp/ removed, unreadable files to corrupt/,
     index rebuilt, maildrop/ imported (``Store.recover``) - BEFORE any
     socket is bound, so nothing is accepted into a spool not yet checked;
  2. bind every SMTP listener, then the control socket;
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

The link (``[link] mode`` not "none"): ``make_link`` builds the
LinkManager (policy file parsed with link.policy: an error is a
ConfigError naming file:line:field, exit 78; the modem, pppd and netlink
watcher from ``[link]``; the ledger at ``link.state_file``) and its MTA
port (edgemail.linkport.MtaPort).  The manager is the runner's LinkPort
(DialDelay waits for it), runs in the task group, and hears
``demand_changed()`` after every commit, every run and when deferred mail
becomes due.  The control ops ``link_up``/``link_down`` (the ppp hooks)
go to the manager (idempotent with netlink; the manager then drives the
runner), and ``link_explain``, ``link_dial``, ``link_hangup`` are added;
``status`` carries the manager's status() and the queue demand.  systemd
hears ``STATUS=link STATE, N queued (M for the link)`` whenever either
changes.

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
import base64
import contextlib
import fcntl
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from importlib import metadata

from . import maillog, privileges
from .clock import Clock, SystemClock
from .config import Config
from .control import ControlServer, Stream
from .envelope import Envelope, Recipient
from .errors import ConfigError, ControlError, SpoolError, SpoolFull
from .notify import Notifier

log = logging.getLogger("edgemail.daemon")

#: rows per streamed queue_list line (one JSON array each: cheap on both sides)
LIST_BATCH = 2000
#: how often maildrop/ is looked at while running (sendmail writes there only
#: when it cannot reach the daemon, so this is a safety net)
PICKUP_S = 10.0


class _Shutdown(Exception):
    """Raised inside the task group to stop it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def version() -> str:
    try:
        return metadata.version("edgemail")
    except metadata.PackageNotFoundError:
        return "unknown"


def make_store(cfg: Config, clock: Clock):
    from .spool.store import Store
    return Store(cfg.spool_dir, min_free_blocks=cfg.MinFreeBlocks, clock=clock,
                 class_factor=cfg.ClassFactor, recipient_factor=cfg.RecipientFactor,
                 retry_factor=cfg.RetryFactor, commit_helpers=cfg.commit_helpers)


def make_runner(cfg: Config, store, clock: Clock, link=None):
    """The delivery runner (no I/O but reading the aliases and host status files)."""
    from .runner import Runner
    from .smtpc.tls import TlsPolicy
    # SmartHostTLSVerify / SmartHostCAFile: how the smart host's certificate is checked
    tls = TlsPolicy("may", verify=cfg.SmartHostTLSVerify, cafile=cfg.SmartHostCAFile or None)
    return Runner(cfg, store, clock=clock, link=link, smarthost_tls=tls)


def make_listeners(cfg: Config, store, runner, on_commit=None, socks: dict | None = None) -> list:
    from .smtpd import SmtpListener
    socks = socks or {}
    return [SmtpListener(cfg, lst, store, on_commit=on_commit or getattr(runner, "on_commit", None),
                         check_rcpt=getattr(runner, "check_rcpt", None),
                         on_etrn=getattr(runner, "etrn", None), sock=socks.get(lst.name))
            for lst in cfg.listeners]


def give_up_root(cfg: Config) -> dict:
    """RunAsUser (privileges.py): bind the SMTP sockets while root, make sure
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
    from .smtpd.listener import listen_socket
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
    notifier = notifier or Notifier()
    shutdown = shutdown or SignalTrigger()     # installed now: a SIGTERM during recovery still stops cleanly
    log.info(maillog.starting(version(), cfg.path))
    socks = give_up_root(cfg) if listeners is None else {}
    lock = lock_spool(cfg.spool_dir)      # before recover(): it deletes tmp/ files
    hup = HangUp()                        # at once: SIGHUP's default action would end the daemon
    try:
        await _serve_locked(cfg, clock, notifier, store, runner, link, shutdown, listeners, hup, socks)
    finally:
        hup.remove()
        os.close(lock)
        log.info(maillog.stopped())


class HangUp:
    """SIGHUP (``systemctl reload``): a reload once the daemon is up; while
    it starts, a line saying so (never the signal's default: the end)."""

    def __init__(self) -> None:
        self.reload: Callable[[str], dict] | None = None
        self._loop = asyncio.get_running_loop()
        self._loop.add_signal_handler(signal.SIGHUP, self._fire)

    def _fire(self) -> None:
        if self.reload is None:
            log.warning(maillog.reload_failed("SIGHUP", "the daemon is still starting; send it again"))
        else:
            self.reload("SIGHUP")

    def remove(self) -> None:
        self._loop.remove_signal_handler(signal.SIGHUP)


class Reloader:
    """What a running daemon reads again on SIGHUP or ``newaliases``: the
    aliases (a new Router for the runner) and the dial policy (the link
    manager's rules and settings).  The config file is read to check it and
    to name the settings that changed: those take effect at restart.  All or
    nothing: any error leaves everything as it was."""

    def __init__(self, cfg: Config, runner=None, link=None) -> None:
        self.cfg, self.runner, self.link = cfg, runner, link

    def __call__(self, reason: str) -> dict:
        from dataclasses import fields
        from .aliases import load as load_aliases
        from .config import load as load_config
        from .routing import Router
        try:
            new = load_config(self.cfg.path)
            aliases = load_aliases(self.cfg.local.aliases, self.cfg.local)
            policy = load_policy(self.cfg) if isinstance(self.link, Link) else None
        except (ConfigError, OSError) as exc:
            log.error(maillog.reload_failed(reason, exc))
            return {"reloaded": False, "error": str(exc)}
        if self.runner is not None and hasattr(self.runner, "router"):
            self.runner.router = Router(self.cfg, aliases)
        if policy is not None:
            self.link.manager.replace_policy(policy)
        changed = [f.name for f in fields(Config)
                   if f.name != "path" and getattr(new, f.name) != getattr(self.cfg, f.name)]
        log.info(maillog.reloaded(reason, aliases=len(aliases.entries),
                                  policy=self.cfg.link.policy if policy is not None else "",
                                  restart_needed=changed))
        return {"reloaded": True, "aliases": len(aliases.entries), "restart_needed": changed}


def load_policy(cfg: Config):
    """The dial policy file -> link.policy.Policy.  Raises ConfigError (file:line: field: problem)."""
    from link.policy import PolicyError, parse
    path = cfg.link.policy
    if not path:
        raise ConfigError("a link mode needs a dial policy file", file=cfg.path, key="link.policy")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(f"cannot read the dial policy: {exc.strerror}", file=path) from None
    try:
        return parse(text, file=path)
    except PolicyError as exc:
        raise ConfigError(exc.problem, file=exc.file, key=exc.field, line=exc.line) from None


def make_manager(cfg: Config, policy, clock: Clock):
    """The LinkManager from [link] (its port is set by make_link once the MTA parts exist)."""
    from link.accounting import Ledger
    from link.manager import LinkManager
    ledger = Ledger(cfg.link.state_file, policy.zone) if cfg.link.state_file else None
    try:
        import schedule
        scheduler = schedule.Scheduler()
    except ImportError:          # the policy core stays the authority; jobs only wake the loop
        scheduler = None
    return LinkManager(cfg.link, policy, clock=clock, port=None, etrn_domains=cfg.local_domains,
                       ledger=ledger, scheduler=scheduler)


class Link:
    """The manager, its MTA port and the daemon's hooks into them."""

    def __init__(self, manager, port) -> None:
        self.manager, self.port = manager, port
        manager.port = port

    def changed(self) -> None:
        """The queue changed: re-plan the port's watch, ask the policy again."""
        self.port.changed()
        self.manager.demand_changed()

    def on_commit(self, runner):
        def hook(qid: str) -> None:
            runner.on_commit(qid)
            self.changed()
        return hook

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.manager.run())
            tg.create_task(self.port.watch(self.manager.demand_changed))

    def status_text(self) -> str:
        q = self.port.queue_summary()
        return f"link {self.manager.state}, {q.total} queued ({q.queued} for the link)"

    async def notify_loop(self, notifier: Notifier, clock: Clock) -> None:
        """STATUS= to systemd whenever the link state or the queue count changes."""
        said = ""
        while True:
            text = self.status_text()
            if text != said:
                notifier.status(text)
                said = text
            await clock.sleep(STATUS_POLL_S)


#: how often the sd_notify STATUS text is recomputed (sent only when it changed)
STATUS_POLL_S = 1.0


async def _serve_locked(cfg, clock, notifier, store, runner, link, shutdown, listeners, hup=None,
                        socks=None) -> None:
    store = store if store is not None else make_store(cfg, clock)
    manager = None
    if link is None and runner is None and cfg.link.mode != "none":   # a given runner brings its own link
        manager = make_manager(cfg, load_policy(cfg), clock)     # ConfigError before any socket
    _log_recovery(await asyncio.to_thread(store.recover))
    runner = runner if runner is not None else make_runner(cfg, store, clock, link or manager)
    wired = None
    if manager is not None:
        from .linkport import MtaPort
        wired = Link(manager, MtaPort(cfg, store, runner, clock=clock))
        link = wired
    on_commit = wired.on_commit(runner) if wired is not None else None
    listeners = listeners if listeners is not None else make_listeners(cfg, store, runner, on_commit, socks)
    if wired is not None:
        wired.port.listeners = list(listeners)
    ops = ControlOps(cfg, store, clock, runner=runner, link=link, listeners=listeners, on_commit=on_commit)
    ops.reloader = Reloader(cfg, runner, link)
    control = ControlServer(cfg.control_socket, ops.handlers(), timeout=cfg.Timeout.control,
                            public=ops.public())
    try:
        for lst in listeners:
            await lst.start()
        await control.start()
        bound = [f"{lst_cfg.name}=[{lst_cfg.address}]:{lst.port}" for lst_cfg, lst in zip(cfg.listeners, listeners)]
        queued = len(store.entries())
        notifier.ready(f"{queued} queued")
        log.info(maillog.ready(bound, cfg.control_socket, queued))
        if hup is not None:
            hup.reload = ops.reloader
        await _run_group(clock, notifier, store, runner, link, shutdown, ops.listing.warm, on_commit)
    finally:
        notifier.stopping()
        for closer in [control.close, *(lst.close for lst in listeners)]:
            with contextlib.suppress(Exception):
                await closer()
        if hasattr(store, "close"):
            await asyncio.to_thread(store.close)   # let commits already handed over finish


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


async def _run_group(clock, notifier, store, runner, link, trigger, warm=None, on_commit=None) -> None:
    async def wait_shutdown() -> None:
        reason = await trigger()
        notifier.stopping()
        log.info(maillog.stopping(str(reason or "shutdown")))
        raise _Shutdown(str(reason))

    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(notifier.watchdog(clock))
            if hasattr(store, "pickup"):
                tg.create_task(_pickup_loop(store, clock, runner, on_commit))
            if warm is not None:
                tg.create_task(warm())
            for part in (runner, link):
                if part is not None and hasattr(part, "run"):
                    tg.create_task(part.run())
            if isinstance(link, Link):
                tg.create_task(link.notify_loop(notifier, clock))
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


async def _pickup_loop(store, clock: Clock, runner=None, on_commit=None) -> None:
    """Import maildrop/ files written while the daemon was starting (a
    ``sendmail`` that found no control socket yet), then every PICKUP_S."""
    on_commit = on_commit or getattr(runner, "on_commit", None)
    while True:
        try:
            for qid in await store.pickup():
                if on_commit is not None:
                    on_commit(qid)
        except SpoolError as exc:
            log.warning(maillog.warning(f"maildrop pickup failed: {exc}"))
        await clock.sleep(PICKUP_S)


# ====================================================================== control ops

class ControlOps:
    """The control ops the daemon itself answers."""

    def __init__(self, cfg: Config, store, clock: Clock, *, runner=None, link=None,
                 listeners=(), on_commit=None) -> None:
        self.cfg, self.store, self.clock = cfg, store, clock
        self.runner, self.link, self.listeners = runner, link, list(listeners)
        self.on_commit = on_commit or getattr(runner, "on_commit", None)
        self.started = clock.wall()
        self.listing = QueueListing(store)
        self.reloader: Callable[[str], dict] | None = None

    def handlers(self) -> dict:
        ops = {"submit": self.submit, "queue_list": self.queue_list, "queue_show": self.queue_show,
               "queue_run": self.queue_run, "status": self.status, "reload": self.reload}
        if self.runner is not None and hasattr(self.runner, "hoststat"):
            ops.update(runner_ops(self.runner))
        if isinstance(self.link, Link):
            ops.update(link_ops(self.link.manager))
        return ops

    async def submit(self, req: dict) -> dict:
        try:
            data = base64.b64decode(req.get("data_b64", ""), validate=True)
        except ValueError as exc:
            raise ValueError(f"bad data_b64: {exc}") from None
        env = self._envelope(req, len(data))
        if len(data) > self.cfg.MaxMessageSize:
            raise ValueError(f"message too large ({len(data)} bytes, MaxMessageSize {self.cfg.MaxMessageSize})")
        try:
            qid = await self.store.commit(env, data)
        except SpoolFull as exc:
            raise ControlError(f"temporary: spool full: {exc}") from None
        except SpoolError as exc:
            raise ControlError(f"temporary: spool error: {exc}") from None
        log_spool = logging.getLogger("edgemail.spool")
        log_spool.info(maillog.received(qid, env))
        if self.on_commit is not None:
            self.on_commit(qid)
        return {"qid": qid}

    def _envelope(self, req: dict, size: int) -> Envelope:
        from .address import AddressError, parse_address
        rcpts = req.get("recipients")
        if not isinstance(rcpts, list) or not rcpts:
            raise ValueError("bad envelope: recipients must be a non-empty list")
        try:
            sender = req.get("mail_from", "")
            if sender:
                sender = str(parse_address(sender))
            recipients = tuple(Recipient(str(parse_address(r["address"])), orcpt=r.get("orcpt"),
                                         notify=frozenset(r.get("notify") or ())) for r in rcpts)
        except (AddressError, KeyError, TypeError) as exc:
            raise ValueError(f"bad envelope: {exc}") from None
        return Envelope(mail_from=sender, recipients=recipients, ret=req.get("ret"), envid=req.get("envid"),
                        body=req.get("body"), size=size, precedence=int(req.get("precedence") or 0),
                        msgid=str(req.get("msgid") or ""), proto="local",
                        client=_local_client(req.get("_peer") or {}), arrived=self.clock.wall())

    def public(self) -> set[str]:
        """Ops for every local user, as sendmail allows them: submit (local
        mail), status, the queue listing (unless PrivacyOptions
        restrictmailq) and queue runs (unless restrictqrun; with the line
        down a run delivers only what needs no call, invariant 3).  The rest
        (reload, queue show with contents, link, host status) need an
        administrator."""
        ops = {"submit", "status"}
        if "restrictmailq" not in self.cfg.PrivacyOptions:
            ops.add("queue_list")
        if "restrictqrun" not in self.cfg.PrivacyOptions:
            ops.add("queue_run")
        return ops

    async def reload(self, req: dict) -> dict:
        """``newaliases`` / ``sendmail -bi`` / ``edgemail reload``: as SIGHUP."""
        if self.reloader is None:
            raise ControlError("temporary: this daemon cannot reload")
        reply = self.reloader(str(req.get("reason") or "control"))
        if not reply["reloaded"]:
            raise ValueError(f"reload failed, nothing changed: {reply['error']}")
        return reply

    async def queue_list(self, req: dict) -> Stream:
        """``format``: "rows" (default) or "mailq" (preformatted text)."""
        return self.listing.stream(req.get("format", "rows"))

    async def queue_show(self, req: dict) -> dict:
        qid = req.get("qid")
        if not isinstance(qid, str):
            raise ValueError("queue_show needs a qid")
        try:
            e = self.store.get(qid)
        except KeyError:
            raise KeyError(f"no such queue id {qid!r}") from None
        env = e.envelope
        out = {"qid": e.qid, "from": env.mail_from, "size": e.size, "created": e.created,
               "priority": e.priority, "attempts": e.attempts, "next_attempt": e.next_attempt,
               "held": e.held, "msgid": env.msgid, "proto": env.proto, "client": env.client,
               "recipients": [{"address": r.address, "status": _status_word(e.rcpt_status.get(r.address)),
                               "last_reply": e.last_reply.get(r.address, "")} for r in env.recipients]}
        if req.get("data"):
            data = await asyncio.to_thread(self.store.read_data, qid)
            out["data_b64"] = base64.b64encode(data).decode("ascii")
        return out

    async def queue_run(self, req: dict) -> dict:
        filters = req.get("filters") or []
        if not isinstance(filters, list) or not all(isinstance(f, str) for f in filters):
            raise ValueError("filters must be a list of sendmail -q forms such as \"R@example.org\"")
        log.info(maillog.queue_run_requested(filters))
        if self.runner is not None and hasattr(self.runner, "queue_run"):
            done = self.link.changed if isinstance(self.link, Link) else None
            return await start_queue_run(self.runner, filters, wait=bool(req.get("wait")), done=done)
        return {"message": "queue run requested (no delivery runner in this build: request logged)"}

    async def status(self, req: dict) -> dict:
        entries = self.store.entries()
        link = {"state": "none"}
        extra = {}
        if isinstance(self.link, Link):
            full = self.link.manager.status()
            link = full.pop("link")
            extra = {**full, "queue": self.link.port.queue_summary().as_dict()}
        elif self.link is not None:
            link = self.link.status() if hasattr(self.link, "status") else {"state": getattr(self.link, "state", "?")}
        return {**extra, "version": version(), "pid": os.getpid(), "uptime_s": round(self.clock.wall() - self.started, 1),
                "queued": len(entries), "held": sum(1 for e in entries if e.held),
                "listeners": [f"{c.name}=[{c.address}]:{lst.port}" for c, lst in zip(self.cfg.listeners, self.listeners)],
                "control": self.cfg.control_socket, "link": link}


_background: set = set()


def _background_task(coro) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)


async def start_queue_run(runner, filters: list[str], *, wait: bool, reason: str = "control",
                          flush: bool = True, done: Callable[[], None] | None = None) -> dict:
    """``sendmail -q``: a run in the background (a run over a modem outlasts
    Timeout.control), or waited for with ``wait``; ``done()`` after it.
    Bad filters: ValueError."""
    from .spool import schedule
    schedule.parse_filters(filters)

    async def run():
        try:
            return await runner.queue_run(filters, reason=reason, flush=flush)
        finally:
            if done is not None:
                done()
    if wait:
        report = await run()
        return {"message": report.message(), "report": report.as_dict()}
    _background_task(run())
    return {"message": f"queue run started ({', '.join(filters) or 'whole queue'})"}


def runner_ops(runner) -> dict:
    """Control ops answered by the delivery runner: hoststat, purgestat, link_up, link_down."""
    async def hoststat(req: dict) -> dict:
        return {"text": runner.hoststat()}

    async def purgestat(req: dict) -> dict:
        return {"purged": await runner.purgestat(everything=bool(req.get("all")))}

    async def link_up(req: dict) -> dict:
        info = {k: str(req[k]) for k in ("iface", "local", "remote", "ipparam") if req.get(k)}
        if req.get("wait"):
            return {"message": (await runner.link_up(**info)).message()}
        _background_task(runner.link_up(**info))
        return {"message": "link up: host status cleared, queue run started"}

    async def link_down(req: dict) -> dict:
        busy = await runner.link_down()
        return {"message": "queue run asked to stop" if busy else "no queue run in progress"}

    return {"hoststat": hoststat, "purgestat": purgestat, "link_up": link_up, "link_down": link_down}

def link_ops(manager) -> dict:
    """Control ops answered by the link manager: the ppp hooks (link_up /
    link_down, idempotent with netlink), link_explain, link_dial, link_hangup."""
    async def link_up(req: dict) -> dict:
        iface = str(req.get("iface") or manager.cfg.interface)
        return manager.link_up(iface, str(req.get("local") or ""), str(req.get("remote") or ""))

    async def link_down(req: dict) -> dict:
        env = req.get("env") if isinstance(req.get("env"), dict) else {}
        return manager.link_down(str(req.get("iface") or manager.cfg.interface), env=env)

    async def link_explain(req: dict) -> dict:
        return {"text": manager.explain()}

    async def link_dial(req: dict) -> dict:
        return manager.dial_now("operator")

    async def link_hangup(req: dict) -> dict:
        return manager.hangup_now()

    return {"link_up": link_up, "link_down": link_down, "link_explain": link_explain,
            "link_dial": link_dial, "link_hangup": link_hangup}


def _local_client(peer: dict) -> str:
    """How a local submission is logged: the uid the kernel vouches for, not a claim."""
    return f"localhost (uid {peer['uid']})" if "uid" in peer else "localhost"


def _status_word(s) -> str:
    return getattr(s, "value", str(s or "queued"))


class QueueListing:
    """``queue_list`` answers from the store's in-memory index: rows (for
    ``--json``) or sendmail-style mailq text, LIST_BATCH entries per streamed
    line.  The text of each entry is cached against the entry object (entries
    are frozen; a change makes a new object), so a warm listing of 100,000
    entries is a join of cached strings; ``warm()`` fills the cache after
    start-up without blocking the loop."""

    def __init__(self, store) -> None:
        self.store = store
        self._text: dict[str, tuple[object, str]] = {}

    def stream(self, fmt: str) -> Stream:
        entries = self.store.entries()
        if len(self._text) > 2 * len(entries) + 1000:      # forget removed entries
            self._text = {e.qid: self._text[e.qid] for e in entries if e.qid in self._text}
        make = self._text_batches if fmt == "mailq" else _row_batches
        return Stream(make(entries), {"total": len(entries)})

    def text(self, e) -> str:
        hit = self._text.get(e.qid)
        if hit is None or hit[0] is not e:
            hit = self._text[e.qid] = (e, mailq_entry(e))
        return hit[1]

    def _text_batches(self, entries):
        for i in range(0, len(entries), LIST_BATCH):
            yield {"text": "".join(self.text(e) for e in entries[i:i + LIST_BATCH])}

    async def warm(self) -> None:
        entries = self.store.entries()
        for i in range(0, len(entries), LIST_BATCH):
            for e in entries[i:i + LIST_BATCH]:
                self.text(e)
            await asyncio.sleep(0)


def mailq_entry(e) -> str:
    """One entry as sendmail's mailq prints it ("!" after the qid: on hold)."""
    stamp = time.strftime("%a %b %d %H:%M", time.localtime(e.created))
    lines = [f"{e.qid}{'!' if e.held else ' '}{e.size:>8} {stamp} <{e.envelope.mail_from}>\n"]
    said = set()
    for r in e.envelope.recipients:            # like sendmail: only what still waits
        status = e.rcpt_status.get(r.address)
        if status is not None and getattr(status, "final", False):
            continue
        reply = e.last_reply.get(r.address, "")
        if reply and reply not in said:
            said.add(reply)
            lines.append(f"                 ({_status_word(status).capitalize()}: {reply[:60]})\n")
        lines.append(f"\t\t\t\t\t <{r.address}>\n")
    return "".join(lines)


def _row_batches(entries):
    """Rows, LIST_BATCH per line: [qid, size, created, from, held, [[rcpt, status, reply]...]]."""
    for i in range(0, len(entries), LIST_BATCH):
        yield {"rows": [
            [e.qid, e.size, e.created, e.envelope.mail_from, e.held,
             [[r.address, _status_word(e.rcpt_status.get(r.address)), e.last_reply.get(r.address, "")]
              for r in e.envelope.recipients]]
            for e in entries[i:i + LIST_BATCH]]}


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
