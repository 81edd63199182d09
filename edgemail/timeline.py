"""timeline.py - the demo story as a timeline: parse log lines, price the call, draw it (CORE).

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

    Lines understood (maillog.py and link/manager.py list them): the
    daemon's ready line; ``QID: from=..., size=N, ..., proto=P, relay=R``
    (mail queued: proto=local is ``sendmail``, a relay in `isp_peers` is
    the ISP pushing held mail, anything else an SMTP submission);
    ``QID: to=<A>, ..., mailer=M, ..., dsn=D, stat=S`` (a delivery);
    ``link: state=...`` (dial, CONNECT, ppp0 up, hang-up, down);
    ``runner: queue run start|end``; ``etrn: ... reply=CODE ...`` and
    ``link: etrn=D, reply=CODE ...``; ``link: call=ended, ...``.  Other
    lines are ignored.

NEVER
    Reads files or clocks, or talks to anything: times come in with the
    lines.  Unknown lines are skipped, never an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

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
LOCAL_MAILERS = ("local", "maildir", "lmtp")


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


# ------------------------------------------------------------------ parsing

_PAIR = re.compile(r"(\w[\w.]*)=(.*?)(?=, \w[\w.]*=|$)")
_QID_LINE = re.compile(r"^(?P<qid>[A-Za-z0-9]+): (?P<rest>(?:from|to)=.*)$")


def pairs(text: str) -> dict[str, str]:
    """``a=1, b=x, y`` -> {"a": "1", "b": "x, y"} (values may hold ", ")."""
    return {m.group(1): m.group(2) for m in _PAIR.finditer(text)}


def _host(relay: str) -> str:
    """``[10.64.0.1]:4000`` -> 10.64.0.1; ``mx.example[198.51.100.10]:25`` -> mx.example."""
    if relay.startswith("["):
        return relay[1:].split("]", 1)[0]
    return relay.split("[", 1)[0].split(" ", 1)[0]


def _kb(size: str | int) -> str:
    n = int(size) if str(size).isdigit() else 0
    return f"{n} B" if n < 1000 else f"{n / 1000:.1f} kB"


class _Parser:
    """Log lines -> Events; remembers per queue id how the message came in."""

    def __init__(self, isp_peers: tuple[str, ...]) -> None:
        self.isp_peers = isp_peers
        self.kind: dict[str, str] = {}      # qid -> submit-smtp | submit-sendmail | inbound
        self.size: dict[str, str] = {}
        self.connected = False
        self.etrns: set[tuple[str, str]] = set()   # the MTA and the link both log an ETRN: once

    def line(self, t: float, text: str) -> Event | None:
        m = _QID_LINE.match(text)
        if m:
            return self._mail(t, m.group("qid"), pairs(m.group("rest")))
        p = pairs(text)
        if text.startswith("link: "):
            return self._link(t, p)
        if text.startswith("runner: queue run start"):
            return Event(t, f"queue run starts: {p.get('selected', '?')} message(s), reason {p.get('reason', '?')}",
                         "queue-run", "line")
        if text.startswith("runner: queue run end"):
            return Event(t, "queue run done: " + text.split("end, ", 1)[-1], None, "line")
        if text.startswith("etrn: "):
            return self._etrn(t, p.get("arg", "?"), p.get("reply", ""))
        if text.startswith("daemon: ready"):
            return Event(t, f"daemon ready, line down, {p.get('queued', '?')} queued", "ready", "line")
        return None

    def _mail(self, t: float, qid: str, p: dict[str, str]) -> Event | None:
        if "from" in p:
            return self._received(t, qid, p)
        if "to" not in p:
            return None
        to, size = p["to"], _kb(self.size.get(qid, "0"))
        lane = "in" if self.kind.get(qid) == "inbound" else "out"
        dsn, mailer = p.get("dsn", ""), p.get("mailer", "")
        addr = to.strip("<>")
        if not dsn.startswith("2"):
            word = "deferred" if dsn.startswith("4") else "bounced"
            return Event(t, f"{qid} {word}: {to} {p.get('stat', '')}", None, lane, qid, "failed", addr)
        if mailer in LOCAL_MAILERS:
            return Event(t, f"{qid} delivered to the Maildir of {to}, {size}",
                         "maildir" if lane == "in" else None, lane, qid,
                         "delivered" if lane == "in" else "local", addr)
        return Event(t, f"{qid} sent: {to} via {_host(p.get('relay', '?'))}, {size}",
                     "sent-out", lane, qid, "delivered", addr)

    def _received(self, t: float, qid: str, p: dict[str, str]) -> Event:
        relay, size = p.get("relay", ""), p.get("size", "0")
        self.size[qid] = size
        if p.get("proto") == "local":
            kind, how = "submit-sendmail", "sendmail -t"
        elif _host(relay) in self.isp_peers:
            kind, how = "inbound", f"pushed by the ISP {_host(relay)}"
        else:
            kind, how = "submit-smtp", f"SMTP from {_host(relay)}"
        self.kind[qid] = kind
        return Event(t, f"{qid} queued ({how}): {p.get('from', '<>')}, {_kb(size)}",
                     kind, "in" if kind == "inbound" else "out", qid, "queued")

    def _link(self, t: float, p: dict[str, str]) -> Event | None:
        state, reason = p.get("state"), p.get("reason", "")
        if state == "DIALING" and "result" in p:
            return Event(t, f"modem: {p['result']} (number {p.get('number', '?')})", None, "line")
        if state == "DIALING":
            return Event(t, f"policy says dial: {reason}", "dial", "line")
        if state == "CONNECTED":
            self.connected, self.etrns = True, set()
            return Event(t, f"modem: CONNECT {p.get('speed', '')} (number {p.get('number', '?')})",
                         "connect", "line")
        if state == "UP":
            self.connected = True
            return Event(t, f"{reason.split('-up', 1)[0] or 'interface'} up {reason[reason.find('('):]}",
                         "ppp-up", "line")
        if state == "HANGING_UP":
            return Event(t, f"hang-up: {reason}", "idle-hangup" if reason == "idle" else None, "line")
        if state == "IDLE" and self.connected:
            self.connected = False
            return Event(t, f"line down ({reason})", "down", "line", mark="hangup")
        if state in ("CONNECTING", "BACKOFF"):
            self.connected = self.connected or state == "CONNECTING"
            return Event(t, f"link {state.lower()}: {reason}", None, "line")
        if "etrn" in p:
            return self._etrn(t, p["etrn"], p.get("reply", ""))
        if p.get("call") == "ended":
            return Event(t, f"call ended: {p.get('connect', '?')} up, sent {p.get('sent', '?')} B, "
                            f"received {p.get('rcvd', '?')} B", None, "line", mark="hangup")
        if "hangup" in p:
            return Event(t, f"modem on-hook ({p['hangup']})", None, "line", mark="hangup")
        return None

    def _etrn(self, t: float, arg: str, reply: str) -> Event | None:
        key = (arg.lstrip("@#"), reply[:3])
        if key in self.etrns:
            return None
        self.etrns.add(key)
        ok = reply[:3] in ("250", "251", "252", "253")
        return Event(t, f"ETRN {arg}: {reply}", "etrn" if ok else None, "line", mark="etrn")


def _world(ev: WorldEvent) -> Event | None:
    if ev.source == "isp" and ev.event == "held":
        rcpts = ", ".join(ev.fields.get("rcpts", [])) or ev.fields.get("rcpt", "?")
        return Event(ev.t, f"the ISP holds mail for {rcpts} (our line is down)", "held-at-isp", "in",
                     str(ev.fields.get("id", "isp")), "queued", rcpts)
    if ev.source == "dns" and ev.event == "count":
        n = int(ev.fields.get("count", -1))
        down = ev.fields.get("line") == "down"
        return Event(ev.t, f"DNS queries so far: {n}" + (" (line down)" if down else ""),
                     "no-dns" if down and n == 0 else None, "note")
    return None


# ------------------------------------------------------------------ the timeline

@dataclass(frozen=True)
class Timeline:
    t0: float
    events: tuple[Event, ...]
    samples: tuple[Sample, ...]
    tariff: Tariff

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
                cost += self.tariff.setup + self.tariff.per_minute * (end - c.connect) / 60.0
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


def build(lines, world=(), samples=(), tariff: Tariff | None = None, *,
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


# ------------------------------------------------------------------ text

_COL = 76


def render_text(tl: Timeline) -> str:
    cur = tl.tariff.currency
    out = [f"cost: {tl.tariff.describe()}", "",
           f"{'t/s':>7}  {'event':<{_COL}} {'line bytes':>10} {'cost ' + cur:>9}"]
    for r in tl.rows():
        text = r.text if len(r.text) <= _COL else r.text[:_COL - 1] + "…"
        out.append(f"{r.t:7.2f}  {text:<{_COL}} {r.line_bytes:>10} {r.cost:>9.2f}")
    out += ["", "summary: " + tl.summary()]
    missing = tl.missing()
    out.append(f"story: complete, all {len(STEPS)} steps seen" if not missing else
               "story: INCOMPLETE, not seen: " + "; ".join(f"{s} ({STEP_NAMES[s]})" for s in missing))
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------ picture

_W, _LEFT, _RIGHT = 980, 110, 30
_LANES = {"line": 110, "out": 170, "in": 250, "bytes": 330, "cost": 400}
_MARKED = ("dial", "connect", "ppp-up", "etrn", "idle-hangup", "down")


def _scale(tl: Timeline):
    span = max(tl.end() - tl.t0, 1.0) * 1.03
    return lambda t: _LEFT + (t - tl.t0) / span * (_W - _LEFT - _RIGHT), span


def render_svg(tl: Timeline, title: str = "edgemail: one dial-on-demand call") -> str:
    """The timeline as a hand-written SVG: link calls, deliveries out and in, bytes and cost."""
    x, span = _scale(tl)
    h = _LANES["cost"] + 80
    p = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{h}" viewBox="0 0 {_W} {h}" '
         f'font-family="DejaVu Sans, Arial, sans-serif" font-size="11">',
         f'<rect width="{_W}" height="{h}" fill="white"/>',
         f'<text x="{_LEFT}" y="20" font-size="15" font-weight="bold">{escape(title)}</text>',
         f'<text x="{_LEFT}" y="37" fill="#444">{escape(tl.summary())}</text>']
    for name, y in _LANES.items():
        p.append(f'<text x="{_LEFT - 10}" y="{y + 4}" text-anchor="end" font-weight="bold">{_LANE_LABEL[name]}</text>')
        p.append(f'<line x1="{_LEFT}" y1="{y}" x2="{_W - _RIGHT}" y2="{y}" stroke="#ddd"/>')
    p += _markers(tl, x) + _calls(tl, x) + _mail(tl, x) + _curves(tl, x) + _axis(tl, x, span, h) + _legend(h)
    p.append("</svg>")
    return "\n".join(p) + "\n"


_LANE_LABEL = {"line": "line", "out": "mail out", "in": "mail in", "bytes": "line bytes", "cost": "cost"}


def _markers(tl: Timeline, x) -> list[str]:
    out, level = [], 0
    top, bottom = _LANES["line"] - 45, _LANES["cost"] + 10
    for e in tl.events:
        if e.step not in _MARKED:
            continue
        xe = x(e.t)
        label = {"dial": "dial", "connect": "CONNECT", "ppp-up": "ppp0 up", "etrn": "ETRN",
                 "idle-hangup": "idle: hang up", "down": "down"}[e.step]
        out.append(f'<line x1="{xe:.1f}" y1="{top}" x2="{xe:.1f}" y2="{bottom}" stroke="#999" '
                   f'stroke-dasharray="3,3"/>')
        anchor, dx = ("end", -2) if xe > _W - _RIGHT - 80 else ("start", 2)
        out.append(f'<text x="{xe + dx:.1f}" y="{top + 10 + 11 * level}" text-anchor="{anchor}" '
                   f'fill="#555">{label}</text>')
        level = (level + 1) % 3
    return out


def _calls(tl: Timeline, x) -> list[str]:
    y = _LANES["line"]
    out = [f'<line x1="{_LEFT}" y1="{y}" x2="{_W - _RIGHT}" y2="{y}" stroke="#888" stroke-width="2"/>']
    for c in tl.calls():
        end = c.end if c.end is not None else tl.end()
        if c.dial is not None:
            out.append(f'<rect x="{x(c.dial):.1f}" y="{y - 7}" width="{max(x(c.connect) - x(c.dial), 1):.1f}" '
                       f'height="14" fill="#f0b429"><title>dialing</title></rect>')
        out.append(f'<rect x="{x(c.connect):.1f}" y="{y - 9}" width="{max(x(end) - x(c.connect), 1):.1f}" '
                   f'height="18" fill="#3c9d5d"><title>connected</title></rect>')
        secs = end - c.connect
        out.append(f'<text x="{x(c.connect) + 4:.1f}" y="{y + 4}" fill="white">connected {secs:.1f} s, '
                   f'{tl.cost_at(end):.2f} {tl.tariff.currency}</text>')
    return out


def _mail(tl: Timeline, x) -> list[str]:
    """One row per message: hollow when queued, a line while it waits, filled when delivered."""
    rows: dict[tuple, list[Event]] = {}
    held: list[tuple] = []
    alias: dict[tuple, tuple] = {}
    for e in tl.events:
        if e.lane not in ("out", "in"):
            continue
        key = (e.lane, e.qid or e.t)
        if e.step == "held-at-isp":
            held.append(key)
        elif e.step == "inbound" and held and key not in rows:   # the held message arriving
            alias[key] = held.pop(0)
        rows.setdefault(alias.get(key, key), []).append(e)
    out, count = [], {"out": 0, "in": 0}
    for (lane, _), events in rows.items():
        y = _LANES[lane] - 6 + 16 * (count[lane] % 4)
        count[lane] += 1
        x0, x1 = x(events[0].t), x(events[-1].t)
        if x1 > x0:
            out.append(f'<line x1="{x0:.1f}" y1="{y}" x2="{x1:.1f}" y2="{y}" stroke="#7aa6d6"/>')
        out += [_mark(e, x(e.t), y) for e in events]
        label = ", ".join(dict.fromkeys(e.addr for e in events if e.addr))
        out.append(f'<text x="{x1 + 8:.1f}" y="{y + 4}" fill="#333" font-size="10">{escape(label)}</text>')
    return out


def _mark(e: Event, xe: float, y: float) -> str:
    tip = f"<title>{escape(e.text)}</title>"
    if e.mark == "queued":
        return f'<circle cx="{xe:.1f}" cy="{y}" r="4" fill="white" stroke="#1f5fa8" stroke-width="2">{tip}</circle>'
    if e.mark == "delivered":
        return f'<circle cx="{xe:.1f}" cy="{y}" r="5" fill="#1f5fa8">{tip}</circle>'
    if e.mark == "local":
        return f'<path d="M{xe - 5:.1f},{y - 13} h10 l-5,7 z" fill="#3c9d5d">{tip}</path>'
    if e.mark == "etrn":
        return f'<rect x="{xe - 4:.1f}" y="{y - 4}" width="8" height="8" fill="#8e44ad">{tip}</rect>'
    return f'<circle cx="{xe:.1f}" cy="{y}" r="4" fill="#c0392b">{tip}</circle>'


def _curves(tl: Timeline, x) -> list[str]:
    out = []
    total = max((s.line_bytes for s in tl.samples), default=0)
    yb = _LANES["bytes"]
    if tl.samples and total > 0:
        pts = [f"{x(s.t):.1f},{yb + 15 - 40 * s.line_bytes / total:.1f}" for s in tl.samples]
        out.append(f'<polyline points="{" ".join(pts)}" fill="none" stroke="#1f5fa8" stroke-width="2"/>')
    out.append(f'<text x="{_W - _RIGHT}" y="{yb - 30}" text-anchor="end" fill="#1f5fa8">{total} bytes</text>')
    yc = _LANES["cost"]
    final = tl.cost_at(tl.end())
    times = sorted({tl.t0, tl.end(), *(e.t for e in tl.events), *(c.connect for c in tl.calls()),
                    *(c.end for c in tl.calls() if c.end is not None)})
    if final > 0:
        pts = [f"{x(t):.1f},{yc + 15 - 40 * tl.cost_at(t - d) / final:.1f}" for t in times for d in (1e-6, 0)]
        out.append(f'<polyline points="{" ".join(pts)}" fill="none" stroke="#c0392b" stroke-width="2"/>')
    out.append(f'<text x="{_W - _RIGHT}" y="{yc - 30}" text-anchor="end" fill="#c0392b">'
               f'{final:.2f} {tl.tariff.currency}</text>')
    return out


def _legend(h: int) -> list[str]:
    y = h - 6
    return [f'<rect x="{_LEFT}" y="{y - 9}" width="18" height="10" fill="#f0b429"/>',
            f'<text x="{_LEFT + 22}" y="{y}">dialing</text>',
            f'<rect x="{_LEFT + 80}" y="{y - 9}" width="18" height="10" fill="#3c9d5d"/>',
            f'<text x="{_LEFT + 102}" y="{y}">connected (billed)</text>',
            f'<circle cx="{_LEFT + 235}" cy="{y - 4}" r="4" fill="white" stroke="#1f5fa8" stroke-width="2"/>',
            f'<text x="{_LEFT + 244}" y="{y}">queued (or held at the ISP)</text>',
            f'<circle cx="{_LEFT + 420}" cy="{y - 4}" r="5" fill="#1f5fa8"/>',
            f'<text x="{_LEFT + 429}" y="{y}">delivered</text>',
            f'<path d="M{_LEFT + 500},{y - 8} h10 l-5,7 z" fill="#3c9d5d"/>',
            f'<text x="{_LEFT + 514}" y="{y}">delivered locally at once</text>',
            f'<circle cx="{_LEFT + 680}" cy="{y - 4}" r="4" fill="#c0392b"/>',
            f'<text x="{_LEFT + 689}" y="{y}">deferred or bounced</text>']


def _axis(tl: Timeline, x, span: float, h: int) -> list[str]:
    y = h - 42
    step = next(s for s in (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1e9) if span / s <= 12)
    out = [f'<line x1="{_LEFT}" y1="{y}" x2="{_W - _RIGHT}" y2="{y}" stroke="#333"/>']
    k = 0
    while k * step <= span:
        xt = x(tl.t0 + k * step)
        out.append(f'<line x1="{xt:.1f}" y1="{y}" x2="{xt:.1f}" y2="{y + 4}" stroke="#333"/>')
        out.append(f'<text x="{xt:.1f}" y="{y + 16}" text-anchor="middle">{k * step:g} s</text>')
        k += 1
    return out
