"""calls.py - the call: dial, pppd, hang-up, the link-up work, the call's record (DRIVER).

NAME
    calls - CallDriver: performs the FSM's call actions on the line and with
    the MTA, and turns their results into FSM events

SYNOPSIS
    calls = CallDriver(cfg.link, clock=clock, port=Port(mta), post=feed, wake=loop.set,
                       ledger=Ledger(path))           # line=Line(cfg.link) by default
    calls.start()                       # the netlink watcher (IfaceUp / IfaceDown events)
    calls.perform(Dial(numbers, "urgent"))   # Dial, StartPppd, ClearHostStatus, RunQueue,
                                        # SendEtrn, StopRun, Hangup
    why = await calls.refute_up("ppp0", "10.64.0.2")   # the ip-up hook's claim against netlink
    calls.up(now)  /  calls.down("idle")     # NotifyUp / NotifyDown: the call's record
    calls.usage(now); calls.status()    # for the policy's demand and for status
    await calls.close()

DESCRIPTION
    Owns what a call does, each as a task of its own: the line's work
    (link.line.Line: dial, pppd on the handed-over tty, hang-up; each dial's
    result is told to the MTA, port.line_tried), the MTA's queue run and
    ETRN (through link.port.Port), watching the interface
    over netlink (restarted a second after an OSError) and, while up,
    sampling ppp0's byte counters and the ISP's inbound sessions.

    A hook's claim that the interface is up is checked against netlink
    before anything acts on it (refute_up: a fresh read, link.netwatch
    probe() and refusal()); a claim netlink contradicts, or that cannot be
    checked, is refused and logged (link: hook=ip-up, ..., result=refused).

    Every result comes back as an FSM event through post(event) (the
    manager feeds it to the FSM); wake() tells the manager a task ended
    (a hang-up that ends lets the policy be asked).  up(now) starts the
    call's record (start time, number, counters); down(cause) logs and
    books it in the ledger (connect time and bytes from the counters, or
    from pppd's ip-down environment when the hook gave one: ip_down(env)).

INVARIANTS
    A hang-up first cancels a dial in progress; one hang-up at a time (and
    the line's lock keeps dial and hang-up apart on the tty).  Nothing here
    waits on the line for the caller: perform() only starts tasks.

NEVER
    Decides to dial or hang up (the FSM does), or asks the policy.

FAILURES
    The line's expected failures are events already (link.line); the MTA's
    are Port's (logged, counted as done; inbound sessions the MTA cannot
    count keep the last count); anything else ends the task and is logged
    with its traceback (link: task=NAME, error=E).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from link import linklog
from link.accounting import Ledger, Usage, from_ip_down_env
from link.errors import LinkError
from link.line import Line
from link.port import Clock, Port, wall_now
from link.transitions import (Action, ClearHostStatus, Dial, DialResult, EtrnDone, Hangup, Idle,
                              IfaceDown, IfaceUp, InboundActive, InboundDone, LinkEvent, QueueRunDone,
                              RunQueue, SendEtrn, StartPppd, StopRun)

if TYPE_CHECKING:
    from link.netwatch import NetWatch, View

#: reads the interface afresh for a hook's claim: () -> link.netwatch.View
Probe = Callable[[], Coroutine[Any, Any, "View"]]

log = logging.getLogger("link")
#: after an OSError the netlink watcher is opened again this much later
NETWATCH_RETRY_S = 1.0


class Watcher(Protocol):
    """What the call driver uses of link.netwatch.NetWatch (netwatch_factory makes one)."""

    async def __aenter__(self) -> Watcher: ...
    async def __aexit__(self, *exc: object) -> None: ...
    def __aiter__(self) -> AsyncIterator[object]: ...
    async def counters(self) -> tuple[int, int] | None: ...
    def close(self) -> None: ...


@dataclass
class ActiveCall:
    """The call in progress, from link-up to link-down."""

    start: datetime                     #: wall time of link-up
    mono: float                         #: monotonic time of link-up
    number: str = ""
    base: tuple[int, int] | None = None     #: (rx, tx) at the first sample
    last: tuple[int, int] | None = None     #: (rx, tx) at the latest sample

    def sent_rcvd(self) -> tuple[int, int]:
        if self.base is None or self.last is None:
            return 0, 0
        return self.last[1] - self.base[1], self.last[0] - self.base[0]


class CallDriver:
    """The call's drivers (the module's page)."""

    def __init__(self, cfg, *, clock: Clock, port: Port, post: Callable[[LinkEvent], None],
                 wake: Callable[[], None], line: Line | None = None, ledger: Ledger | None = None,
                 netwatch_factory: Callable[[], Watcher] | None = None, sample_s: float = 1.0,
                 probe: Probe | None = None) -> None:
        self.clock, self.port, self.ledger = clock, port, ledger
        self.cfg = cfg
        self._probe: Probe = probe or partial(_probe, cfg)
        self._post, self._wake = post, wake
        self.line = line if line is not None else Line(cfg)
        self._netwatch_factory: Callable[[], Watcher] = netwatch_factory or partial(_make_netwatch, cfg)
        self.sample_s = sample_s
        self._watch: Watcher | None = None
        self._tasks: dict[str, asyncio.Task] = {}
        self._call: ActiveCall | None = None
        self._ipdown_env: dict | None = None
        self._inbound = 0
        self._left_after_run = 0                # due mail the last run of this call did not send
        self.last_etrn: dict | None = None

    # --- what the manager asks -----------------------------------------------------------

    def perform(self, action: Action) -> None:
        """Start what one of the FSM's call actions asks for (NotifyUp/Down: up()/down())."""
        if isinstance(action, Dial):
            self._spawn("dial", self._dial(action.numbers))
        elif isinstance(action, StartPppd) and self.line.mode == "modem":
            self._spawn("pppd", self._pppd())
        elif isinstance(action, ClearHostStatus):
            self.port.clear_host_status()
        elif isinstance(action, RunQueue):
            self._spawn("run", self._run(action.link_up))
        elif isinstance(action, SendEtrn):
            self._spawn("etrn", self._etrn(action.domains, action.method))
        elif isinstance(action, StopRun):
            log.info(linklog.stop_run(action.cause))
            self.port.stop_run()
        elif isinstance(action, Hangup):
            self._cancel("sample")              # the line is going: nothing more to sample
            self.hangup(action.cause)

    def hangup(self, cause: str) -> None:
        """Put the line on-hook (the FSM's Hangup, or the operator's)."""
        self._spawn("hangup", self._hangup(cause))

    @property
    def hanging_up(self) -> bool:
        return "hangup" in self._tasks

    def start(self) -> None:
        """Watch the interface (netlink) until close()."""
        self._spawn("watch", self._watch_loop())

    def up(self, now: datetime) -> None:
        """NotifyUp: the call came up: its record starts, pppd has the tty, sampling starts."""
        self._call = ActiveCall(now, self.clock.monotonic(), self.line.number)
        self._ipdown_env = None
        self._inbound = 0
        self.line.release_tty()
        self._spawn("sample", self._sample_loop())

    def ip_down(self, env: dict | None) -> None:
        """The ip-down hook's environment (CONNECT_TIME, BYTES_SENT, BYTES_RCVD) for this call."""
        self._ipdown_env = dict(env or {})

    def down(self, cause: str) -> None:
        """NotifyDown: a call that came up is logged and booked; a failed dial had none."""
        self._cancel("sample")
        call, self._call = self._call, None
        self._inbound = 0
        if call is None:
            return
        self.port.link_down()
        connect_s = self.clock.monotonic() - call.mono
        sent, rcvd = call.sent_rcvd()
        if self._ipdown_env:
            with contextlib.suppress(ValueError):
                connect_s, sent, rcvd = from_ip_down_env(self._ipdown_env)
        log.info(linklog.call_ended(connect_s, sent, rcvd, cause))
        self._book(call, connect_s, sent, rcvd, cause)

    async def refute_up(self, iface: str, local: str) -> str:
        """Why netlink contradicts "IFACE is up with LOCAL" ("" when it does not); logged when it does."""
        from pyroute2.netlink.exceptions import NetlinkError

        from link.netwatch import refusal
        try:
            why = refusal(await self._probe(), iface, local, frozenset(self.cfg.demand_placeholders))
        except (OSError, NetlinkError) as e:
            why = f"cannot read {iface} from netlink: {e}"
        if why:
            log.warning(linklog.hook_refused("ip-up", iface, local, why))
        return why

    def new_mail(self) -> bool:
        """More mail waits for the link than the last run of this call left behind."""
        return self.port.summary().queued > self._left_after_run

    # --- the call's numbers, for the policy and status ---------------------------------------

    def usage(self, now: datetime) -> Usage:
        """Today's calls and minutes, the call in progress included (zero without a ledger)."""
        if self.ledger is None:
            return Usage()
        return self.ledger.usage(now, active_since=self._call.start if self._call else None)

    def budget_left(self, now: datetime, calls_per_day: int, minutes_per_day: float) -> dict:
        if self.ledger is None:
            return {"calls": None, "minutes": None}
        calls, minutes = self.ledger.budget_left(now, calls_per_day, minutes_per_day,
                                                 active_since=self._call.start if self._call else None)
        return {"calls": calls, "minutes": minutes}

    @property
    def last_pppd_exit(self) -> dict | None:
        return self.line.last_pppd_exit

    def cost(self, now: datetime) -> dict:
        """Today's cost (finished calls, by the policy's tariff) and the last calls' costs."""
        if self.ledger is None:
            return {"today": 0.0, "calls_today": 0, "recent": []}
        u = self.ledger.usage(now)
        recent = [{"start": c.start, "connect_s": c.connect_s, "cost": c.cost} for c in self.ledger.recent(5)]
        return {"today": u.cost, "calls_today": u.calls, "recent": recent}

    def last_call(self) -> dict | None:
        if self.ledger is None or self.ledger.last_call is None:
            return None
        return asdict(self.ledger.last_call)

    async def close(self) -> None:
        """Stop everything but a hang-up in progress; pppd stopped, the tty released."""
        for name, task in list(self._tasks.items()):
            if name != "hangup":
                task.cancel()
        await self.line.close()
        if self._watch is not None:
            self._watch.close()

    # --- the tasks ---------------------------------------------------------------------------

    async def _dial(self, numbers: tuple[str, ...]) -> None:
        result = await self.line.dial(numbers)
        if result is None:                      # no up command, wait for the interface
            return
        if isinstance(result, DialResult):      # the MTA ages mail by the line's tries
            self.port.line_tried(result.ok or result.placed, result.result)
        else:                                   # SetupBroken: dialling stops, nothing placed
            self.port.line_tried(False, result.cause)
        self._post(result)

    async def _pppd(self) -> None:
        self._post(await self.line.ppp())

    async def _hangup(self, cause: str) -> None:
        dial = self._tasks.get("dial")
        if dial is not None and not dial.done():
            dial.cancel()
            await asyncio.wait({dial})          # its own end is _done()'s to log
        await self.line.hangup(cause)

    async def _run(self, link_up: bool) -> None:
        await self.port.run(link_up)
        self._left_after_run = self.port.summary().queued    # what this run could not send
        self._post(QueueRunDone())

    async def _etrn(self, domains: tuple[str, ...], method: str = "etrn") -> None:
        """ETRN, or ODMR (the port returns once the ISP's push is over)."""
        odmr = method == "odmr"
        replies = await (self.port.odmr(domains) if odmr else self.port.etrn(domains))
        for domain, code, text in replies:
            if odmr:
                log.info(linklog.odmr_reply(domain, code, text))
            else:
                log.info(linklog.etrn_reply(domain, code, text))
        self.last_etrn = {"at": wall_now(self.clock).isoformat(), "method": method,
                          "ok": all(_etrn_ok(c) or (odmr and c == 453) for _, c, _ in replies),
                          "replies": [{"domain": d, "code": c, "text": t} for d, c, t in replies]}
        self._post(EtrnDone("; ".join(f"{c} {d}" for d, c, _ in replies)))

    async def _watch_loop(self) -> None:
        from link import netwatch as nw
        while True:
            try:
                self._watch = self._netwatch_factory()
                async with self._watch as watch:
                    async for ev in watch:
                        if isinstance(ev, nw.IfaceUp):
                            self._post(IfaceUp(ev.ifname, ev.addr, ev.peer))
                        elif isinstance(ev, nw.IfaceDown):
                            self._post(IfaceDown(ev.ifname))
            except OSError as e:
                log.warning(linklog.netwatch_failed(e, NETWATCH_RETRY_S))
                await asyncio.sleep(NETWATCH_RETRY_S)

    async def _sample_loop(self) -> None:
        """While up: byte counters (idle detection) and the ISP's inbound sessions."""
        while True:
            counters = None
            if self._watch is not None:
                with contextlib.suppress(OSError, LinkError):
                    counters = await self._watch.counters()
            if counters is not None and self._call is not None:
                self._call.base = self._call.base or counters
                self._call.last = counters
                self._post(Idle(sum(counters)))
            n = self.port.inbound()
            n = self._inbound if n is None else n       # the MTA cannot say: keep what we knew
            if (n > 0) != (self._inbound > 0):
                self._post(InboundActive() if n > 0 else InboundDone())
            self._inbound = n
            await self.clock.sleep(self.sample_s)

    # --- helpers -------------------------------------------------------------------------------

    def _spawn(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        old = self._tasks.get(name)
        if old is not None and not old.done():
            if name == "hangup":                    # one hang-up at a time is enough
                coro.close()
                return
            old.cancel()
        task = asyncio.create_task(coro, name=f"link-{name}")
        self._tasks[name] = task
        task.add_done_callback(partial(self._done, name))

    def _done(self, name: str, task: asyncio.Task) -> None:
        if self._tasks.get(name) is task:
            del self._tasks[name]
        error = None if task.cancelled() else task.exception()
        if error is not None:
            log.error(linklog.task_failed(name, error), exc_info=error)
        self._wake()

    def _cancel(self, name: str) -> None:
        task = self._tasks.get(name)
        if task is not None:
            task.cancel()

    def _book(self, call: ActiveCall, connect_s: float, sent: int, rcvd: int, cause: str) -> None:
        if self.ledger is None:
            return
        try:
            self.ledger.record_call(call.start, connect_s, sent, rcvd, number=call.number, cause=cause)
        except OSError as e:
            log.error(linklog.accounting_failed(e))



def _etrn_ok(code: int) -> bool:
    return 250 <= code <= 253


async def _probe(cfg) -> View:
    from link.netwatch import probe
    return await probe(cfg.interface, cfg.netns or None)


def _make_netwatch(cfg) -> NetWatch:
    from link.netwatch import NetWatch
    return NetWatch(cfg.interface, netns=cfg.netns or None, placeholders=frozenset(cfg.demand_placeholders))
