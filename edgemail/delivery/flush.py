"""delivery/flush.py - ISP mode: the flushes of held mail, after ETRN or over ATRN (DRIVER).

NAME
    flush - Flusher (runner.flushes): ``etrn(node, client)``, ``atrn(user,
    domains, relay)``, ``push(...)``, ``pending(flush)``

DESCRIPTION
    Who may ask for what is decided by the core, delivery/customers.py;
    this part counts what is waiting, answers, and delivers.

    ETRN (RFC 1985).  ``etrn`` answers ``251 2.0.0 OK, no messages waiting
    for node X``, or ``253 2.0.0 OK, N pending messages for node X
    started`` and starts the flush in the background: the held jobs the
    Flush wants, one message after another through the MessageDriver
    (locks, recording, logging as any delivery), to the customer's
    ``deliver`` host or the domain's MX hosts past us (deliver.py); never
    DialDelay, never host status (a customer that was offline must not be
    skipped when it asks).  A flush does not wait for a queue run: it runs
    beside them, and stop_run (our link going down) does not cut it (a
    delivery the link cuts is a cut attempt, recorded as none).  An ETRN for a node whose flush is under way joins it: the
    flush runs once more when it ends (so mail queued meanwhile goes too).
    With a link manager whose line is down: ``458 4.4.2 Unable to queue
    messages for node X now: N message(s) held, but our line is down; ...``
    (line_down_reply, the same words as the LAN's ETRN), nothing started.  Refusals (459) come from
    the core; a node no one holds goes to the runner's ``-qR`` run
    (``legacy``).

    ATRN (RFC 2645).  ``atrn`` decides at once: the core's 530/450, ``453
    4.0.0 You have no mail``, ``451 4.3.0 Unable to process ATRN request
    now`` while a flush for the same customers runs, or ``250 2.0.0 OK,
    now reversing the connection`` with the push to run once the reply
    has gone out.  ``push(flush, transport, early, relay)`` is the ISP's
    side of the turned connection: adopt the transport (smtpc Channel),
    wait for the customer's 220, EHLO (no STARTTLS inside: the connection
    is as protected as the ODMR session was), deliver the held messages
    over it (``RunContext.via``), QUIT.  The customer's replies are the
    results, recorded as for any delivery; a broken connection ends the
    push and leaves the rest held.

LOG LINES
    run_start / run_end with reason ``etrn NODE`` or ``atrn NODE`` and
    filters ``hold=CUSTOMERS``; isp.etrn_flush (an ETRN taken) and
    isp.atrn_turned (the connection turned around).

NEVER
    Decides who may ask (customers.py), or delivers anything but held jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from edgemail import maillog
from edgemail.clock import Clock
from edgemail.config.model import Config
from edgemail.delivery import customers
from edgemail.delivery.customers import Client, Flush
from edgemail.delivery.deliver import RunContext
from edgemail.delivery.hoststatus import HostStatusCache
from edgemail.delivery.message import MessageDriver, Plan
from edgemail.delivery.port import COMING_UP, Job, LinkPort, RunReport
from edgemail.delivery.state import TaskSet, tally
from edgemail.envelope import Envelope
from edgemail.errors import DeliveryFailure
from edgemail.smtpc.channel import Channel
from edgemail.smtpc.core import MessageParams
from edgemail.smtpc.dialogue import Dialogue
from edgemail.smtpc.opening import Opening
from edgemail.smtpc.results import DeliveryResult, Stats
from edgemail.smtpc.tls import TlsPolicy
from edgemail.smtpc.transaction import Transaction
from edgemail.spool.store import Store

log = logging.getLogger("edgemail.runner")

NO_MAIL = "453 4.0.0 You have no mail"
BUSY = "451 4.3.0 Unable to process ATRN request now: a delivery of your mail is under way"
TURNING = "250 2.0.0 OK, now reversing the connection"

Legacy = Callable[[str, Client], Awaitable[str]]
Push = Callable[[Any, bytes], Coroutine[Any, Any, "RunReport | None"]]



def line_down_reply(node: str, n: int) -> str:
    """ETRN's 458 while our line is down: N messages for NODE wait (RFC 1985 §5)."""
    return (f"458 4.4.2 Unable to queue messages for node {node} now: {n} message(s) held, "
            "but our line is down; ETRN again while it is up")

class DialogueVia:
    """An ODMR push's connection as deliver.py's Via: one Transaction per message."""

    def __init__(self, dialogue: Dialogue, relay: str) -> None:
        self.dialogue, self.relay = dialogue, relay

    async def send(self, env: Envelope, data: bytes, jobs: list[Job]) -> DeliveryResult:
        message = Transaction(env.mail_from, [j.wire for j in jobs], data, MessageParams.from_envelope(env))
        try:
            return await message.run(self.dialogue)
        except BaseException:
            self.dialogue.abort()           # its state is unknown: nothing more goes over it
            raise


