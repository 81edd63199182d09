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

Seams for other parts (all optional, duck-typed):
  runner  ``async run()`` (long-running), ``on_commit(qid)`` (cheap routes
          at once), ``async queue_run(filters) -> str`` (a -q request);
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
from collections.abc import Awaitable, Callable
from importlib import metadata

from . import maillog
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
PICKUP_S = 60.0


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
                 retry_factor=cfg.RetryFactor)


def make_listeners(cfg: Config, store, runner) -> list:
    from .smtpd import SmtpListener
    on_commit = getattr(runner, "on_commit", None)
    return [SmtpListener(cfg, lst, store, on_commit=on_commit) for lst in cfg.listeners]


async def serve(cfg: Config, *, clock: Clock | None = None, store=None, runner=None, link=None,
                notifier: Notifier | None = None,
                shutdown: Callable[[], Awaitable[object]] | None = None,
                listeners: list | None = None) -> None:
    """Run the daemon until `shutdown` returns (default: SIGTERM/SIGINT)."""
    clock = clock or SystemClock()
    notifier = notifier or Notifier()
    log.info(maillog.starting(version(), cfg.path))
    lock = lock_spool(cfg.spool_dir)      # before recover(): it deletes tmp/ files
    try:
        await _serve_locked(cfg, clock, notifier, store, runner, link, shutdown, listeners)
    finally:
        os.close(lock)
        log.info(maillog.stopped())


async def _serve_locked(cfg, clock, notifier, store, runner, link, shutdown, listeners) -> None:
    store = store if store is not None else make_store(cfg, clock)
    _log_recovery(await asyncio.to_thread(store.recover))
    listeners = listeners if listeners is not None else make_listeners(cfg, store, runner)
    ops = ControlOps(cfg, store, clock, runner=runner, link=link, listeners=listeners)
    control = ControlServer(cfg.control_socket, ops.handlers(), timeout=cfg.Timeout.control)
    try:
        for lst in listeners:
            await lst.start()
        await control.start()
        bound = [f"{lst_cfg.name}=[{lst_cfg.address}]:{lst.port}" for lst_cfg, lst in zip(cfg.listeners, listeners)]
        queued = len(store.entries())
        notifier.ready(f"{queued} queued")
        log.info(maillog.ready(bound, cfg.control_socket, queued))
        await _run_group(clock, notifier, store, runner, link, shutdown or _signals)
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


async def _run_group(clock, notifier, store, runner, link, trigger) -> None:
    async def wait_shutdown() -> None:
        reason = await trigger()
        notifier.stopping()
        log.info(maillog.stopping(str(reason or "shutdown")))
        raise _Shutdown(str(reason))

    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(notifier.watchdog(clock))
            if hasattr(store, "pickup"):
                tg.create_task(_pickup_loop(store, clock))
            for part in (runner, link):
                if part is not None and hasattr(part, "run"):
                    tg.create_task(part.run())
            tg.create_task(wait_shutdown())
    except* _Shutdown:
        pass


async def _signals() -> str:
    """Wait for SIGTERM or SIGINT; returns the signal's name."""
    loop = asyncio.get_running_loop()
    got: asyncio.Future[str] = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda s=sig: got.done() or got.set_result(s.name))
    try:
        return await got
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def _log_recovery(report) -> None:
    log.info(maillog.recovered(entries=report.loaded, tmp_removed=len(report.stale_tmp),
                               corrupt=len(report.corrupt), maildrop=len(report.imported)))


async def _pickup_loop(store, clock: Clock) -> None:
    """Import maildrop/ files written while the daemon was starting (a
    ``sendmail`` that found no control socket yet), then every PICKUP_S."""
    while True:
        try:
            await store.pickup()
        except SpoolError as exc:
            log.warning(maillog.warning(f"maildrop pickup failed: {exc}"))
        await clock.sleep(PICKUP_S)


# ====================================================================== control ops

class ControlOps:
    """The control ops the daemon itself answers."""

    def __init__(self, cfg: Config, store, clock: Clock, *, runner=None, link=None,
                 listeners=()) -> None:
        self.cfg, self.store, self.clock = cfg, store, clock
        self.runner, self.link, self.listeners = runner, link, list(listeners)
        self.started = clock.wall()

    def handlers(self) -> dict:
        return {"submit": self.submit, "queue_list": self.queue_list, "queue_show": self.queue_show,
                "queue_run": self.queue_run, "status": self.status}

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
        if self.runner is not None and hasattr(self.runner, "on_commit"):
            self.runner.on_commit(qid)
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
                        client=str(req.get("client") or "localhost"), arrived=self.clock.wall())

    async def queue_list(self, req: dict) -> Stream:
        entries = self.store.entries()
        return Stream(_batches(entries), {"total": len(entries)})

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
            return {"message": await self.runner.queue_run(filters)}
        return {"message": "queue run requested (no delivery runner in this build: request logged)"}

    async def status(self, req: dict) -> dict:
        entries = self.store.entries()
        link = {"state": "none"}
        if self.link is not None:
            link = self.link.status() if hasattr(self.link, "status") else {"state": getattr(self.link, "state", "?")}
        return {"version": version(), "pid": os.getpid(), "uptime_s": round(self.clock.wall() - self.started, 1),
                "queued": len(entries), "held": sum(1 for e in entries if e.held),
                "listeners": [f"{c.name}=[{c.address}]:{lst.port}" for c, lst in zip(self.cfg.listeners, self.listeners)],
                "control": self.cfg.control_socket, "link": link}


def _status_word(s) -> str:
    return getattr(s, "value", str(s or "queued"))


def _batches(entries):
    """queue_list rows, LIST_BATCH per line: [qid, size, created, from, held, [[rcpt, status, reply]...]]."""
    for i in range(0, len(entries), LIST_BATCH):
        yield {"rows": [
            [e.qid, e.size, e.created, e.envelope.mail_from, e.held,
             [[r.address, _status_word(e.rcpt_status.get(r.address)), e.last_reply.get(r.address, "")]
              for r in e.envelope.recipients]]
            for e in entries[i:i + LIST_BATCH]]}


# ====================================================================== edgemail run

EX_OSERR = 71


def run(cfg: Config, *, syslog: bool = False) -> int:
    """``edgemail run``: log set-up, root check, the event loop.  Returns an exit code."""
    maillog.setup(cfg.LogLevel, syslog=syslog)
    if os.geteuid() == 0:
        log.warning(maillog.warning("running as root: run edgemail as its own unprivileged user "
                                    "(systemd User=edgemail; port 25 needs only CAP_NET_BIND_SERVICE)"))
    try:
        asyncio.run(serve(cfg))
    except ConfigError as exc:
        print(f"edgemail: configuration error: {exc}", file=sys.stderr)
        return 78
    except (OSError, ControlError, SpoolError) as exc:
        log.error(maillog.warning(f"cannot start: {exc}"))
        return EX_OSERR
    except KeyboardInterrupt:
        pass
    return 0
