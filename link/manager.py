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
    compiled from the rules (policy.compile_jobs) fires; the pure core stays
    the authority, the jobs only wake the loop.  last_dial (for the rules'
    catch-up) is the request time of the last call that came up: a rule
    whose call failed is retried after the FSM's backoff while still within
    the policy's catch-up window.

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
    async run_queue() -> None           queue run of expensive routes
    stop_run() -> None                  link going down: stop cleanly, no backoff grows
    async etrn(domains) -> [obj with domain, code, text]   (code 0: no answer)
    inbound_active() -> int             ISP sessions open on our SMTP listener
    link_down() -> None                 optional: a call that came up has ended

LOG LINES (logger "link")
    link: state=STATE, reason=WHY[, addr=A]
    link: pppd=exited, status=N, cause=WORD
    link: etrn=DOMAIN, reply=CODE TEXT
    link: call=ended, connect=Ns, sent=N, rcvd=N, cause=WHY

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
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone

from link import fsm as F
from link.errors import DialFailed, LinkError
from link.policy import Demand, Decision, Policy, compile_jobs
from link.ppp import CARRIER_LOSS, ExternalLink, Pppd, exit_cause, hold_open, release

log = logging.getLogger("link")
UTC = timezone.utc


@dataclass(frozen=True)
class QueueSummary:
    queued: int = 0               #: messages waiting for the link (expensive routes)
    oldest_age_s: float = 0.0
    urgent: int = 0


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