class Flusher:
    """Flushes of held mail (see the module docstring)."""

    def __init__(self, cfg: Config, store: Store, *, clock: Clock, messages: MessageDriver, plan: Plan,
                 link: LinkPort | None, hosts: HostStatusCache, tasks: TaskSet) -> None:
        self.cfg, self.store, self.clock, self.messages, self.plan = cfg, store, clock, messages, plan
        self.link, self.hosts, self.tasks = link, hosts, tasks
        self.runs = 0
        #: (customers, node) of each flush under way -> asked again meanwhile
        self._busy: dict[tuple[str, str], bool] = {}

    def pending(self, flush: Flush) -> list[str]:
        """The queued messages (not on hold) with a held job FLUSH takes, oldest first."""
        entries = sorted(self.store.entries(), key=lambda e: e.created)
        return [e.qid for e in entries if not e.held and any(flush.wants(j) for j in self.plan(e)[0])]

    def busy(self, flush: Flush) -> bool:
        """Is a flush of one of FLUSH's customers under way?"""
        mine = set(flush.customers)
        return any(mine.intersection(key[0].split(",")) for key in self._busy)

    # ------------------------------------------------------------ ETRN

    async def etrn(self, node: str, client: Client, legacy: Legacy) -> str:
        """The reply to ETRN NODE from CLIENT; a flush started in the background."""
        decision = customers.etrn_request(self.cfg, node, client)
        if decision is None:
            return await legacy(node, client)
        if isinstance(decision, str):
            return decision
        n = len(self.pending(decision))
        if not n:
            reply = f"251 2.0.0 OK, no messages waiting for node {node}"
        elif self.link is not None and getattr(self.link, "state", "up") not in ("up", *COMING_UP):
            reply = line_down_reply(node, n)
        else:
            reply = f"253 2.0.0 OK, {n} pending messages for node {node} started"
            self._start(decision)
        log.info(maillog.etrn_flush(node, client.ip, client.user, decision.customers, reply))
        return reply

    def _start(self, flush: Flush) -> None:
        key = (flush.key, flush.node)
        if key in self._busy:
            self._busy[key] = True           # runs once more when the current one ends
            return
        self._busy[key] = False
        self.tasks.spawn(self._etrn_flushes(flush, key))

    async def _etrn_flushes(self, flush: Flush, key: tuple[str, str]) -> None:
        try:
            while True:
                await self.run(flush, f"etrn {flush.node}")
                if not self._busy.get(key):
                    return
                self._busy[key] = False
        finally:
            self._busy.pop(key, None)

    # ------------------------------------------------------------ ATRN

    def atrn(self, user: str | None, domains: tuple[str, ...], relay: str) -> tuple[str, Push | None]:
        """The reply to ATRN; with 250, the push to run on the turned connection."""
        decision = customers.atrn_request(self.cfg, user, domains)
        if isinstance(decision, str):
            return decision, None
        if self.busy(decision):
            return BUSY, None
        if not self.pending(decision):
            return NO_MAIL, None
        key = (decision.key, decision.node)
        self._busy[key] = False
        log.info(maillog.atrn_turned(decision.node, relay, user or "", decision.customers))

        async def push(transport, early: bytes) -> RunReport | None:
            try:
                return await self.push(decision, transport, early, relay)
            except Exception:                # one push never stops the daemon
                log.exception(maillog.runner_internal_error())
                transport.abort()
                return None
            finally:
                self._busy.pop(key, None)
        return TURNING, push

    async def push(self, flush: Flush, transport, early: bytes, relay: str) -> RunReport:
        """Deliver FLUSH's messages over the customer's connection (TRANSPORT)."""
        opening = Opening(self.cfg.hostname, self.cfg.Timeout, Stats(), tls=TlsPolicy("none"))
        host, _, port = relay.strip("[").partition("]:")
        try:
            dialogue = await opening.greet(Channel.adopt(transport, early), host, int(port or 0))
        except DeliveryFailure as exc:
            log.warning(maillog.runner_warning(f"ODMR push to {relay}: {exc}"))
            return RunReport("none", f"atrn {flush.node}", stopped="link")
        try:
            return await self.run(flush, f"atrn {flush.node}", via=DialogueVia(dialogue, f"odmr:{relay}"))
        finally:
            await dialogue.quit()

    # ------------------------------------------------------------ the flush

    async def run(self, flush: Flush, reason: str, via: DialogueVia | None = None) -> RunReport:
        """One flush: FLUSH's messages, one at a time; the link held while it runs."""
        self.runs += 1
        filters = (f"hold={flush.key or 'lan'}",)
        report = RunReport(f"{os.getpid()}.f{self.runs}", reason, filters)
        qids = self.pending(flush)
        report.selected = len(qids)
        log.info(maillog.run_start(report.run, reason, filters, len(qids)))
        t0 = self.clock.monotonic()
        ctx = RunContext(report.run, self.hosts, self.clock.wall, via=via)
        hold = self.link.hold(f"flush {report.run}") if self.link is not None else contextlib.nullcontext()
        async with hold:
            for qid in qids:
                if via is not None and not via.dialogue.usable:
                    report.stopped = "link"          # the customer's connection is gone
                    break
                tally(report, await self.messages.attempt(qid, ctx, flush.wants))
        report.seconds = self.clock.monotonic() - t0
        log.info(maillog.run_end(selected=report.selected, attempted=report.attempted, sent=report.sent,
                                 deferred=report.deferred, bounced=report.bounced, cut=report.cut,
                                 stopped=report.stopped))
        return report
