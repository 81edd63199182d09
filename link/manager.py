"""manager.py - the link manager: runs link.fsm against a clock (DRIVER).

NAME
    manager - LinkManager(cfg.link, policy, clock=, port=): run(); the
    runner's LinkPort (state, hold(reason), wait_up(timeout)); hook reports
    (link_up / link_down); operator dial_now() / hangup_now(); status(); explain()

SYNOPSIS
    mgr = LinkManager(cfg.link, policy.parse(text), clock=SystemClock(), port=mta,
                      etrn_domains=cfg.local_domains)
    task = asyncio.create_task(mgr.run())
    mgr.demand_changed()                  # the MTA queued or delivered something
    async with mgr.hold("queue-run"): ... # keep the line up while inside
    await mgr.link_up("ppp0", "10.64.0.2", "10.64.0.1")   # the ip-up hook (checked, idempotent)
    mgr.resume("reload")                  # a reload: dialling may start again after a setup error

DESCRIPTION
    The loop that feeds the FSM (link.fsm) and hands its actions to the
    parts that do them.  It owns the FSM, the MTA's port (link.port.Port:
    `port` may be set after construction, as the daemon does) and two
    collaborators built from its arguments:

    calls (link.calls.CallDriver)    the line (link.line.Line: the modem
        and pppd), netwatch and the ledger: performs the call actions (Dial, StartPppd, ClearHostStatus,
        RunQueue, SendEtrn, StopRun, Hangup) as tasks, reports their results
        as events through the manager's post(), and keeps the call's record
        (up(now) at NotifyUp, down(cause) at NotifyDown).
    policy_driver (link.policydriver.PolicyDriver)    the dial policy: says
        when it is due to be asked, and decides from the Demand the manager
        builds (the port's queue summary, today's calls and minutes from
        calls.usage(), its own last_dial).

    Events (dial results, pppd's exit, the interface going up/down, counters,
    hook reports, the MTA's runs) are fed to the FSM with clock.monotonic();
    the loop itself never blocks.  The policy is asked whenever the FSM is
    IDLE, no hang-up is in progress and the policy driver is due (the demand
    changed: demand_changed(); the line went idle; the decision's next_at
    or a rule's `schedule` job came).  A decision to dial posts
    DialRequested(reason).

    Link-up (netlink IfaceUp with a non-placeholder address, or the ip-up
    hook once netlink confirms its claim: calls.refute_up, whichever is
    first): the FSM asks for ClearHostStatus, RunQueue,
    then SendEtrn for our domains; then the line lingers while the MTA
    holds it (hold()), while the ISP's inbound sessions are active
    (sampled by calls) and until ppp0's byte counters have been still for
    idle_hangup; max_connect ends the call regardless.  Mail queued while
    the line lingers (demand_changed() and calls.new_mail()) is fed as
    MailWaiting: it goes out on this call.  Carrier loss at any step:
    StopRun defers the transaction in flight without growing its backoff,
    the FSM returns to IDLE and the policy decides the next dial.  Failed
    dials back off (doubling, then a limit after max_failed_dials).
    Setup errors (link.fsm: SetupBroken) stop dialling instead: the policy
    is still asked, and a dial it wants is logged as held (link:
    dial=held), until resume() (the daemon's reload) or the operator's
    dial_now(), which is a try after a fix.  status(), explain() and the
    daemon's STATUS= say so.

THE PORT
    What the MTA provides is link.port.MtaPort (queue_summary,
    clear_host_status, run_queue, run_due, stop_run, etrn, inbound_active,
    optional link_down); every call is guarded there.

UNIT POLLS
    With chargehup and unit_poll, link.unitpoll.UnitPolls says when the quiet
    line's last ETRN in its paid unit is due (PollDue to the FSM, which sends
    it) and the poll it stood in for (Demand.last_poll).

LOG LINES
    link: state=STATE, reason=WHY (here); the others are the collaborators'
    (link.linklog lists them all).

NEVER
    Decides by itself (the cores do), imports edgemail, or loses a message:
    it only ever asks the MTA to run, stop a run or ETRN.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from link import linklog, report
from link.accounting import Ledger
from link.calls import CallDriver, Watcher
from link.fsm import LinkFSM
from link.fsmconfig import fsm_config, hangup_plan
from link.line import Line
from link.policy import Demand, Policy
from link.policydriver import PolicyDriver
from link.port import Clock, MtaPort, Port, Summary, wall_now
from link.ppp import Pppd, exit_cause
from link.unitpoll import UnitPolls
from link.transitions import (Action, CarrierLost, DialRequested, DialResult, Hangup, Hold, IfaceDown, IfaceUp,
                              LinkEvent, LinkState, MailWaiting, NotifyDown, NotifyUp, Phase, PppdExited,
                              Release, Resume, ScheduleTimer, SetupBroken, Timer)

if TYPE_CHECKING:
    import schedule

    from link.calls import Probe
    from link.modem import Modem

__all__ = ["LinkManager", "fsm_config"]

log = logging.getLogger("link")
#: state lines kept for status and error messages
RECENT = 20


class LinkManager:
    """The link manager (the module's page)."""

    def __init__(self, cfg, policy: Policy, *, clock: Clock, port: MtaPort | None,
                 etrn_domains: tuple[str, ...] = (), ledger: Ledger | None = None, modem: Modem | None = None,
                 pppd: Pppd | None = None, netwatch_factory: Callable[[], Watcher] | None = None,
                 sample_s: float = 1.0, fsm_overrides: dict | None = None,
                 scheduler: schedule.Scheduler | None = None, probe: Probe | None = None) -> None:
        self.cfg = cfg
        self.clock = clock
        self.mode = cfg.mode
        odmr = getattr(cfg, "odmr", None)
        domains = (odmr and tuple(odmr.domains)) or tuple(cfg.etrn_domains) or tuple(etrn_domains)
        asks = bool(cfg.etrn_host or odmr)
        self.fsm = LinkFSM(fsm_config(cfg, policy, domains if asks else (),
                                      **{"hangup_plan": hangup_plan(policy, clock), **(fsm_overrides or {})}))
        self._port = Port(port)
        self._wake = asyncio.Event()
        self._up = asyncio.Event()
        self._more = False                  # mail queued while the line is up: run again (MailWaiting)
        self._held = ""                     # the last policy reason a stop held back (logged once)
        self.recent: list[str] = []         #: the last state lines, for error messages
        self.calls = CallDriver(cfg, clock=clock, port=self._port, post=self._post, wake=self._wake.set,
                                line=Line(cfg, modem=modem, pppd=pppd), ledger=ledger,
                                netwatch_factory=netwatch_factory, sample_s=sample_s, probe=probe)
        self.policy_driver = PolicyDriver(policy, clock=clock, scheduler=scheduler, on_rule=self.demand_changed)
        self.unit_polls = UnitPolls(clock)     # one more ETRN in a paid unit (unit_poll)

    @property
    def port(self) -> MtaPort | None:
        return self._port.target

    @port.setter
    def port(self, port: MtaPort | None) -> None:
        """The daemon wires the MTA in once it exists (daemon/mtaport.py Link)."""
        self._port.target = port

    @property
    def policy(self) -> Policy:
        return self.policy_driver.policy

    # --- the runner's LinkPort ------------------------------------------------------

    @property
    def state(self) -> str:
        return self.fsm.state.value

    @contextlib.asynccontextmanager
    async def hold(self, reason: str) -> AsyncIterator[None]:
        self._post(Hold(reason))
        try:
            yield
        finally:
            self._post(Release(reason))

    async def wait_up(self, timeout: float) -> bool:
        if self.fsm.state is LinkState.UP:
            return True
        try:
            async with asyncio.timeout(timeout):        # not wait_for: it can swallow a cancel (3.11)
                await self._up.wait()
        except TimeoutError:
            return False
        return True

    # --- reports from outside ---------------------------------------------------------

    def demand_changed(self) -> None:
        """The queue changed (mail queued, delivered): ask the policy again,
        or, with the line up, see whether mail waits for this call."""
        self.policy_driver.changed()
        self._more = True
        self._wake.set()

    async def link_up(self, iface: str, local: str = "", remote: str = "", **_ignored) -> dict:
        """The ip-up hook (idempotent: netlink usually told us first), acted
        on only once netlink confirms the interface and its address."""
        if iface != self.cfg.interface:
            return {"ignored": f"interface {iface} is not {self.cfg.interface}"}
        why = await self.calls.refute_up(iface, local)
        if why:
            return {"ignored": f"{why}: netlink does not confirm the hook", "state": self.state}
        before = self.state
        self._post(IfaceUp(iface, local, remote))
        return {"state": self.state, "changed": before != self.state}

    def link_down(self, iface: str, env: dict | None = None, **_ignored) -> dict:
        """The ip-down hook; env may carry CONNECT_TIME, BYTES_SENT, BYTES_RCVD."""
        if iface != self.cfg.interface:
            return {"ignored": f"interface {iface} is not {self.cfg.interface}"}
        self.calls.ip_down(env)
        before = self.state
        self._post(IfaceDown(iface))
        return {"state": self.state, "changed": before != self.state}

    def dial_now(self, reason: str = "operator") -> dict:
        """Operator dial (`edgemail link dial`): dials from IDLE, whatever the policy."""
        if self.fsm.state is not LinkState.IDLE:
            return {"dialing": False, "state": self.state, "why": f"link is {self.state}"}
        if self.fsm.stopped is not None:
            log.info(linklog.dialing_resumed(reason))
        self.policy_driver.requested(wall_now(self.clock))
        self._post(DialRequested(reason, force=True))
        return {"dialing": True, "state": self.state}

    def resume(self, reason: str) -> bool:
        """The setup may be fixed (a reload): dialling stopped by a setup error may start again."""
        if self.fsm.stopped is None:
            return False
        log.info(linklog.dialing_resumed(reason))
        self._post(Resume(reason))
        self.demand_changed()
        return True

    def hangup_now(self) -> dict:
        """Operator hang-up: stop pppd; its exit ends the call as usual."""
        if self.fsm.state not in (LinkState.UP, LinkState.CONNECTING, LinkState.DIALING):
            return {"hangup": False, "state": self.state}
        self.calls.hangup("operator")
        return {"hangup": True, "state": self.state}

    def replace_policy(self, policy: Policy) -> None:
        """A reload: from now on the new policy's rules and settings (idle
        hang-up, longest call); a call in progress keeps its line."""
        self.policy_driver.replace(policy)
        if self.calls.ledger is not None:
            self.calls.ledger.tariff = policy.tariff
        s = policy.settings
        self.fsm.config = replace(self.fsm.config, idle_hangup_s=s.idle_hangup_s, max_connect_s=s.max_connect_s,
                                  hangup_plan=hangup_plan(policy, self.clock),
                                  backoff_base_s=max(s.failed_dial_backoff_s, 1.0))
        self.demand_changed()

    # --- the loop ---------------------------------------------------------------------

    async def run(self) -> None:
        """Run until cancelled; on the way out pppd is stopped and the modem hung up."""
        self.calls.start()
        self.policy_driver.start()
        try:
            while True:
                self._tick()
                self._wake.clear()
                await self._until_woken(self._next_wake())
        finally:
            await self.close()

    async def _until_woken(self, timeout: float | None) -> None:
        """Until an event is posted, or `timeout` has passed on the clock (None: no deadline).

        asyncio.wait, not wait_for: 3.11's wait_for returns the result when
        the wake-up and a cancel arrive together, so the cancel (shutdown,
        the test's stop) was lost and run() then slept for ever."""
        waits: list[asyncio.Future] = [asyncio.ensure_future(self._wake.wait())]
        if timeout is not None:
            waits.append(asyncio.ensure_future(self.clock.sleep(timeout)))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def close(self) -> None:
        await self.calls.close()

    def _tick(self) -> None:
        deadline = self.fsm.deadline()
        if deadline is not None and self.clock.monotonic() >= deadline:
            self._feed(Timer())
        if self.policy_driver.due() and self.fsm.state is LinkState.IDLE and not self.calls.hanging_up:
            now = wall_now(self.clock)
            decision = self.policy_driver.ask(now, self.demand(now))
            if decision.dial and self.fsm.stopped is not None:
                if decision.reason != self._held:           # once per reason, not per ask
                    log.warning(linklog.dial_held(decision.reason, self.fsm.stopped.cause))
                self._held = decision.reason
            elif decision.dial:
                self._post(DialRequested(decision.reason))
        poll = self.unit_polls.tick(self.fsm, self.policy, self.demand)
        if poll is not None:
            self._post(poll)
        if self._more and self.fsm.state is LinkState.UP and self.fsm.phase is Phase.LINGER:
            self._more = False               # kept while a run is under way: asked again after it
            if self.calls.new_mail():         # new mail, not what a run left
                self._post(MailWaiting())

    def _next_wake(self) -> float | None:
        times = [t for t in (self.fsm.deadline(), self.policy_driver.wake_at(), self.unit_polls.wake_at())
                 if t is not None]
        if not times:
            return None
        return max(min(times) - self.clock.monotonic(), 0.0) + 0.001

    # --- feeding the FSM and handing out its actions ------------------------------------

    def _post(self, event: LinkEvent) -> None:
        self._feed(event)
        self._wake.set()

    def _feed(self, event: LinkEvent) -> None:
        before = self.fsm.state
        actions = self.fsm.handle(event, self.clock.monotonic())
        if self.fsm.state is not before:
            self._log_state(event, actions)
            if self.fsm.state is LinkState.IDLE:
                self.policy_driver.changed()
        if isinstance(event, SetupBroken) and self.fsm.stopped is event:
            log.error(linklog.dialing_stopped(event.cause, event.fix))
            self._held = ""                             # this stop's first held dial is said
        for action in actions:
            self._perform(action)

    def _log_state(self, event: LinkEvent, actions: list[Action]) -> None:
        causes = [a.cause for a in actions if isinstance(a, Hangup)]
        reason = causes[0] if causes and self.fsm.state is LinkState.HANGING_UP else _reason(event)
        log.info(linklog.state(self.fsm.state.name, reason))
        self.recent = (self.recent + [linklog.state(self.fsm.state.name, reason)])[-RECENT:]

    def _perform(self, action: Action) -> None:
        if isinstance(action, NotifyUp):
            now = wall_now(self.clock)
            self.policy_driver.call_up(now)
            self.calls.up(now)
            self._up.set()
        elif isinstance(action, NotifyDown):
            self._up.clear()
            self.policy_driver.changed()
            self.calls.down(action.cause)
        elif not isinstance(action, ScheduleTimer):     # the loop reads fsm.deadline() itself
            self.calls.perform(action)

    # --- what the policy is told, status --------------------------------------------------

    def big_mail_wait(self, size: int, urgent: bool) -> str:
        """The runner asks: why a message this big may not go now ("" : it may; link.bigmail)."""
        return self.policy_driver.big_mail_wait(size, urgent)

    def queue(self) -> Summary:
        """What waits for the link, as the MTA's port says (empty when it cannot say)."""
        return self._port.summary()

    def demand(self, now: datetime, queue: Summary | None = None) -> Demand:
        """What the policy decides on: the queue, today's calls and minutes, the last dial."""
        q = queue if queue is not None else self._port.summary()
        u = self.calls.usage(now)
        return Demand(queued=q.queued, oldest_age_s=q.oldest_age_s, urgent=q.urgent,
                      calls_today=u.calls, minutes_today=u.minutes, last_dial=self.policy_driver.last_dial,
                      last_poll=self.unit_polls.last_poll)

    def status(self) -> dict:
        return report.status(self)

    def explain(self) -> str:
        return report.explain(self)


def _reason(event: LinkEvent) -> str:
    if isinstance(event, DialRequested):
        return event.reason
    if isinstance(event, DialResult):
        return event.result
    if isinstance(event, (CarrierLost, SetupBroken)):
        return event.cause
    if isinstance(event, PppdExited):
        return f"pppd-exit({event.code},{exit_cause(event.code)})"
    if isinstance(event, IfaceUp):
        return f"{event.ifname}-up({event.addr})"
    if isinstance(event, IfaceDown):
        return f"{event.ifname}-down"
    if isinstance(event, Timer):
        return "timer"
    return type(event).__name__
