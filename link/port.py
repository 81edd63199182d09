"""port.py - what the daemon gives the link manager: the MTA's port and a clock.

NAME
    port - MtaPort (the protocol the MTA fulfils), Port (the manager's
    guarded calls into it), QueueSummary, EtrnReply; Clock, wall_now(clock)

SYNOPSIS
    port = Port(mta)                    # mta: edgemail.daemon.mtaport.MtaPort in the daemon
    q = port.summary()                  # QueueSummary; an empty one when the MTA raises
    await port.run(link_up=True)        # the call's queue run (False: what is due now)
    replies = await port.etrn(("example.org",))   # [(domain, code, text)]; code 0: no answer
    port.target = other                 # the daemon wires the MTA in after construction

DESCRIPTION
    link never imports edgemail: the MTA hands the manager an object with
    the methods of MtaPort below, and this module is the one place link
    calls it.  Every call is guarded, by type: what a port call may meet
    (EXPECTED: OSError, the spool or a socket) is a warning (link:
    CALL=failed, error=E); anything else is a bug in the MTA's port and is
    logged with its traceback (link: CALL=error, error=E).  Either way the
    call counts as done, on the side that costs nothing: an empty queue
    summary (no dial), inbound sessions unknown (None: the sampler keeps
    what it knew, so a push in progress is not hung up on), ETRN answered
    with code 0, the run over.  A failing inbound_active is logged once
    per run of failures (it is sampled every second).  link_down is
    optional (an MTA that does not book link-up time leaves it out), so
    is line_tried (one that does not age mail by the line), and so is clear_host_status (an MTA whose link-up run clears it).  With no
    target (None) the calls do nothing and the queue is empty.

    MtaPort (what the MTA provides):
        queue_summary() -> obj with queued, oldest_age_s, urgent   (expensive routes, due now)
        clear_host_status() -> None        optional; link-up: forget failed hosts
        async run_queue() -> None          the call's queue run of expensive routes
        async run_due() -> None            another run on the same call: what is due now
        stop_run() -> None                 link going down: stop cleanly, no backoff grows
        async etrn(domains) -> [obj with domain, code, text]
        async odmr(domains) -> the same    optional: ATRN, returns after the ISP's push
        inbound_active() -> int            ISP sessions open on our SMTP listener
        link_down() -> None                optional: a call that came up has ended
        line_tried(placed, result) -> None optional: a dial ended; placed: it reached
                                           the network (a call, BUSY, NO CARRIER, ...)

    Clock is edgemail.clock's Clock (SystemClock, FakeClock) as link uses
    it: monotonic() for the FSM's deadlines, wall() for the policy, the
    ledger and status, sleep() for the manager's loop and the sampling (so
    a FakeClock runs the manager on virtual time).  wall_now(clock) is
    wall() as an aware UTC datetime.

NEVER
    Raises what the MTA raised (but CancelledError), retries, or decides anything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol, TypeVar

from link import linklog

log = logging.getLogger("link")
R = TypeVar("R")
#: what a port call may meet without a bug: I/O trouble (the spool, a socket)
EXPECTED = (OSError,)


class Clock(Protocol):
    def monotonic(self) -> float: ...
    def wall(self) -> float: ...
    async def sleep(self, seconds: float) -> None: ...


def wall_now(clock: Clock) -> datetime:
    return datetime.fromtimestamp(clock.wall(), timezone.utc)


@dataclass(frozen=True)
class QueueSummary:
    queued: int = 0               #: messages waiting for the link (expensive routes)
    oldest_age_s: float = 0.0
    urgent: int = 0


class Summary(Protocol):
    @property
    def queued(self) -> int: ...
    @property
    def oldest_age_s(self) -> float: ...
    @property
    def urgent(self) -> int: ...


class EtrnReply(Protocol):
    @property
    def domain(self) -> str: ...
    @property
    def code(self) -> int: ...
    @property
    def text(self) -> str: ...


class MtaPort(Protocol):
    def queue_summary(self) -> Summary: ...
    async def run_queue(self) -> Any: ...
    async def run_due(self) -> Any: ...
    def stop_run(self) -> None: ...
    async def etrn(self, domains: Sequence[str]) -> Sequence[EtrnReply]: ...
    def inbound_active(self) -> int: ...


class Port:
    """The manager's calls into the MTA, each guarded (the module's page)."""

    def __init__(self, target: MtaPort | None) -> None:
        self.target = target
        self._inbound_failing = False

    def summary(self) -> Summary:
        empty: Summary = QueueSummary()
        return self._guard("queue_summary", lambda t: t.queue_summary(), empty)

    def clear_host_status(self) -> None:
        """Link-up: forget failed hosts (only when the MTA has clear_host_status)."""
        self._optional("clear_host_status")

    def stop_run(self) -> None:
        self._guard("stop_run", lambda t: t.stop_run(), None)

    def link_down(self) -> None:
        """A call that came up has ended (only when the MTA has link_down)."""
        self._optional("link_down")

    def line_tried(self, placed: bool, result: str) -> None:
        """A dial ended with RESULT; PLACED: it reached the network (or
        connected), else the modem, the line or our setup failed first
        (only when the MTA has line_tried: retry.count_offline_time)."""
        method = getattr(self.target, "line_tried", None)
        if method is not None:
            self._guard("line_tried", lambda t: method(placed, result), None)

    def inbound(self) -> int | None:
        """ISP sessions open on our listener; None when the MTA cannot say
        (the caller keeps what it knew).  Logged once per run of failures."""
        if self.target is None:
            return 0
        try:
            n = int(self.target.inbound_active())
        except Exception as e:
            if not self._inbound_failing:
                _report("inbound_active", e)
            self._inbound_failing = True
            return None
        self._inbound_failing = False
        return n

    async def run(self, link_up: bool = True) -> None:
        """The call's first run (link_up) or another one on the same call."""
        if self.target is None:
            return
        try:
            await (self.target.run_queue() if link_up else self.target.run_due())
        except Exception as e:
            _report("queue_run", e)

    async def etrn(self, domains: tuple[str, ...]) -> list[tuple[str, int, str]]:
        """(domain, code, text) per domain; code 0 where the MTA could not ask."""
        return await self._ask("etrn", domains)

    async def odmr(self, domains: tuple[str, ...]) -> list[tuple[str, int, str]]:
        """ATRN for the domains (RFC 2645); returns once the ISP's push over
        our connection is over.  (domain, code, text) per domain; code 0
        where the MTA could not ask (or has no odmr)."""
        return await self._ask("odmr", domains)

    async def _ask(self, name: str, domains: tuple[str, ...]) -> list[tuple[str, int, str]]:
        call = getattr(self.target, name, None) if self.target is not None else None
        if call is None:
            return [(d, 0, f"no MTA port with {name}") for d in domains]
        try:
            return [(r.domain, r.code, r.text) for r in await call(domains)]
        except Exception as e:
            _report(name, e)
            return [(d, 0, f"error: {e}") for d in domains]

    def _optional(self, name: str) -> None:
        method = getattr(self.target, name, None)
        if method is not None:
            self._guard(name, lambda t: method(), None)

    def _guard(self, name: str, call: Callable[[MtaPort], R], default: R) -> R:
        if self.target is None:
            return default
        try:
            return call(self.target)
        except Exception as e:                # the MTA's problem must not stop the line
            _report(name, e)
            return default


def _report(name: str, e: Exception) -> None:
    """The expected trouble as a warning; a bug with its traceback."""
    if isinstance(e, EXPECTED):
        log.warning(linklog.port_failed(name, e))
    else:
        log.error(linklog.port_error(name, e), exc_info=e)
