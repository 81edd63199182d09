"""timeline/model.py - the timeline: events in order, with the line's bytes and the calls' cost (CORE).

NAME
    model - build(lines, world, samples, tariff, *, isp_peers, t0) -> Timeline;
    Timeline.calls() / cost_at(t) / bytes_at(t) / rows() / missing() /
    verdict() / summary()

DESCRIPTION
    ``build`` merges the log lines and the world's events by time (a log
    line before a world event stamped the same), parses each (parse.py),
    keeps those that mean something, and sorts the samples by time.  The
    timeline starts at `t0`, else at its first event or sample.

    Cost: each call costs Tariff.setup when the modem says CONNECT, then
    Tariff.per_minute for every connected minute, billed per second (or what
    a PolicyTariff's dial.policy lines say, from the same connect time), until
    the hang-up (any event marked "hangup"; a call still up is billed to
    the time asked for).  Bytes at a time are the largest sample counter
    seen by then.

INVARIANTS
    A Timeline is frozen: every figure is computed from its events,
    samples and tariff when asked, so the same input gives the same rows.

NEVER
    Reads files or clocks; fails on an empty input (no events: start 0.0,
    no calls, cost 0).
"""

from __future__ import annotations

from dataclasses import dataclass

from demo.timeline.events import (
    STEP_NAMES,
    STEPS,
    Call,
    Event,
    LogLine,
    Row,
    PolicyTariff,
    Sample,
    Tariff,
)
from demo.timeline.parse import _Parser, _world

# ------------------------------------------------------------------ the timeline

@dataclass(frozen=True)
class Timeline:
    t0: float
    events: tuple[Event, ...]
    samples: tuple[Sample, ...]
    tariff: Tariff | PolicyTariff

    def calls(self) -> list[Call]:
        calls, dial, start = [], None, None
        for e in self.events:
            if e.step == "dial":
                dial = e.t
            elif e.step == "connect" and start is None:
                start = e.t
            elif start is not None and e.mark == "hangup":
                calls.append(Call(dial, start, e.t))
                dial = start = None
        if start is not None:
            calls.append(Call(dial, start, None))
        return calls

    def cost_at(self, t: float) -> float:
        cost = 0.0
        for c in self.calls():
            if c.connect <= t:
                end = t if c.end is None else min(t, c.end)
                cost += self.tariff.call_cost(c.connect, end - c.connect)
        return cost

    def bytes_at(self, t: float) -> int:
        seen = [s.line_bytes for s in self.samples if s.t <= t]
        return max(seen, default=0)

    def rows(self) -> list[Row]:
        return [Row(e.t - self.t0, e.text, self.bytes_at(e.t), self.cost_at(e.t), e.step) for e in self.events]

    def seen(self) -> set[str]:
        return {e.step for e in self.events if e.step}

    def missing(self) -> list[str]:
        """Steps of STEPS not seen, in story order."""
        seen = self.seen()
        return [step for step, _ in STEPS if step not in seen]

    def verdict(self) -> str | None:
        """None when the story is complete, else one line naming the first step that did not happen."""
        missing = self.missing()
        if not missing:
            return None
        also = f"; also not seen: {', '.join(missing[1:])}" if missing[1:] else ""
        return f"the step '{missing[0]}' ({STEP_NAMES[missing[0]]}) did not happen{also}"

    def end(self) -> float:
        times = [e.t for e in self.events] + [s.t for s in self.samples]
        return max(times, default=self.t0)

    def summary(self) -> str:
        calls = self.calls()
        connected = sum((c.end if c.end is not None else self.end()) - c.connect for c in calls)
        dns = max((s.dns_queries for s in self.samples), default=0)
        return (f"{len(calls)} call(s), {connected:.1f} s connected, {self.bytes_at(self.end())} bytes over "
                f"the line, cost {self.cost_at(self.end()):.2f} {self.tariff.currency}; "
                f"DNS queries in all: {dns}")


def build(lines, world=(), samples=(), tariff: Tariff | PolicyTariff | None = None, *,
          isp_peers: tuple[str, ...] = ("10.64.0.1",), t0: float | None = None) -> Timeline:
    """The timeline of `lines` (LogLine), `world` (WorldEvent) and `samples` (Sample)."""
    parser = _Parser(isp_peers)
    merged = sorted([(ln.t, 0, ln) for ln in lines] + [(w.t, 1, w) for w in world], key=lambda x: (x[0], x[1]))
    events = []
    for _, _, item in merged:
        ev = parser.line(item.t, item.text) if isinstance(item, LogLine) else _world(item)
        if ev is not None:
            events.append(ev)
    samples = tuple(sorted(samples, key=lambda s: s.t))
    start = t0 if t0 is not None else min([e.t for e in events] + [s.t for s in samples], default=0.0)
    return Timeline(start, tuple(events), samples, tariff or Tariff())
