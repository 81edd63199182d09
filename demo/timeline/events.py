"""timeline/events.py - the story's words: its steps, what comes in, what comes out (CORE).

NAME
    events - STEPS and STEP_NAMES; the inputs LogLine, WorldEvent, Sample and
    Tariff; the outputs Event, Row and Call

DESCRIPTION
    STEPS is the demo story in order: each entry a step name and what it
    means.  A parsed Event names the step it proves (or None) and where the
    picture puts it (``lane``: line, out, in, note) with which ``mark``.
    A Row is an Event priced for the text table; a Call is one call on the
    line, from the dial (when one was seen) to the hang-up (None while the
    line is still up).  Tariff holds the demo's prices and says them in
    words (``describe``); PolicyTariff prices calls by dial.policy `tariff`
    lines instead (link.tariff: call fees, minutes, charging units by zone).
    Both answer ``call_cost(connect, seconds)``: what a call connected at
    wall time `connect` costs after `seconds`.

INVARIANTS
    Every value here is a frozen dataclass; times are absolute wall times
    as they came in, except Row.t (seconds since the timeline's start).

NEVER
    Parses, prices or draws anything (parse.py, model.py, render.py do), or
    does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: the story, in order: (step, what it means)
STEPS: tuple[tuple[str, str], ...] = (
    ("ready", "daemon started, line down"),
    ("submit-smtp", "mail submitted over SMTP"),
    ("submit-sendmail", "mail submitted with sendmail -t"),
    ("held-at-isp", "mail held for us at the ISP"),
    ("no-dns", "no DNS query while the line was down"),
    ("dial", "policy tick: dial"),
    ("connect", "modem CONNECT"),
    ("ppp-up", "ppp0 up"),
    ("queue-run", "queue run"),
    ("sent-out", "outbound mail sent"),
    ("etrn", "ETRN accepted by the ISP"),
    ("inbound", "the ISP pushed the held mail"),
    ("maildir", "inbound mail delivered to a Maildir"),
    ("idle-hangup", "idle: hang-up"),
    ("down", "line down again"),
)
STEP_NAMES = dict(STEPS)



@dataclass(frozen=True)
class LogLine:
    t: float                #: wall time the line was read
    text: str


@dataclass(frozen=True)
class WorldEvent:
    t: float
    source: str             #: "isp", "modem", "dns"
    event: str              #: isp: held; dns: count
    fields: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Sample:
    """The line's byte counters (both ways) and the ISP DNS's query count at t."""
    t: float
    line_bytes: int
    dns_queries: int = 0


@dataclass(frozen=True)
class Tariff:
    setup: float = 0.10     #: per call, charged at CONNECT
    per_minute: float = 0.04
    currency: str = "EUR"

    def describe(self) -> str:
        return (f"{self.setup:.2f} {self.currency} per call + {self.per_minute:.2f} {self.currency} "
                f"per connected minute, billed per second (demo constants)")

    def call_cost(self, connect: float, seconds: float) -> float:
        return self.setup + self.per_minute * max(seconds, 0.0) / 60.0


@dataclass(frozen=True)
class PolicyTariff:
    """Calls priced by dial.policy `tariff` lines (and its `timezone`), as the ledger prices them."""

    lines: str
    currency: str = "EUR"

    def describe(self) -> str:
        return "; ".join(ln.strip() for ln in self.lines.splitlines() if ln.strip().startswith("tariff"))

    def call_cost(self, connect: float, seconds: float) -> float:
        from datetime import datetime, timezone

        from link.policy import parse
        policy = parse(self.lines, file="<timeline tariff>")
        return policy.tariff.cost(datetime.fromtimestamp(connect, timezone.utc), seconds, policy.zone)


@dataclass(frozen=True)
class Event:
    t: float
    text: str
    step: str | None = None     #: the STEPS entry this event proves
    lane: str = "note"          #: line | out | in | note (where the picture puts it)
    qid: str = ""
    mark: str = ""              #: queued | delivered | local | failed | etrn | hangup: the picture's mark
    addr: str = ""              #: the recipient, for the picture's label


@dataclass(frozen=True)
class Row:
    t: float                    #: seconds since the timeline's start
    text: str
    line_bytes: int
    cost: float
    step: str | None


@dataclass(frozen=True)
class Call:
    dial: float | None          #: absolute times
    connect: float
    end: float | None