class LinkManager:
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
        self._post(F.Hold(reason))
        try:
            yield
        finally:
            self._post(F.Release(reason))

    async def wait_up(self, timeout: float) -> bool:
        if self.fsm.state is F.LinkState.UP:
            return True
        try:
            async with asyncio.timeout(timeout):        # not wait_for: it can swallow a cancel (3.11)
                await self._up.wait()
        except TimeoutError:
            return False
        return True

    # --- reports from outside ---------------------------------------------------------

    def demand_changed(self) -> None:
        """The queue changed (mail queued, delivered): ask the policy again."""
        self._dirty = True
        self._wake.set()

    def link_up(self, iface: str, local: str = "", remote: str = "", **_ignored) -> dict:
        """The ip-up hook (idempotent: netlink usually told us first)."""
        if iface != self.cfg.interface:
            return {"ignored": f"interface {iface} is not {self.cfg.interface}"}
        before = self.state
        self._post(F.IfaceUp(iface, local, remote))
        return {"state": self.state, "changed": before != self.state}

    def link_down(self, iface: str, env: dict | None = None, **_ignored) -> dict:
        """The ip-down hook; env may carry CONNECT_TIME, BYTES_SENT, BYTES_RCVD."""
        if iface != self.cfg.interface:
            return {"ignored": f"interface {iface} is not {self.cfg.interface}"}
        self._ipdown_env = dict(env or {})
        before = self.state
        self._post(F.IfaceDown(iface))
        return {"state": self.state, "changed": before != self.state}

    def dial_now(self, reason: str = "operator") -> dict:
        """Operator dial (`edgemail link dial`): dials from IDLE, whatever the policy."""
        if self.fsm.state is not F.LinkState.IDLE:
            return {"dialing": False, "state": self.state, "why": f"link is {self.state}"}
        self._dial_requested = self._now_dt()
        self._post(F.DialRequested(reason))
        return {"dialing": True, "state": self.state}

    def hangup_now(self) -> dict:
        """Operator hang-up: stop pppd; its exit ends the call as usual."""
        if self.fsm.state not in (F.LinkState.UP, F.LinkState.CONNECTING, F.LinkState.DIALING):
            return {"hangup": False, "state": self.state}
        self._spawn("hangup", self._do_hangup("operator"))
        return {"hangup": True, "state": self.state}

    def replace_policy(self, policy: Policy) -> None:
        """A reload: from now on the new policy's rules and settings (idle
        hang-up, longest call); a call in progress keeps its line."""
        self.policy = policy
        s = policy.settings
        self.fsm.config = replace(self.fsm.config, idle_hangup_s=s.idle_hangup_s,
                                  max_connect_s=s.max_connect_s)
        if self._jobs_compiled:          # running: the old rules' jobs go, the new ones come
            self._schedule_rules()
        self.demand_changed()

    def _schedule_rules(self) -> None:
        """The policy's rules as `schedule` jobs that wake the loop (the pure core decides)."""
        if self._scheduler is None:
            return
        self._scheduler.clear()
        compile_jobs(self.policy, self._scheduler, lambda rule: self.demand_changed(), now=self._now_dt)
        self._jobs_compiled = True

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
            self._feed(F.Timer())
        if self._scheduler is not None:
            self._scheduler.run_pending()
        if self._policy_at is not None and now >= self._policy_at:
            self._dirty = True
        if self._dirty and self.fsm.state is F.LinkState.IDLE and "hangup" not in self._tasks:
            self._ask_policy()

    def _next_wake(self) -> float | None:
        now = self.clock.monotonic()
        times = [t for t in (self.fsm.deadline(), self._policy_at) if t is not None]
        if self._scheduler is not None and self._scheduler.idle_seconds is not None:
            times.append(now + max(self._scheduler.idle_seconds, 0.0))
        if not times:
            return None
        return max(min(times) - now, 0.0) + 0.001

    def _ask_policy(self) -> None:
        self._dirty = False
        now = self._now_dt()
        d = self.policy.should_dial(now, self.demand(now))
        self.decision = d
        self._policy_at = None
        if d.dial:
            self._dial_requested = now
            self._post(F.DialRequested(d.reason))
        elif d.next_at is not None:
            self._policy_at = self.clock.monotonic() + max((d.next_at - now).total_seconds(), 0.0)

    def demand(self, now: datetime | None = None) -> Demand:
        now = now or self._now_dt()
        q = self._summary()
        calls, minutes = 0, 0.0
        if self.ledger is not None:
            u = self.ledger.usage(now, active_since=self._call["start"] if self._call else None)
            calls, minutes = u.calls, u.minutes
        return Demand(queued=q.queued, oldest_age_s=q.oldest_age_s, urgent=q.urgent,
                      calls_today=calls, minutes_today=minutes, last_dial=self.last_dial)

    def _summary(self):
        try:
            return self.port.queue_summary()
        except Exception as e:                       # the MTA's problem must not stop the line
            log.warning("link: queue_summary=failed, error=%s", e)
            return QueueSummary()

    # --- feeding the FSM and performing its actions ------------------------------------

    def _post(self, event) -> None:
        self._feed(event)
        self._wake.set()

    def _feed(self, event) -> None:
        before = self.fsm.state
        actions = self.fsm.handle(event, self.clock.monotonic())
        if self.fsm.state is not before:
            self._log_state(event, actions)
            if self.fsm.state is F.LinkState.IDLE:
                self._dirty = True
        for action in actions:
            self._perform(action)

    def _log_state(self, event, actions) -> None:
        causes = [a.cause for a in actions if isinstance(a, F.Hangup)]
        reason = causes[0] if causes and self.fsm.state is F.LinkState.HANGING_UP else _reason(event)
        line = f"link: state={self.fsm.state.name}, reason={reason}"
        log.info("%s", line)
        self.log = (self.log + [line])[-20:]

    def _perform(self, a) -> None:
        if isinstance(a, F.Dial):
            self._spawn("dial", self._do_dial(a))
        elif isinstance(a, F.StartPppd):
            if self.mode == "modem":
                self._spawn("pppd", self._do_pppd())
        elif isinstance(a, F.ClearHostStatus):
            self._port_call("clear_host_status")
        elif isinstance(a, F.RunQueue):
            self._spawn("run", self._do_run())
        elif isinstance(a, F.SendEtrn):
            self._spawn("etrn", self._do_etrn(a.domains))
        elif isinstance(a, F.StopRun):
            log.info("link: stop_run=%s", a.cause)
            self._port_call("stop_run")
        elif isinstance(a, F.Hangup):
            self._spawn("hangup", self._do_hangup(a.cause))
        elif isinstance(a, F.NotifyUp):
            self._on_up(a)
        elif isinstance(a, F.NotifyDown):
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
            log.error("link: task=%s, error=%r", name, task.exception())
        self._wake.set()

    def _port_call(self, name: str) -> None:
        try:
            getattr(self.port, name)()
        except Exception as e:
            log.warning("link: %s=failed, error=%s", name, e)

    # --- the drivers ----------------------------------------------------------------------

    async def _do_dial(self, a: F.Dial) -> None:
        async with self._line:
            if self.mode == "external":
                try:
                    code = await self.external.up()
                except LinkError as e:
                    log.warning("link: up_command=failed, error=%s", e)
                    code = -1
                if code not in (None, 0):
                    self._post(F.DialResult(False, f"up_command exit {code}"))
                elif code == 0:
                    self._post(F.DialResult(True, "up_command"))
                return                              # no command: wait for the interface
            try:
                if not self.modem.is_open:
                    await self.modem.open()
                call = await self.modem.dial(a.numbers or None)
                self._release_tty()
                self._held = hold_open(self.modem.device)
                self.device = await self.modem.hand_over()
                self._number = call.number
            except DialFailed as e:
                self._post(F.DialResult(False, e.result))
                return
            except (LinkError, OSError) as e:
                log.warning("link: dial=failed, error=%s", e)
                with contextlib.suppress(LinkError, OSError):
                    await self.modem.close()
                self._post(F.DialResult(False, "LINK-LOST"))
                return
        self._post(F.DialResult(True, "CONNECT"))

    async def _do_pppd(self) -> None:
        try:
            await self.pppd.start(self.device)
        except LinkError as e:
            log.error("link: pppd=failed, error=%s", e)
            self._post(F.PppdExited(-1))
            return
        code = await self.pppd.wait()
        self._release_tty()
        cause = exit_cause(code)
        self.last_pppd_exit = {"status": code, "cause": cause, "carrier_loss": code in CARRIER_LOSS}
        log.info("link: pppd=exited, status=%d, cause=%s", code, cause)
        self._post(F.PppdExited(code))

    async def _do_hangup(self, cause: str) -> None:
        dial = self._tasks.get("dial")
        if dial is not None and not dial.done():
            dial.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await dial
        self._release_tty()
        async with self._line:
            if self.mode == "external":
                with contextlib.suppress(LinkError):
                    await self.external.down()
                return
            if self.pppd.running:
                await self.pppd.stop()
            try:
                how = await self.modem.hangup()
                log.info("link: hangup=%s, cause=%s", how, cause)
            except (LinkError, OSError) as e:
                log.warning("link: hangup=failed, cause=%s, error=%s", cause, e)
            finally:
                with contextlib.suppress(LinkError, OSError):
                    await self.modem.close()

    async def _do_run(self) -> None:
        try:
            await self.port.run_queue()
        except Exception as e:
            log.warning("link: queue_run=failed, error=%s", e)
        self._post(F.QueueRunDone())

    async def _do_etrn(self, domains: tuple[str, ...]) -> None:
        try:
            results = await self.port.etrn(domains)
            replies = [(r.domain, r.code, r.text) for r in results]
        except Exception as e:
            log.warning("link: etrn=failed, error=%s", e)
            replies = [(d, 0, f"error: {e}") for d in domains]
        for domain, code, text in replies:
            log.info("link: etrn=%s, reply=%s %s", domain, code, text)
        self.last_etrn = {"at": self._now_dt().isoformat(), "ok": all(_etrn_ok(c) for _, c, _ in replies),
                          "replies": [{"domain": d, "code": c, "text": t} for d, c, t in replies]}
        self._post(F.EtrnDone("; ".join(f"{c} {d}" for d, c, _ in replies)))

    async def _watch_loop(self) -> None:
        from link import netwatch as nw
        while True:
            try:
                self._watch = self._netwatch_factory()
                async with self._watch as watch:
                    async for ev in watch:
                        if isinstance(ev, nw.IfaceUp):
                            self._post(F.IfaceUp(ev.ifname, ev.addr, ev.peer))
                        elif isinstance(ev, nw.IfaceDown):
                            self._post(F.IfaceDown(ev.ifname))
            except OSError as e:
                log.warning("link: netwatch=failed, error=%s, retry=1s", e)
                await asyncio.sleep(1.0)

    async def _sample_loop(self) -> None:
        """While up: byte counters (idle detection) and the ISP's inbound sessions."""
        while self.fsm.state is F.LinkState.UP:
            counters = None
            if self._watch is not None:
                with contextlib.suppress(OSError, LinkError):
                    counters = await self._watch.counters()
            if counters is not None and self._call is not None:
                self._call.setdefault("base", counters)
                self._call["last"] = counters
                self._post(F.Idle(sum(counters)))
            try:
                n = int(self.port.inbound_active())
            except Exception:
                n = 0
            if (n > 0) != (self._inbound > 0):
                self._post(F.InboundActive() if n > 0 else F.InboundDone())
            self._inbound = n
            await asyncio.sleep(self.sample_s)

    # --- up and down ------------------------------------------------------------------------

    def _on_up(self, a: F.NotifyUp) -> None:
        now = self._now_dt()
        self.last_dial = self._dial_requested or now
        self._dial_requested = None
        self._call = {"start": now, "mono": self.clock.monotonic(), "number": getattr(self, "_number", "")}
        self._ipdown_env = None
        self._inbound = 0
        self._up.set()
        self._release_tty()                          # pppd has the line now
        self._spawn("sample", self._sample_loop())

    def _release_tty(self) -> None:
        release(self._held)
        self._held = None

    def _on_down(self, a: F.NotifyDown) -> None:
        self._up.clear()
        self._dirty = True
        call, self._call = self._call, None
        self._inbound = 0
        if call is None:
            return
        if hasattr(self.port, "link_down"):         # optional: the MTA books link-up time
            self._port_call("link_down")
        connect_s = self.clock.monotonic() - call["mono"]
        sent = rcvd = 0
        if "base" in call:
            rcvd = call["last"][0] - call["base"][0]
            sent = call["last"][1] - call["base"][1]
        if self._ipdown_env:
            from link.accounting import from_ip_down_env
            with contextlib.suppress(ValueError):
                connect_s, sent, rcvd = from_ip_down_env(self._ipdown_env)
        log.info("link: call=ended, connect=%.1fs, sent=%d, rcvd=%d, cause=%s", connect_s, sent, rcvd, a.cause)
        if self.ledger is not None:
            try:
                self.ledger.record_call(call["start"], connect_s, sent, rcvd, number=call["number"], cause=a.cause)
            except OSError as e:
                log.error("link: accounting=failed, error=%s", e)

    # --- status --------------------------------------------------------------------------------

    def _now_dt(self) -> datetime:
        return datetime.fromtimestamp(self.clock.wall(), UTC)

    def status(self) -> dict:
        now = self._now_dt()
        q = self._summary()
        d = self.policy.should_dial(now, self.demand(now))
        budget = {"calls": None, "minutes": None}
        last_call = None
        if self.ledger is not None:
            s = self.policy.settings
            calls, minutes = self.ledger.budget_left(now, s.calls_per_day, s.minutes_per_day,
                                                     active_since=self._call["start"] if self._call else None)
            budget = {"calls": calls, "minutes": minutes}
            last_call = asdict(self.ledger.last_call) if self.ledger.last_call else None
        return {
            "link": {"state": self.state, "phase": self.fsm.phase.value, "mode": self.mode,
                     "failed_dials": self.fsm.failed_dials, "holders": dict(self.fsm.holders),
                     "inbound": self.fsm.inbound, "pppd": self.last_pppd_exit},
            "queue": {"queued": q.queued, "oldest_age_s": q.oldest_age_s, "urgent": q.urgent},
            "next": {"dial": d.dial, "reason": d.reason, "at": d.next_at.isoformat() if d.next_at else None},
            "budget_left": budget,
            "last_etrn": self.last_etrn,
            "last_call": last_call,
        }

    def explain(self) -> str:
        now = self._now_dt()
        lines = [f"link is {self.state} (mode {self.mode})", self.policy.explain(now, self.demand(now))]
        if self.fsm.state is F.LinkState.BACKOFF and self.fsm.deadline() is not None:
            wait = self.fsm.deadline() - self.clock.monotonic()
            lines.append(f"backing off after {self.fsm.failed_dials} failed dial(s): {max(wait, 0):.0f}s left")
        return "\n".join(lines)


def _etrn_ok(code: int) -> bool:
    return 250 <= code <= 253


def _reason(event) -> str:
    if isinstance(event, F.DialRequested):
        return event.reason
    if isinstance(event, F.DialResult):
        return event.result
    if isinstance(event, (F.CarrierLost,)):
        return event.cause
    if isinstance(event, F.PppdExited):
        return f"pppd-exit({event.code},{exit_cause(event.code)})"
    if isinstance(event, F.IfaceUp):
        return f"{event.ifname}-up({event.addr})"
    if isinstance(event, F.IfaceDown):
        return f"{event.ifname}-down"
    if isinstance(event, F.Timer):
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
