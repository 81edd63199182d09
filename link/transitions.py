"""transitions.py - the link state machine's words and its transition table (CORE, data).

NAME
    transitions - LinkState, Phase; the events (facts) fed to link.fsm and the
    actions (imperatives) it returns; TABLE: (state, event type) -> handler

DESCRIPTION
    The vocabulary the FSM (link.fsm) and its drivers (link.manager,
    link.calls) share, and the transitions as data, in one place (h11's
    _state.py).  The handlers named in TABLE are link.fsm.LinkFSM's methods
    (with a leading underscore); a (state, event) pair not in TABLE is
    ignored and counted.  Hold and Release are counted, and Resume clears
    a stop, in every state (LinkFSM.handle), so they are not in TABLE.

    IDLE --DialRequested--> DIALING --DialResult(ok)--> CONNECTING --IfaceUp--> UP
    UP --idle/max connect--> HANGING_UP --IfaceDown|PppdExited|Timer--> IDLE
    DIALING/CONNECTING --failure--> BACKOFF --Timer--> IDLE
    UP --CarrierLost|IfaceDown|PppdExited--> IDLE (StopRun: the run is deferred, nothing lost)
    IDLE/DIALING/BACKOFF --IfaceUp--> UP (someone else, or the ip-up hook, was first)
    DIALING/CONNECTING --SetupBroken--> IDLE, stopped: no dial until Resume or a forced DialRequested

NEVER
    Holds state or code beyond frozen dataclasses: no I/O, no clock.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class LinkState(enum.Enum):
    IDLE = "down"                #: on-hook, nothing running
    DIALING = "dialing"          #: the modem is dialing
    CONNECTING = "connecting"    #: CONNECT seen; pppd negotiating, waiting for the interface
    UP = "up"                    #: interface up with an address
    HANGING_UP = "hanging-up"    #: Hangup sent, waiting for the interface/pppd to go
    BACKOFF = "backoff"          #: a dial failed; no new dial before the deadline


class Phase(enum.Enum):
    RUN = "run"                  #: queue run in progress
    ETRN = "etrn"                #: waiting for ETRN answers (ODMR: for the push to end)
    LINGER = "linger"            #: waiting for quiet


# --- events -------------------------------------------------------------------

@dataclass(frozen=True)
class DialRequested:
    reason: str
    #: the operator's dial: made even while dialling is stopped (a try after a fix)
    force: bool = False


@dataclass(frozen=True)
class DialResult:
    ok: bool
    result: str = "CONNECT"      #: BUSY, NO CARRIER, ... on failure
    placed: bool = True          #: the call reached the network (link.errors.PLACED_RESULTS)


@dataclass(frozen=True)
class IfaceUp:
    ifname: str = "ppp0"
    addr: str = ""
    peer: str = ""


@dataclass(frozen=True)
class IfaceDown:
    ifname: str = "ppp0"


@dataclass(frozen=True)
class CarrierLost:
    cause: str = "carrier"


@dataclass(frozen=True)
class PppdExited:
    code: int


@dataclass(frozen=True)
class SetupBroken:
    """pppd (or the up command) cannot work with our setup: bad options, no
    kernel support, a tty it cannot open (link.ppp CONFIG_ERRORS).  Retrying
    like BUSY will not help: dialling stops until Resume."""

    cause: str                   #: e.g. "pppd-exit(2,bad-options)"
    text: str                    #: e.g. "pppd exited 2 (bad-options)"
    fix: str                     #: what the admin has to fix, in words


@dataclass(frozen=True)
class Resume:
    """The setup may be fixed (a reload, an operator's dial): dialling may start again."""

    reason: str


@dataclass(frozen=True)
class QueueRunDone:
    pass


@dataclass(frozen=True)
class EtrnDone:
    result: str                  #: e.g. "250", "459 example.org: service unavailable"


@dataclass(frozen=True)
class PollDue:
    """One more ETRN in the paid unit (the policy's unit_poll) is due now."""

    due: str = ""                #: the scheduled poll it stands in for (for the log)


@dataclass(frozen=True)
class MailWaiting:
    """Mail for the link became due while the line is up (queued after the
    call's run started): run the queue again on this call."""


@dataclass(frozen=True)
class InboundActive:
    pass


@dataclass(frozen=True)
class InboundDone:
    pass


@dataclass(frozen=True)
class Hold:
    reason: str


@dataclass(frozen=True)
class Release:
    reason: str


@dataclass(frozen=True)
class Idle:
    """A byte-counter sample of the interface (rx + tx); moving = not idle."""

    bytes: int


@dataclass(frozen=True)
class Timer:
    pass


LinkEvent = (DialRequested | DialResult | IfaceUp | IfaceDown | CarrierLost | PppdExited | SetupBroken | Resume
             | QueueRunDone | EtrnDone | PollDue | MailWaiting | InboundActive | InboundDone | Hold | Release
             | Idle | Timer)


# --- actions ------------------------------------------------------------------

@dataclass(frozen=True)
class Dial:
    numbers: tuple[str, ...]
    reason: str = ""


@dataclass(frozen=True)
class StartPppd:
    pass


@dataclass(frozen=True)
class ClearHostStatus:
    pass


@dataclass(frozen=True)
class RunQueue:
    #: True: the call's first run (host status cleared, peer DNS read again,
    #: everything for the link flushed); False: mail that became due during
    #: the call (MailWaiting), a plain run of what is due
    link_up: bool = True


@dataclass(frozen=True)
class SendEtrn:
    """Ask the ISP for our mail: ETRN (RFC 1985), or ATRN over our own
    connection (method "odmr", RFC 2645: done when the ISP's push is)."""
    domains: tuple[str, ...]
    method: str = "etrn"


@dataclass(frozen=True)
class StopRun:
    cause: str


@dataclass(frozen=True)
class Hangup:
    cause: str


@dataclass(frozen=True)
class NotifyUp:
    addr: str = ""


@dataclass(frozen=True)
class NotifyDown:
    cause: str


@dataclass(frozen=True)
class ScheduleTimer:
    at: float | None


Action = (Dial | StartPppd | ClearHostStatus | RunQueue | SendEtrn | StopRun | Hangup
          | NotifyUp | NotifyDown | ScheduleTimer)


# --- the transition table ---------------------------------------------------------

S = LinkState
#: (state, event type) -> handler name.  Pairs not listed are ignored
#: (Hold, Release and Resume are handled in every state: LinkFSM.handle).
TABLE: dict[tuple[LinkState, type], str] = {
    (S.IDLE, DialRequested): "dial",
    (S.IDLE, IfaceUp): "link_up",            # someone else (pppd demand, an operator) brought it up
    (S.DIALING, DialResult): "dial_result",
    (S.DIALING, Timer): "dial_timeout",
    (S.DIALING, CarrierLost): "dial_failed",
    (S.DIALING, IfaceUp): "link_up",
    (S.CONNECTING, IfaceUp): "link_up",
    (S.CONNECTING, PppdExited): "dial_failed",
    (S.CONNECTING, CarrierLost): "dial_failed",
    (S.CONNECTING, IfaceDown): "dial_failed",
    (S.CONNECTING, Timer): "dial_timeout",
    (S.DIALING, SetupBroken): "setup_broken",
    (S.CONNECTING, SetupBroken): "setup_broken",
    (S.UP, QueueRunDone): "run_done",
    (S.UP, EtrnDone): "etrn_done",
    (S.UP, MailWaiting): "mail_waiting",
    (S.UP, PollDue): "unit_poll",
    (S.UP, InboundActive): "inbound",
    (S.UP, InboundDone): "inbound",
    (S.UP, Idle): "traffic",
    (S.UP, Timer): "up_timer",
    (S.UP, CarrierLost): "lost",
    (S.UP, IfaceDown): "lost",
    (S.UP, PppdExited): "lost",
    (S.UP, SetupBroken): "lost",
    (S.HANGING_UP, IfaceDown): "down",
    (S.HANGING_UP, PppdExited): "down",
    (S.HANGING_UP, SetupBroken): "down",
    (S.HANGING_UP, CarrierLost): "down",
    (S.HANGING_UP, Timer): "down",
    (S.BACKOFF, Timer): "backoff_over",
    (S.BACKOFF, IfaceUp): "link_up",
}

