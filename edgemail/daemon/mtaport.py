"""daemon/mtaport.py - the MTA side of the link port: what the LinkManager calls.

NAME
    mtaport - MtaPort(cfg, store, runner, listeners=(), clock=None)
    (wiredlink.Link(manager, port): the two wired together, as the daemon holds them)

SYNOPSIS
    port = MtaPort(cfg, store, runner, listeners=listeners)
    mgr = LinkManager(cfg.link, policy, clock=clock, port=port, ...)
    port.queue_summary() -> QueueDemand       # what waits for the link, due now
    port.waiting_for(filters) -> (link, held) # what a queue run with sendmail -q FILTERS leaves for the line
    await port.run_queue() -> RunReport       # link-up: host status cleared, queue run of expensive routes
    await port.run_due() -> RunReport         # mail due during the call: another run
    port.stop_run()                           # link going down: cut, no backoff grows
    port.link_down()                          # the call ended: stop counting link-up time
    port.line_tried(placed, result)           # a dial's result (retry.count_offline_time)
    await port.etrn(domains) -> [EtrnResult]  # ask the ISP to flush what it holds for us
    await port.odmr(domains) -> [EtrnResult]  # ATRN: the ISP pushes over our connection (RFC 2645)
    port.inbound_active() -> int              # ISP sessions open on our ISP-facing listeners
    await port.watch(on_due)                  # call on_due() when deferred mail becomes due

DESCRIPTION
    The link manager (link/manager.py, "THE PORT") never imports edgemail;
    this object is the duck-typed port it is given by the daemon.

    Demand.  A message counts towards ``queued`` when at least one of its
    recipients still waits on an expensive route (routing: ``expensive``,
    or kind ``mx``; ``hold`` routes wait for someone else's ETRN and never
    make us dial), the message is not on hold, and it is DUE: its
    next_attempt is not in the future.  Mail deferred by a failed attempt
    (next_attempt later) does not count until then - otherwise a policy
    with ``dial_when_queued`` would redial at once after every failed run.
    ``watch()`` wakes the manager when the earliest such message becomes
    due.  ``oldest_age_s`` is the age of the oldest due message, ``urgent``
    the due messages of class urgent (Precedence: urgent, special-delivery;
    ``Envelope.urgency``).  ``total`` and ``expensive`` (due or not) are for
    ``edgemail status``.  The figures are kept as the queue changes
    (demand.py: no walk of the queue per commit); routing is asked once per
    entry version, its answer kept in the index's mark bits.

    Host status.  The link-up run (runner.link_up) clears it, once, and
    says how many hosts it forgot (``runner: link up, hoststatus_cleared=N``);
    this port has no clear_host_status of its own (link.port: optional), so
    no second clearing logs a contradicting count.

    Inbound sessions.  The listeners facing the ISP are the ``strict`` ones
    (config.Listener: Internet/ISP-facing); their open sessions keep the
    line up after ETRN while the ISP pushes mail back.  With ODMR the push
    comes over the connection we opened: after the ISP's 250 to ATRN the
    connection is served by the first of them (``accept_push``:
    listener.adopt), as one of its sessions, and ``odmr`` returns when the
    ISP has closed it.

NEVER
    Decides when to dial (the policy does), makes DNS queries outside a
    queue run, or raises from queue_summary for one bad entry: routing
    answers bad addresses with error decisions, so an exception from it is
    a bug, logged with its traceback (demand_unroutable), and the entry
    does not count (no call is made for a bug; the next run meets it and
    the runner defers it).

FAILURES
    ``etrn`` with no ``link.etrn_host`` configured returns code 0 results
    saying so; a refused connection is a code 0 result (edgemail.delivery.etrn).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from typing import Sequence

from edgemail import maillog
from edgemail.clock import Clock, SystemClock
from edgemail.config import loader as configmod
from edgemail.delivery.etrn import EtrnResult, etrn, session_timeouts
from edgemail.delivery.odmr import odmr
from edgemail.daemon.routewait import wait_fresh_file, wait_route
from edgemail.delivery.port import is_ip
from edgemail.delivery.state import item
from edgemail.daemon.demand import DemandCounts
from edgemail.spool import packed, schedule

log = logging.getLogger("edgemail.runner")

#: longest sleep of watch() between looks at the queue (new entries, clock jumps)
WATCH_MAX_S = 60.0
#: link-up: how long the run waits for a route to its first next hop
ROUTE_WAIT_S = 5.0


@dataclass(frozen=True)
class QueueDemand:
    """What waits for the link (the manager reads queued, oldest_age_s, urgent)."""

    queued: int = 0                #: messages due now with recipients on expensive routes
    oldest_age_s: float = 0.0      #: age of the oldest of those
    urgent: int = 0                #: of those, urgent class
    expensive: int = 0             #: messages waiting on expensive routes, due or not
    total: int = 0                 #: messages in the queue
    next_due: float | None = None  #: wall time the next deferred expensive message is due
    big_waiting: int = 0           #: big mail left for a cheap window (not in queued)
    big_reason: str = ""           #: why, for the first of them

    def as_dict(self) -> dict:
        return {"count": self.total, "expensive": self.expensive, "due": self.queued,
                "oldest_age_s": round(self.oldest_age_s, 1), "urgent": self.urgent,
                "next_due": self.next_due, "big_waiting": self.big_waiting}


def isp_facing(listeners) -> list:
    """The listeners whose sessions come from the ISP (strict ones)."""
    return [lst for lst in listeners if getattr(getattr(lst, "listener", None), "strict", False)]


class MtaPort:
    """The port the LinkManager drives (see the module docstring).

    Given everything it uses: the config (routes, dns, link.etrn_host), the
    store (``entries()``), the listeners (their ``active`` ISP sessions),
    the clock, the ETRN client, and the runner, of which it asks
    ``link_up`` (which clears the host status), ``queue_run``,
    ``stop_run``, ``link_down``, ``resolver`` (``reload_nameservers()``, the first hops)
    and which jobs an entry still has (``_jobs``: XXX, wants a public
    Runner method)."""

    def __init__(self, cfg, store, runner, *, listeners=(), clock: Clock | None = None,
                 etrn_fn=etrn, odmr_fn=odmr) -> None:
        self.cfg, self.store, self.runner = cfg, store, runner
        self.listeners = list(listeners)
        self.clock = clock or SystemClock()
        self._etrn, self._odmr = etrn_fn, odmr_fn
        self.demand = DemandCounts(store.index, self._needs_qid, self._big_qid, self.clock.wall)
        self._kick = asyncio.Event()
        self.last_run = None

    # ------------------------------------------------------------ demand

    def needs_link(self, entry) -> bool:
        """Has this entry a recipient still waiting on an expensive route?
        (The index's marks keep the answer for the entry's current version.)"""
        index = self.store.index
        if entry.qid in index and index.get(entry.qid) == entry:
            marks = index.marks(entry.qid)
            if marks & packed.MARK_KNOWN:
                return bool(marks & packed.MARK_YES)
        return self._route(entry)

    def _route(self, entry) -> bool:
        try:
            jobs, _ = self.runner.pending_jobs(entry)
            return any(_expensive(j.decision) for j in jobs)
        except Exception as exc:                 # a bug in routing: said once, and no call for it
            log.error(maillog.demand_unroutable(entry.qid, repr(exc)), exc_info=exc)
            return False

    def _needs_qid(self, qid: str) -> bool:
        return self._route(self.store.get(qid))

    def _big_qid(self, qid: str, size: int, flags: int) -> str:
        """Why QID (SIZE bytes) waits for a cheap window ("" : it does not); only
        what the dial policy's big_mail could hold back is unpacked and planned."""
        big = getattr(self.runner, "big_wait", None)
        if big is None:
            return ""
        ask = getattr(getattr(self.runner, "link", None), "big_mail_wait", None)
        if ask is not None and not ask(size, bool(flags & packed.URGENT)):
            return ""
        return big(self.store.get(qid))

    def queue_summary(self) -> QueueDemand:
        now = self.clock.wall()
        due, oldest, urgent, expensive, next_due, big = self.demand.figures()
        return QueueDemand(
            queued=due, oldest_age_s=0.0 if oldest is None else max(now - oldest, 0.0),
            urgent=urgent, expensive=expensive, total=len(self.store.index), next_due=next_due,
            big_waiting=len(big), big_reason=next(iter(big.values()), ""))

    def waiting_for(self, filters: Sequence[str] = ()) -> tuple[int, int]:
        """What a queue run with FILTERS (sendmail -q's forms: only what they
        select) leaves waiting while the line is down: (messages with mail for
        the link, messages held on a hold route, which only a filtered run
        flushes and only with the line up)."""
        parsed = schedule.parse_filters(filters)
        chosen = [e for e in self.store.entries()
                  if not e.held and (not parsed or schedule.matches(item(e), parsed))]
        return (sum(1 for e in chosen if self.needs_link(e)),
                sum(1 for e in chosen if parsed and self._on_hold_route(e)))

    def _on_hold_route(self, entry) -> bool:
        try:
            return any(j.decision.kind == "hold" for j in self.runner.pending_jobs(entry)[0])
        except Exception:                        # needs_link has said it (demand_unroutable)
            return False

    async def watch(self, on_due) -> None:
        """Call on_due() when a deferred expensive message becomes due (and
        at least every WATCH_MAX_S, so new entries and clock jumps are seen)."""
        while True:
            nxt = self.queue_summary().next_due
            wait = WATCH_MAX_S if nxt is None else min(max(nxt - self.clock.wall(), 0.0) + 0.5, WATCH_MAX_S)
            self._kick.clear()
            sleep = asyncio.ensure_future(self.clock.sleep(wait))
            kick = asyncio.ensure_future(self._kick.wait())
            try:
                await asyncio.wait({sleep, kick}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleep.cancel()
                kick.cancel()
            if sleep.done() and not sleep.cancelled():
                on_due()

    def changed(self) -> None:
        """The queue changed (commit, run): re-plan watch()."""
        self._kick.set()

    # ------------------------------------------------------------ link-up sequence

    async def run_queue(self):
        """The link-up queue run (runner.link_up: host status, peer DNS, link-up time, run),
        once there is a route towards the first next hop (see wait_route)."""
        try:
            if not self.cfg.dns.nameservers and self.cfg.dns.peer_dns_file:
                await wait_fresh_file(self.cfg.dns.peer_dns_file, ROUTE_WAIT_S)
            await wait_route(self._first_hops(), ROUTE_WAIT_S)
            self.last_run = await self.runner.link_up(iface=self.cfg.link.interface)
            return self.last_run
        finally:
            self.changed()

    async def run_due(self):
        """Another run on the same call (mail that became due while the line
        lingered): what is due now; host status and peer DNS as they are."""
        try:
            self.last_run = await self.runner.queue_run(reason="mail-waiting")
            return self.last_run
        finally:
            self.changed()

    def _first_hops(self) -> list[str]:
        """Numeric addresses the run will talk to first: nameservers, else the smart host."""
        reload = getattr(self.runner.resolver, "reload_nameservers", None)
        hops = list(reload() if reload else ())
        if self.cfg.SmartHost:
            hops.append(configmod.smart_host(self.cfg.SmartHost)[0])
        return [h for h in hops if is_ip(h)]

    def stop_run(self) -> None:
        self.runner.stop_run()

    def link_down(self) -> None:
        """The call ended: stop the run (if any) and book the end of link-up time."""
        task = asyncio.get_running_loop().create_task(self.runner.link_down())
        task.add_done_callback(_log_failure)
        self.changed()

    def line_tried(self, placed: bool, result: str) -> None:
        """A dial ended with RESULT: PLACED (it reached the network) vouches for the line."""
        self.runner.line_tried(placed)

    async def etrn(self, domains) -> list[EtrnResult]:
        if not self.cfg.link.etrn_host:
            return [EtrnResult(d, 0, "no link.etrn_host configured") for d in domains]
        host, port = configmod.smart_host(self.cfg.link.etrn_host)
        return await self._etrn(host, port, domains, helo_name=self.cfg.hostname,
                                timeout=self.cfg.Timeout.misc)

    async def odmr(self, domains) -> list[EtrnResult]:
        """ATRN at the ISP ([link] odmr, RFC 2645); returns once its push over
        our connection is over (served by the ISP-facing listener, else the first)."""
        client = self.cfg.link.odmr
        listeners = isp_facing(self.listeners) or self.listeners
        if client is None or not listeners:
            why = "no [link] odmr configured" if client is None else "no SMTP listener to take the push"
            return [EtrnResult(d, 0, why) for d in domains]
        return await self._odmr(client, domains, helo_name=self.cfg.hostname,
                                timeouts=session_timeouts(self.cfg.Timeout.misc),
                                accept=functools.partial(accept_push, listeners[0]))

    def inbound_active(self) -> int:
        return sum(lst.active for lst in isp_facing(self.listeners))


async def accept_push(listener, transport, early: bytes, relay: str) -> int:
    """ODMR: serve the turned connection on LISTENER until the ISP closes it;
    the messages committed."""
    session = listener.adopt(transport, early)
    await session.done
    return session.commits


def _expensive(decision) -> bool:
    """Needs the link: flagged expensive or an mx route; never hold (someone else's ETRN)."""
    if decision.kind == "hold":
        return False
    return decision.expensive or decision.kind == "mx"


def _log_failure(task: asyncio.Task) -> None:
    error = None if task.cancelled() else task.exception()
    if isinstance(error, OSError):                  # the link-up time file: said, not a bug
        log.warning(maillog.runner_warning(f"link_down failed: {error}"))
    elif error is not None:
        log.error(maillog.runner_internal_error(), exc_info=error)

