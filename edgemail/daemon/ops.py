"""daemon/ops.py - the control ops the daemon answers itself.

Owns: submit (``sendmail`` through the socket, or any other local client:
the envelope checked field by field as the SMTP listener checks it, and
what only the daemon sets refused (daemon/submission.py), recipients
routing refuses permanently (unknown local users) left out and answered as
``refused`` (none left: nothing is queued, ``qid`` null), a ``Received: (from USER@localhost) by HOST
(edgemail); DATE`` line prepended with the user the kernel vouches for
(``received_local``, as sendmail and Postfix trace local submissions), the
message committed, logged as ``proto=local`` with that uid), queue_list (rows or mailq text, streamed LIST_BATCH entries a
line, from the in-memory index's packed entries: daemon/listing.py
formats them), queue_show,
queue_run (``sendmail -q``: in the background, or waited for), status,
reload, which ops every local user may call (``public``: sendmail's
PrivacyOptions restrictmailq / restrictqrun), and the ops the runner and
the link manager answer (``runner_ops``, ``link_ops``).

Never: blocks the loop (reading a message's data goes to a thread), or
trusts what a client says about itself (the peer's uid comes from
SO_PEERCRED, added by daemon/control.py as ``_peer``).

Failures: a bad request raises ValueError/KeyError (an error reply naming
what was wrong); a full or failing spool raises ControlError "temporary:
..." (``sendmail`` then keeps the message in the maildrop, exit 0, and the
pickup loop queues it once there is room: cli/sendmail.py).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import re
from collections.abc import Callable
from dataclasses import replace
from importlib import metadata

from edgemail import maillog
from edgemail.clock import Clock
from edgemail.config.model import Config
from edgemail.daemon.control import Stream
from edgemail.daemon.listing import QueueListing, status_word
from edgemail.spool.packed import HELD
from edgemail.daemon.wiredlink import Link
from edgemail.daemon.submission import check_data, checked_envelope
from edgemail.envelope import Envelope, Recipient
from edgemail.errors import ControlError, SpoolError, SpoolFull
from edgemail.smtpd.longlines import Unsendable, make_sendable

log = logging.getLogger("edgemail.daemon")

def version() -> str:
    try:
        return metadata.version("edgemail")
    except metadata.PackageNotFoundError:
        return "unknown"


class ControlOps:
    """The control ops the daemon itself answers.

    Everything it answers from is given here: the config, the store, the
    clock; the runner (``on_commit``, ``queue_run``, and the ``runner_ops``
    when it has ``hoststat``), the link (a wiredlink.Link adds the
    ``link_ops`` and the queue demand to ``status``; any other object is
    asked for ``status()`` or ``state``), the SMTP listeners (their bound
    ports for ``status``), the commit hook (default: the runner's
    ``on_commit``) and the reloader (``reload``; None: this daemon cannot
    reload)."""

    def __init__(self, cfg: Config, store, clock: Clock, *, runner=None, link=None, listeners=(),
                 on_commit: Callable[[str], None] | None = None,
                 reloader: Callable[..., dict] | None = None) -> None:
        self.cfg, self.store, self.clock = cfg, store, clock
        self.runner, self.link, self.listeners = runner, link, list(listeners)
        self.on_commit = on_commit or getattr(runner, "on_commit", None)
        self.reloader = reloader
        self.started = clock.wall()
        self.listing = QueueListing(store, held_for=getattr(runner, "held_for", None),
                                    waits=getattr(runner, "big_wait", None), may_hold=self._may_hold,
                                    big_gate=getattr(getattr(runner, "link", None), "big_mail_wait", None))

    def _may_hold(self) -> bool:
        """Could a recipient be held for someone's ETRN (customers, a hold route)?"""
        return bool(self.cfg.customers) or any(r.kind == "hold" for r in self.cfg.routes)

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
        if len(data) > self.cfg.MaxMessageSize:
            raise ValueError(f"message too large ({len(data)} bytes, MaxMessageSize {self.cfg.MaxMessageSize})")
        check_data(data)
        try:
            data = make_sendable(data)          # lines over 998 octets re-encoded (smtpd/longlines.py)
        except Unsendable as exc:
            raise ValueError(f"message not sendable: {exc}") from None
        peer = req.get("_peer") or {}
        data = received_local(peer_user(peer), self.cfg.hostname, self.clock.wall()) + data
        env = checked_envelope(req, data, self.cfg, client=_local_client(peer), arrived=self.clock.wall())
        self._refuse_routed(env.recipients)
        env, refused = self._refuse_unknown(env)
        if not env.recipients:
            return {"qid": None, "refused": refused}
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
        return {"qid": qid, "refused": refused}

    def _refuse_unknown(self, env: Envelope) -> tuple[Envelope, list[dict]]:
        """ENV without the recipients routing refuses permanently (an unknown
        local user: "550 5.1.1 <a>... User unknown"), and those refusals, as
        sendmail reports them and queues nothing for them."""
        check = getattr(self.runner, "check_rcpt", None)
        if check is None:
            return env, []
        keep, refused = [], []
        for r in env.recipients:
            reply = check(r.address)
            if reply and reply.startswith("5"):
                refused.append({"address": r.address, "reply": reply})
                log.info(maillog.reject(reply, cmd="RCPT", arg=f"TO:<{r.address}>",
                                        relay=env.client or "localhost"))
            else:
                keep.append(r)
        return (env if not refused else replace(env, recipients=tuple(keep))), refused

    def _refuse_routed(self, recipients: tuple[Recipient, ...]) -> None:
        """A route in disguise is refused here as at RCPT (16 §4): the reply
        routing gives (address.ROUTED_REFUSAL), never queued to go on."""
        from edgemail.address import parse_address
        check = getattr(self.runner, "check_rcpt", None)
        for r in recipients:
            if check is not None and parse_address(r.address).sender_routing and (reply := check(r.address)):
                raise ValueError(f"recipient refused: {reply}")

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
        """``edgemail reload``: as SIGHUP; ``newaliases`` / ``sendmail -bi``
        (``only="aliases"``): the aliases alone."""
        if self.reloader is None:
            raise ControlError("temporary: this daemon cannot reload")
        reply = self.reloader(str(req.get("reason") or "control"), str(req.get("only") or ""))
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
               "recipients": [{"address": r.address, "status": status_word(e.rcpt_status.get(r.address)),
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
            link = self.link if isinstance(self.link, Link) else None
            reply = await start_queue_run(self.runner, filters, wait=bool(req.get("wait")),
                                          done=link.changed if link else None)
            waiting, why = link.waiting(filters) if link else (0, "")
            if waiting:
                reply.update(message=f"{reply['message']}; {why}", link_waiting=waiting)
            return reply
        return {"message": "queue run requested (no delivery runner in this build: request logged)"}

    async def status(self, req: dict) -> dict:
        index = self.store.index                   # packed heads: no entry unpacked for the counts
        extra = self._link_status()
        link = extra.pop("link")
        return {**extra, "version": version(), "pid": os.getpid(), "uptime_s": round(self.clock.wall() - self.started, 1),
                "queued": len(index), "held": sum(1 for h in index.heads() if h[4] & HELD),
                "held_for_etrn": self._held_for_etrn(),
                "listeners": [f"{c.name}=[{c.address}]:{lst.port}" for c, lst in zip(self.cfg.listeners, self.listeners)],
                "control": self.cfg.control_socket, "link": link}

    def _held_for_etrn(self) -> int:
        """Messages with a recipient kept until someone asks (a hold route, a
        customer's domain): ``held`` counts only those put on hold."""
        held_for = getattr(self.runner, "held_for", None)
        if held_for is None or not self._may_hold():
            return 0
        return sum(1 for e in self.store.entries() if not e.held and held_for(e))

    def _link_status(self) -> dict:
        """``link`` (the state) and, from a wired link manager, its other facts and the queue demand."""
        if isinstance(self.link, Link):
            return self.link.status()
        if self.link is None:
            return {"link": {"state": "none"}}
        if hasattr(self.link, "status"):
            return {"link": self.link.status()}
        return {"link": {"state": getattr(self.link, "state", "?")}}


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
    from edgemail.spool import schedule
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
    """Control ops answered by the link manager: the ppp hooks (link_up,
    checked against netlink, and link_down; idempotent with netlink),
    link_explain, link_dial, link_hangup."""
    async def link_up(req: dict) -> dict:
        iface = str(req.get("iface") or manager.cfg.interface)
        return await manager.link_up(iface, str(req.get("local") or ""), str(req.get("remote") or ""))

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


_USER_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def peer_user(peer: dict) -> str:
    """The login name of the peer's uid (SO_PEERCRED: the kernel's word, not
    the client's), "uidN" for a uid without one, "unknown" in-process."""
    if "uid" not in peer:
        return "unknown"
    import pwd
    try:
        return pwd.getpwuid(int(peer["uid"])).pw_name
    except (KeyError, ValueError, OverflowError):
        return f"uid{peer['uid']}"


def received_local(user: str, hostname: str, when: float) -> bytes:
    """The trace line of a local submission, as sendmail's and Postfix's
    (``Received: (from USER@localhost) by HOST (edgemail); DATE``), folded
    as the SMTP listener's is; no ``id``: the qid exists only once the
    message is committed (the log line ties the two together)."""
    import email.utils
    who = _USER_SAFE.sub("_", user)[:64] or "unknown"
    return (f"Received: (from {who}@localhost)\r\n\tby {hostname} (edgemail);\r\n\t"
            f"{email.utils.formatdate(when, localtime=True)}\r\n").encode()


def _local_client(peer: dict) -> str:
    """How a local submission is logged: the uid the kernel vouches for, not a claim."""
    return f"localhost (uid {peer['uid']})" if "uid" in peer else "localhost"
