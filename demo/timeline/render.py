"""timeline/render.py - a Timeline as a text table and as an SVG picture (CORE).

NAME
    render - render_text(tl) -> str; render_svg(tl, title) -> str

DESCRIPTION
    ``render_text``: the tariff in words, one row per event (seconds since
    the start, the event cut to 76 characters with "…", the line's bytes
    and the cost by then), the summary, and whether the story is complete
    (else the steps not seen).

    ``render_svg``: a hand-written SVG, 980 pixels wide, in lanes: the line
    (dialing in yellow, connected in green with its time and cost), mail
    out and mail in (one row per message: hollow when queued, a line while
    it waits, filled when delivered, a green triangle when delivered
    locally at once, red when deferred or bounced; the ISP's held mail and
    its arrival share a row), the line's bytes and the cost as curves;
    dashed markers at the story's line steps, a time axis and a legend.

INVARIANTS
    The same Timeline gives the same bytes (nothing depends on a clock or
    on the order of a set); every text from the input is XML-escaped.

NEVER
    Writes files (the caller does: demo/story.py) or parses anything.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from demo.timeline.events import STEP_NAMES, STEPS, Event
from demo.timeline.model import Timeline

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
