"""timeline - the demo story as a timeline: parse log lines, price the call, draw it (CORE).

NAME
    timeline - build(log_lines, world_events, samples, tariff) -> Timeline;
    Timeline.rows() / missing() / summary(); render_text(tl); render_svg(tl)

SYNOPSIS
    tl = build([LogLine(t, "link: state=UP, reason=ppp0-up(10.64.0.2)"), ...],
               [WorldEvent(t, "isp", "held", {"rcpts": ["alice@edge.example"]})],
               [Sample(t, line_bytes=1234, dns_queries=0)], Tariff())
    print(render_text(tl)); open("timeline.svg", "w").write(render_svg(tl))
    if tl.missing(): ...          # the story steps that were not seen

DESCRIPTION
    Turns what the daemon logged (its own lines, one per event, stamped by
    whoever read them: the daemon writes no timestamps) and what the
    hardware-sim world reported (mail held at the ISP, DNS query counts,
    byte counters of the line) into one ordered list of events, each tagged
    with the story step it proves (STEPS).  Rows add the bytes that had
    crossed the line by then and what the calls had cost by then.

    Cost: each call costs Tariff.setup when the modem says CONNECT, then
    Tariff.per_minute for every connected minute, billed per second, until
    the hang-up (the demo's constants: a made-up but typical metered line).

    Lines understood (edgemail/maillog/ and link/linklog.py list them): the
    daemon's ready line; ``QID: from=..., size=N, ..., proto=P, relay=R``
    (mail queued: proto=local is ``sendmail``, a relay in `isp_peers` is
    the ISP pushing held mail, anything else an SMTP submission);
    ``QID: to=<A>, ..., mailer=M, ..., dsn=D, stat=S`` (a delivery);
    ``link: state=...`` (dial, CONNECT, ppp0 up, hang-up, down);
    ``runner: queue run start|end``; ``etrn: ... reply=CODE ...`` and
    ``link: etrn=D, reply=CODE ...``; ``link: call=ended, ...``.  Other
    lines are ignored.

MODULES
    events.py   STEPS; LogLine, WorldEvent, Sample, Tariff in; Event, Row,
                Call out
    parse.py    pairs(), LOCAL_MAILERS; log lines and world events -> Events
    model.py    build() -> Timeline: calls, cost, bytes, rows, steps seen
    render.py   render_text(), render_svg()

    Imports point one way: render -> model -> parse -> events.  Users
    import this package only (``from edgemail import timeline as T``).

NEVER
    Reads files or clocks, or talks to anything: times come in with the
    lines.  Unknown lines are skipped, never an error.
"""

from demo.timeline.events import (
           STEP_NAMES,
           STEPS,
           Call,
           Event,
           LogLine,
           PolicyTariff,
           Row,
           Sample,
           Tariff,
           WorldEvent,
)
from demo.timeline.model import Timeline, build
from demo.timeline.parse import LOCAL_MAILERS, pairs
from demo.timeline.render import render_svg, render_text

__all__ = ["STEPS", "STEP_NAMES", "LOCAL_MAILERS", "LogLine", "WorldEvent", "Sample", "Tariff", "PolicyTariff",
           "Event", "Row", "Call", "Timeline", "build", "pairs", "render_text", "render_svg"]
