"""fsm.py - the link state machine (CORE).

NAME
    fsm - LinkFSM.handle(event, now) -> [Action]; LinkFSM.deadline(); FsmConfig

DESCRIPTION
    Owns the life of one call: dial, start pppd, wait for the interface,
    the link-up sequence, idle hang-up, max connect time, backoff after
    failed dials.  The manager feeds it events (facts) with the monotonic
    time and performs the actions (imperatives) it returns; when deadline()
    passes it feeds Timer().  The states, events, actions and the
    transition table are data in link.transitions; this module holds the
    handlers that TABLE names.

    Link-up sequence (phase inside UP): RUN (ClearHostStatus + RunQueue) ->
    ETRN (SendEtrn for the domains; with pull "odmr" it lasts until the
    ISP's push over our connection is over) -> LINGER: the line stays up while holders
    (hold/release counts), inbound ISP sessions (InboundActive/InboundDone)
    or traffic (Idle(bytes) samples moving) say it is used, and is hung up
    after idle_hangup_s of quiet (or by config.hangup_plan: the policy's
    chargehup, just before the next charging unit), or at max_connect_s
    whatever happens.
    Mail that becomes due while lingering (MailWaiting) goes out on this
    call: RUN again, then LINGER (one ETRN per call).

    Setup errors (SetupBroken: pppd's bad options, no kernel support, a tty
    it cannot open, an up command that cannot run) are not retried like
    BUSY: the line is hung up, the FSM goes IDLE and `stopped` keeps the
    event; a DialRequested is then ignored unless forced (the operator's
    `edgemail link dial`: a try after a fix), until Resume (a reload).

INVARIANTS
    At most one Dial outstanding.  A failed dial is always followed by Hangup
    (the modem is put on-hook).  IfaceUp is idempotent (netlink and the ip-up
    hook both report it).  Events that make no sense in a state are ignored
    and counted in `ignored`, never raised: the world is noisy.  After
    `max_failed_dials` failed dials in a row the backoff is `limit_backoff_s`.
    While `stopped`, no unforced dial is made.

NEVER
    Does I/O, logs, or reads a clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from link.transitions import (TABLE, Action, CarrierLost, ClearHostStatus, Dial, DialRequested, DialResult,
                              EtrnDone, Hangup, Hold, Idle, IfaceDown, IfaceUp, InboundActive, LinkEvent,
                              LinkState, MailWaiting, NotifyDown, NotifyUp, Phase, PollDue, PppdExited,
                              QueueRunDone, Release, Resume, RunQueue, ScheduleTimer, SendEtrn, SetupBroken,
                              StartPppd, StopRun, Timer)

S = LinkState


@dataclass(frozen=True)
class FsmConfig:
    numbers: tuple[str, ...] = ()
    etrn_domains: tuple[str, ...] = ()
    #: how the call asks for our mail: "etrn" or "odmr" (the ISP pushes over our connection)
    pull: str = "etrn"
    idle_hangup_s: float = 120.0
    #: (up since, quiet since) -> when a quiet line is hung up; None: idle_hangup_s
    #: after the quiet began.  The manager passes the policy's chargehup (hangup_at).
    hangup_plan: Callable[[float, float], float] | None = None
    max_connect_s: float = 1800.0
    dial_timeout_s: float = 90.0        #: safety net over the modem driver's own timeouts
    pppd_timeout_s: float = 60.0        #: CONNECT -> interface up
    hangup_timeout_s: float = 15.0
    backoff_base_s: float = 60.0
    backoff_max_s: float = 1800.0
    max_failed_dials: int = 5
    limit_backoff_s: float = 3600.0



@dataclass
class LinkFSM:
    config: FsmConfig = field(default_factory=FsmConfig)
    state: LinkState = LinkState.IDLE
    phase: Phase = Phase.LINGER
    failed_dials: int = 0
    holders: dict[str, int] = field(default_factory=dict)
    inbound: int = 0
    last_etrn: str | None = None
    #: this call's ETRN went out (a second run on the same call sends none)
    etrn_sent: bool = False
    ignored: int = 0
    up_since: float | None = None
    #: a setup error stopped dialling (until Resume or a forced dial)
    stopped: SetupBroken | None = None
    _deadline: float | None = None
    _last_activity: float = 0.0
    _last_bytes: int | None = None

    def deadline(self) -> float | None:
        """When to call handle(Timer(), now); None: no timer needed."""
        return self._deadline

    def handle(self, event: LinkEvent, now: float) -> list[Action]:
        before = self._deadline
        if isinstance(event, (Hold, Release)):
            actions = self._hold(event, now)           # counted in every state
        elif isinstance(event, Resume):
            self.stopped = None                        # in every state: the next dial may go
            actions = []
        else:
            name = TABLE.get((self.state, type(event)))
            if name is None:
                self.ignored += 1
                return []
            actions = getattr(self, "_" + name)(event, now)
        if self._deadline != before:
            actions.append(ScheduleTimer(self._deadline))
        return actions

    # --- handlers: each returns the actions, sets state and deadline ---------

    def _dial(self, event: DialRequested, now: float) -> list[Action]:
        if self.stopped is not None:
            if not event.force:
                self.ignored += 1
                return []
            self.stopped = None                        # the operator tries after a fix
        self._enter(S.DIALING, now + self.config.dial_timeout_s)
        return [Dial(self.config.numbers, event.reason)]

    def _dial_result(self, event: DialResult, now: float) -> list[Action]:
        if not event.ok:
            return self._dial_failed(CarrierLost(event.result), now)
        self._enter(S.CONNECTING, now + self.config.pppd_timeout_s)
        return [StartPppd()]

    def _dial_timeout(self, event: Timer, now: float) -> list[Action]:
        return self._dial_failed(CarrierLost("TIMEOUT"), now)

    def _dial_failed(self, event, now: float) -> list[Action]:
        self.failed_dials += 1
        c = self.config
        if self.failed_dials >= c.max_failed_dials:
            wait = c.limit_backoff_s
        else:
            wait = min(c.backoff_base_s * 2 ** (self.failed_dials - 1), c.backoff_max_s)
        self._enter(S.BACKOFF, now + wait)
        return [Hangup(_cause(event)), NotifyDown(_cause(event))]

    def _setup_broken(self, event: SetupBroken, now: float) -> list[Action]:
        self.stopped = event
        self._enter(S.IDLE, None)
        return [Hangup(event.cause), NotifyDown(event.cause)]

    def _backoff_over(self, event: Timer, now: float) -> list[Action]:
        self._enter(S.IDLE, None)
        return []

    def _link_up(self, event: IfaceUp, now: float) -> list[Action]:
        self.failed_dials = 0
        self.up_since = now
        self._last_activity = now
        self._last_bytes = None
        self.inbound = 0
        self.phase = Phase.RUN
        self.etrn_sent = False
        self._enter(S.UP, self._up_deadline(now))
        return [NotifyUp(event.addr), ClearHostStatus(), RunQueue()]

    def _run_done(self, event: QueueRunDone, now: float) -> list[Action]:
        if self.phase is not Phase.RUN:
            return []
        self._last_activity = now
        if self.config.etrn_domains and not self.etrn_sent:
            self.phase = Phase.ETRN
            self.etrn_sent = True
            return [SendEtrn(self.config.etrn_domains, self.config.pull)]
        return self._linger(now)

    def _mail_waiting(self, event: MailWaiting, now: float) -> list[Action]:
        if self.phase is not Phase.LINGER:       # a run (or ETRN) is under way: it ends in LINGER
            return []
        self.phase = Phase.RUN
        self._last_activity = now
        self._deadline = self._up_deadline(now)
        return [RunQueue(link_up=False)]

    def _unit_poll(self, event: PollDue, now: float) -> list[Action]:
        """One more ETRN on a quiet line (chargehup's paid unit); it ends in LINGER."""
        if self.phase is not Phase.LINGER or not self.config.etrn_domains:
            return []
        self.phase = Phase.ETRN
        self._last_activity = now
        self._deadline = self._up_deadline(now)
        return [SendEtrn(self.config.etrn_domains, self.config.pull)]

    def quiet(self) -> bool:
        """Up, lingering, nobody holding the line, no inbound session: the hang-up clock runs."""
        return self.state is S.UP and self._quiet()

    def _etrn_done(self, event: EtrnDone, now: float) -> list[Action]:
        self.last_etrn = event.result
        self._last_activity = now
        return self._linger(now) if self.phase is Phase.ETRN else []

    def _linger(self, now: float) -> list[Action]:
        self.phase = Phase.LINGER
        self._deadline = self._up_deadline(now)
        return []

    def _inbound(self, event, now: float) -> list[Action]:
        self.inbound = self.inbound + 1 if isinstance(event, InboundActive) else max(self.inbound - 1, 0)
        self._last_activity = now
        self._deadline = self._up_deadline(now)
        return []

    def _traffic(self, event: Idle, now: float) -> list[Action]:
        if self._last_bytes is not None and event.bytes != self._last_bytes:
            self._last_activity = now
        self._last_bytes = event.bytes
        self._deadline = self._up_deadline(now)
        return []

    def _hold(self, event, now: float) -> list[Action]:
        n = self.holders.get(event.reason, 0) + (1 if isinstance(event, Hold) else -1)
        if n > 0:
            self.holders[event.reason] = n
        else:
            self.holders.pop(event.reason, None)
        if self.state is S.UP:
            self._last_activity = now
            self._deadline = self._up_deadline(now)
        return []

    def _up_timer(self, event: Timer, now: float) -> list[Action]:
        assert self.up_since is not None
        if now >= self.up_since + self.config.max_connect_s:
            return self._hangup("max-connect", now)
        if self._quiet() and now >= self._quiet_end():       # the plan's is chargehup's hang-up
            return self._hangup("idle" if self.config.hangup_plan is None else "chargehup", now)
        self._deadline = self._up_deadline(now)
        return []

    def _hangup(self, cause: str, now: float) -> list[Action]:
        actions: list[Action] = [StopRun(cause)] if self.phase is not Phase.LINGER else []
        self._enter(S.HANGING_UP, now + self.config.hangup_timeout_s)
        return actions + [Hangup(cause)]

    def _lost(self, event, now: float) -> list[Action]:
        cause = _cause(event)
        actions: list[Action] = [StopRun(cause)] if self.phase is not Phase.LINGER else []
        self._enter(S.IDLE, None)
        return actions + [Hangup(cause), NotifyDown(cause)]

    def _down(self, event, now: float) -> list[Action]:
        cause = "hangup-timeout" if isinstance(event, Timer) else "hangup"
        self._enter(S.IDLE, None)
        return [NotifyDown(cause)]

    # --- helpers -------------------------------------------------------------

    def _enter(self, state: LinkState, deadline: float | None) -> None:
        if state is not S.UP:
            self.phase = Phase.LINGER if state is not S.HANGING_UP else self.phase
            if state is not S.HANGING_UP:
                self.up_since = None
        self.state = state
        self._deadline = deadline

    def _quiet(self) -> bool:
        return self.phase is Phase.LINGER and not self.holders and self.inbound == 0

    def _up_deadline(self, now: float) -> float:
        assert self.up_since is not None
        limit = self.up_since + self.config.max_connect_s
        if self._quiet():
            return min(limit, max(self._quiet_end(), now))
        return limit

    def _quiet_end(self) -> float:
        """When the quiet line is hung up: the plan's (chargehup) or idle_hangup_s after the quiet began."""
        plan = self.config.hangup_plan
        if plan is not None and self.up_since is not None:
            return plan(self.up_since, self._last_activity)
        return self._last_activity + self.config.idle_hangup_s


def _cause(event) -> str:
    if isinstance(event, (CarrierLost, SetupBroken)):
        return event.cause
    if isinstance(event, PppdExited):
        return f"pppd-exit({event.code})"
    if isinstance(event, IfaceDown):
        return f"{event.ifname}-down"
    return type(event).__name__
