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
    mgr.link_up("ppp0", "10.64.0.2", "10.64.0.1")   # the ip-up hook (idempotent)

DESCRIPTION
    Owns the modem (link.modem), pppd (link.ppp), the netlink watcher
    (link.netwatch) and the ledger (link.accounting), and performs what the
    pure cores decide: link.policy says when a call is worth making,
    link.fsm says what to do next.  Events (dial results, pppd's exit, the
    interface going up/down, counters, hook reports, the MTA's runs) are fed
    to the FSM with clock.monotonic(); its actions start tasks whose
    results come back as events, so the loop itself never blocks.

    The policy is asked (should_dial) whenever the FSM is IDLE and a
    deadline passes (the decision's next_at, the FSM's timer), the demand
    changes (demand_changed(): the MTA queued mail) or a `schedule` job
    compiled from the rules (policydriver.compile_jobs) fires; the pure
    core stays the authority, the jobs only wake the loop.  last_dial (for
    the rules' catch-up) is the request time of the last call that came up:
    a rule whose call failed is retried after the FSM's backoff while still
    within the policy's catch-up window.

    Link-up (netlink IfaceUp with a non-placeholder address, or the ip-up
    hook, whichever is first): the FSM asks for ClearHostStatus, RunQueue,
    then SendEtrn for our domains; then the line lingers while the MTA
    holds it (hold()), while the ISP's inbound sessions are active
    (port.inbound_active(), sampled) and until ppp0's byte counters have
    been still for idle_hangup; max_connect ends the call regardless.
    Hang-up: pppd is stopped (SIGTERM, SIGKILL after a grace), then the
    modem's DTR is dropped.  Carrier loss (pppd's exit, ppp0 gone) at any
    step: port.stop_run() defers the transaction in flight without growing
    its backoff, the FSM returns to IDLE and the policy decides the next
    dial.  Failed dials back off (doubling, then a limit after
    max_failed_dials).

THE PORT (what the MTA provides; duck-typed, `link` never imports `edgemail`)
    queue_summary() -> obj with queued, oldest_age_s, urgent  (expensive routes)
    clear_host_status() -> None
    async run_queue() -> None           the call's queue run of expensive routes
    async run_due() -> None             another run on the same call: what is due now
    stop_run() -> None                  link going down: stop cleanly, no backoff grows
    async etrn(domains) -> [obj with domain, code, text]   (code 0: no answer)
    inbound_active() -> int             ISP sessions open on our SMTP listener
    link_down() -> None                 optional: a call that came up has ended

LOG LINES (logger "link")
    link: state=STATE, reason=WHY[, addr=A]
    link: pppd=exited, status=N, cause=WORD
    link: etrn=DOMAIN, reply=CODE TEXT
    link: call=ended, connect=Ns, sent=N, rcvd=N, cause=WHY

MODULES
    LinkManager is this module (the loop, feeding the FSM and spawning its
    actions, the runner's LinkPort, the hooks' reports, operator commands)
    and two mixins, each with its own page: link.calls (CallDriver: dial,
    pppd, hang-up, queue run and ETRN, netlink, sampling, the call's record)
    and link.policydriver (PolicyDriver: asking the policy, the rules'
    `schedule` jobs, replace_policy, status, explain).

NEVER
    Decides by itself (the cores do), imports edgemail, or loses a message:
    it only ever asks the MTA to run, stop a run or ETRN.

FAILURES
    Driver failures become FSM events (DialResult(False, result),
    PppdExited(code)); a failing port call is logged and reported as done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

from link import linklog
from link import fsm as F
from link import transitions as T
from link.calls import CallDriver
from link.errors import LinkError
from link.policy import Decision, Policy
from link.policydriver import PolicyDriver, QueueSummary
from link.ppp import ExternalLink, Pppd, exit_cause

__all__ = ["LinkManager", "QueueSummary", "fsm_config"]

log = logging.getLogger("link")


def fsm_config(cfg, policy: Policy, etrn_domains: tuple[str, ...], **overrides) -> F.FsmConfig:
    """The FSM's settings from [link] and the policy's settings."""
    s = policy.settings
    numbers = max(len(cfg.numbers), 1)
    per_try = cfg.dial_timeout + 2 * cfg.command_timeout + cfg.dtr_drop
    backoffs = sum(cfg.dial_backoff * 2 ** k for k in range(max(cfg.dial_retries - 1, 0)))
    dial_timeout = numbers * max(cfg.dial_retries, 1) * per_try + backoffs + 10.0
    base = dict(etrn_domains=tuple(etrn_domains), idle_hangup_s=s.idle_hangup_s,
                max_connect_s=s.max_connect_s, dial_timeout_s=dial_timeout)
    return F.FsmConfig(**{**base, **overrides})


class LinkManager(CallDriver, PolicyDriver):
    """The link manager (this module's page); the call's drivers are CallDriver's
    (link.calls), the policy's side is PolicyDriver's (link.policydriver)."""

    def __init__(self, cfg, policy: Policy, *, clock, port, etrn_domains: tuple[str, ...] = (),
                 ledger=None, modem=None, pppd: Pppd | None = None, netwatch_factory: Callable | None = None,
                 sample_s: float = 1.0, fsm_overrides: dict | None = None, scheduler=None) -> None:
        self.cfg = cfg
        self.policy = policy
        self.clock = clock
        self.port = port
        self.mode = cfg.mode
        self.ledger = ledger
        self.sample_s = sample_s
        domains = tuple(cfg.etrn_domains) or tuple(etrn_domains)
        self.fsm = F.LinkFSM(fsm_config(cfg, policy, domains if cfg.etrn_host else (),
                                        **(fsm_overrides or {})))
        self.modem = modem if modem is not None or self.mode != "modem" else _make_modem(cfg)
        self.pppd = pppd if pppd is not None else Pppd(cfg.pppd, cfg.pppd_args)
        self.external = ExternalLink(cfg.up_command, cfg.down_command)
        self._netwatch_factory = netwatch_factory or (lambda: _make_netwatch(cfg))
        self._scheduler = scheduler
        self._watch = None
        self._wake = asyncio.Event()
        self._up = asyncio.Event()
        self._line = asyncio.Lock()         # dial and hang-up never overlap on the tty
        self._tasks: dict[str, asyncio.Task] = {}
        self._dirty = True                  # ask the policy at the next pass
        self._more = False                  # mail queued while the line is up: run again (MailWaiting)
        self._left_after_run = 0            # due mail the last run of this call did not send
        self._policy_at: float | None = None
        self._sched_at: float | None = None
        self._jobs_compiled = False
        self.decision: Decision | None = None
        self.last_dial: datetime | None = None      # request time of the last call that came up
        self._dial_requested: datetime | None = None
        self._call: dict | None = None               # the call in progress
        self._ipdown_env: dict | None = None
        self._held: int | None = None                # tty fd kept across the hand-over to pppd
        self._inbound = 0
        self.last_etrn: dict | None = None
        self.last_pppd_exit: dict | None = None
        self.log: list[str] = []                     # recent state lines, for status/explain

    # --- the runner's LinkPort ------------------------------------------------------

    @property
    def state(self) -> str:
        return self.fsm.state.value

    @contextlib.asynccontextmanager
    async def hold(self, reason: str):
        self._post(T.Hold(reason))
        try:
            yield
        finally:
            self._post(T.Release(reason))

    async def wait_up(self, timeout: float) -> bool:
        if self.fsm.state is T.LinkState.UP:
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
        self._dirty = True
        self._more = True
        self._wake.set()

    def link_up(self, iface: str, local: str = "", remote: str = "", **_ignored) -> dict:
        """The ip-up hook (idempotent: netlink usually told us first)."""
        if iface != self.cfg.interface:
            return {"ignored": f"interface {iface} is not {self.cfg.interface}"}
        before = self.state
        self._post(T.IfaceUp(iface, local, remote))
        return {"state": self.state, "changed": before != self.state}

    def link_down(self, iface: str, env: dict | None = None, **_ignored) -> dict:
        """The ip-down hook; env may carry CONNECT_TIME, BYTES_SENT, BYTES_RCVD."""
        if iface != self.cfg.interface:
            return {"ignored": f"interface {iface} is not {self.cfg.interface}"}
        self._ipdown_env = dict(env or {})
        before = self.state
        self._post(T.IfaceDown(iface))
        return {"state": self.state, "changed": before != self.state}

    def dial_now(self, reason: str = "operator") -> dict:
        """Operator dial (`edgemail link dial`): dials from IDLE, whatever the policy."""
        if self.fsm.state is not T.LinkState.IDLE:
            return {"dialing": False, "state": self.state, "why": f"link is {self.state}"}
        self._dial_requested = self._now_dt()
        self._post(T.DialRequested(reason))
        return {"dialing": True, "state": self.state}

    def hangup_now(self) -> dict:
        """Operator hang-up: stop pppd; its exit ends the call as usual."""
        if self.fsm.state not in (T.LinkState.UP, T.LinkState.CONNECTING, T.LinkState.DIALING):
            return {"hangup": False, "state": self.state}
        self._spawn("hangup", self._do_hangup("operator"))
        return {"hangup": True, "state": self.state}

    # --- the loop ---------------------------------------------------------------------

    async def run(self) -> None:
        """Run until cancelled; on the way out pppd is stopped and the modem hung up."""
        self._spawn("watch", self._watch_loop())
        self._schedule_rules()
        try:
            while True:
                self._tick()
                self._wake.clear()
                timeout = self._next_wake()
                # asyncio.timeout, not wait_for: 3.11's wait_for returns the
                # result when the wake-up and a cancel arrive together, so
                # the cancel (shutdown, the test's stop) was lost and run()
                # then slept for ever with no deadline.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
        finally:
            await self.close()

    async def close(self) -> None:
        for name, task in list(self._tasks.items()):
            if name not in ("hangup",):
                task.cancel()
        if self.pppd.running:
            await self.pppd.stop()
        self._release_tty()
        if self.modem is not None:
            with contextlib.suppress(LinkError, OSError):
                if self.modem.is_open:
                    await self.modem.close()
        if self._watch is not None:
            self._watch.close()

    def _tick(self) -> None:
        now = self.clock.monotonic()
        deadline = self.fsm.deadline()
        if deadline is not None and now >= deadline:
            self._feed(T.Timer())
        if self._scheduler is not None:
            self._scheduler.run_pending()
        if self._policy_at is not None and now >= self._policy_at:
            self._dirty = True
        if self._dirty and self.fsm.state is T.LinkState.IDLE and "hangup" not in self._tasks:
            self._ask_policy()
        if self._more and self.fsm.state is T.LinkState.UP and self.fsm.phase is T.Phase.LINGER:
            self._more = False               # kept while a run is under way: asked again after it
            if self._summary().queued > self._left_after_run:   # new mail, not what a run left
                self._post(T.MailWaiting())

    def _next_wake(self) -> float | None:
        now = self.clock.monotonic()
        times = [t for t in (self.fsm.deadline(), self._policy_at) if t is not None]
        if self._scheduler is not None and self._scheduler.idle_seconds is not None:
            times.append(now + max(self._scheduler.idle_seconds, 0.0))
        if not times:
            return None
        return max(min(times) - now, 0.0) + 0.001

    # --- feeding the FSM and performing its actions ------------------------------------

    def _post(self, event) -> None:
        self._feed(event)
        self._wake.set()

    def _feed(self, event) -> None:
        before = self.fsm.state
        actions = self.fsm.handle(event, self.clock.monotonic())
        if self.fsm.state is not before:
            self._log_state(event, actions)
            if self.fsm.state is T.LinkState.IDLE:
                self._dirty = True
        for action in actions:
            self._perform(action)

    def _log_state(self, event, actions) -> None:
        causes = [a.cause for a in actions if isinstance(a, T.Hangup)]
        reason = causes[0] if causes and self.fsm.state is T.LinkState.HANGING_UP else _reason(event)
        log.info(linklog.state(self.fsm.state.name, reason))
        self.log = (self.log + [linklog.state(self.fsm.state.name, reason)])[-20:]

    def _perform(self, a) -> None:
        if isinstance(a, T.Dial):
            self._spawn("dial", self._do_dial(a))
        elif isinstance(a, T.StartPppd):
            if self.mode == "modem":
                self._spawn("pppd", self._do_pppd())
        elif isinstance(a, T.ClearHostStatus):
            self._port_call("clear_host_status")
        elif isinstance(a, T.RunQueue):
            self._spawn("run", self._do_run(a.link_up))
        elif isinstance(a, T.SendEtrn):
            self._spawn("etrn", self._do_etrn(a.domains))
        elif isinstance(a, T.StopRun):
            log.info(linklog.stop_run(a.cause))
            self._port_call("stop_run")
        elif isinstance(a, T.Hangup):
            self._spawn("hangup", self._do_hangup(a.cause))
        elif isinstance(a, T.NotifyUp):
            self._on_up(a)
        elif isinstance(a, T.NotifyDown):
            self._on_down(a)

    def _spawn(self, name: str, coro) -> None:
        old = self._tasks.get(name)
        if old is not None and not old.done():
            if name == "hangup":                    # one hang-up at a time is enough
                coro.close()
                return
            old.cancel()
        task = asyncio.create_task(coro, name=f"link-{name}")
        self._tasks[name] = task
        task.add_done_callback(lambda t, n=name: self._done(n, t))

    def _done(self, name: str, task: asyncio.Task) -> None:
        if self._tasks.get(name) is task:
            del self._tasks[name]
        if not task.cancelled() and task.exception() is not None:
            log.error(linklog.task_failed(name, task.exception()))
        self._wake.set()

    def _port_call(self, name: str) -> None:
        try:
            getattr(self.port, name)()
        except Exception as e:
            log.warning(linklog.port_failed(name, e))


def _reason(event) -> str:
    if isinstance(event, T.DialRequested):
        return event.reason
    if isinstance(event, T.DialResult):
        return event.result
    if isinstance(event, (T.CarrierLost,)):
        return event.cause
    if isinstance(event, T.PppdExited):
        return f"pppd-exit({event.code},{exit_cause(event.code)})"
    if isinstance(event, T.IfaceUp):
        return f"{event.ifname}-up({event.addr})"
    if isinstance(event, T.IfaceDown):
        return f"{event.ifname}-down"
    if isinstance(event, T.Timer):
        return "timer"
    return type(event).__name__


def _make_modem(cfg):
    from link.modem import Modem
    return Modem(cfg.device, speed=cfg.speed, init=tuple(cfg.init), numbers=tuple(cfg.numbers),
                 retries=cfg.dial_retries, dial_timeout=cfg.dial_timeout, command_timeout=cfg.command_timeout,
                 backoff_s=cfg.dial_backoff, guard_s=cfg.escape_guard, dtr_drop_s=cfg.dtr_drop)


def _make_netwatch(cfg):
    from link.netwatch import NetWatch
    return NetWatch(cfg.interface, netns=cfg.netns or None, placeholders=frozenset(cfg.demand_placeholders))
