"""economy_svg.py - the link-economy picture, SVG written by hand (bench helper).

NAME
    economy_svg - render(figures, timeline, sweep, day_label) -> str

    One picture, three panels: bars (calls/day, connected minutes/day, p95
    latency out and in) per strategy; one day's link sessions per strategy on
    a 24-hour axis; and the trade-off of edgemail's policy variants (calls/day
    against p95 out and in) with the goal's box (calls <= recipe/2, p95 <=
    recipe) shaded.

NEVER
    Computes figures or touches anything but the string it returns.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

COLORS = {"edgemail": "#0072B2", "recipe": "#E69F00", "background": "#7f7f7f"}
W, H = 980, 880
FONT = 'font-family="DejaVu Sans, Arial, sans-serif"'


def _text(x, y, s, size=12, anchor="start", weight="normal", fill="#222") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'font-weight="{weight}" fill="{fill}">{escape(str(s))}</text>')


def _rect(x, y, w, h, fill, extra="") -> str:
    return f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" fill="{fill}" {extra}/>'


def _line(x1, y1, x2, y2, stroke="#bbb", width=1, extra="") -> str:
    return (f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
            f'stroke="{stroke}" stroke-width="{width}" {extra}/>')


def _bars(figures: dict, top: float) -> list[str]:
    groups = (("calls_per_day", "calls / day"), ("connected_min_per_day", "connected min / day"),
              ("out_p95_min", "p95 latency out (min)"), ("in_p95_min", "p95 latency in (min)"))
    out = [_text(20, top, "Per strategy (7-day week, per-day averages)", 15, weight="bold")]
    gw, bh, base = 230, 150, top + 210
    for i, (key, title) in enumerate(groups):
        x0 = 30 + i * gw
        peak = max(f[key] for f in figures.values()) or 1.0
        out.append(_text(x0 + 95, top + 28, title, 12, "middle", "bold"))
        out.append(_line(x0, base, x0 + 190, base, "#444"))
        for j, (name, f) in enumerate(figures.items()):
            h = bh * f[key] / peak
            x = x0 + 10 + j * 60
            out.append(_rect(x, base - h, 50, h, COLORS[name]))
            out.append(_text(x + 25, base - h - 4, f"{f[key]:.1f}", 11, "middle"))
    lx = 30
    for name, color in COLORS.items():
        out.append(_rect(lx, base + 14, 12, 12, color))
        out.append(_text(lx + 18, base + 25, name, 12))
        lx += 130
    return out


def _timeline(timeline: dict, top: float, day_label: str) -> list[str]:
    out = [_text(20, top, f"Link sessions on {day_label} (dial to hang-up)", 15, weight="bold")]
    x0, x1 = 130, W - 30
    sx = lambda hours: x0 + (x1 - x0) * hours / 24.0
    rows = list(timeline.items())
    y_end = top + 20 + 34 * len(rows)
    out.append(_rect(sx(8), top + 14, sx(18) - sx(8), y_end - top - 14, "#f1f1f1"))
    out.append(_text(sx(13), y_end + 30, "office hours 08-18", 10, "middle", fill="#777"))
    for h in range(0, 25, 2):
        out.append(_line(sx(h), top + 14, sx(h), y_end, "#ddd"))
        out.append(_text(sx(h), y_end + 14, f"{h:02d}", 10, "middle", fill="#555"))
    for i, (name, sessions) in enumerate(rows):
        y = top + 24 + 34 * i
        minutes = sum(b - a for a, b in sessions) * 60
        out.append(_text(x0 - 8, y + 10, name, 12, "end"))
        out.append(_text(x0 - 8, y + 23, f"{len(sessions)} calls, {minutes:.0f} min", 9, "end", fill="#555"))
        for a, b in sessions:          # at least 1 px wide so a short call stays visible
            out.append(_rect(sx(a), y, max(sx(b) - sx(a), 1.0), 20, COLORS[name]))
    return out


def _tradeoff(figures: dict, sweep: list[dict], top: float) -> list[str]:
    out = [_text(20, top, "Trade-off: edgemail policy variants (numbered) vs the baselines", 15, weight="bold")]
    recipe = figures["recipe"]
    xmax = _nice(1.1 * max([s["calls_per_day"] for s in sweep] + [f["calls_per_day"] for f in figures.values()]))
    for k, (key, title) in enumerate((("out_p95_min", "p95 out (min)"), ("in_p95_min", "p95 in (min)"))):
        px, py, pw, ph = 70 + k * 460, top + 25, 380, 200
        ys = [s[key] for s in sweep] + [f[key] for f in figures.values()]
        ymax = _nice(1.1 * max(y for y in ys if y == y and y < 400))
        sx = lambda v: px + pw * min(v, xmax) / xmax
        sy = lambda v: py + ph - ph * min(v, ymax) / ymax
        out.append(_rect(px, sy(recipe[key]), sx(recipe["calls_per_day"] / 2) - px, py + ph - sy(recipe[key]),
                         "#d8f0d8"))
        out.append(_text(px + 4, py + ph - 6, "goal", 10, fill="#3a7a3a"))
        out.append(_line(px, py + ph, px + pw, py + ph, "#444"))
        out.append(_line(px, py, px, py + ph, "#444"))
        out.append(_text(px + pw / 2, py + ph + 30, "calls / day", 11, "middle"))
        out.append(_text(px - 45, py - 8, title, 11))
        for t in range(5):
            v = xmax * t / 4
            out.append(_text(sx(v), py + ph + 14, f"{v:.0f}", 9, "middle", fill="#555"))
            w = ymax * t / 4
            out.append(_text(px - 6, sy(w) + 3, f"{w:.0f}", 9, "end", fill="#555"))
        for name in ("recipe", "background"):
            f = figures[name]
            out.append(_rect(sx(f["calls_per_day"]) - 5, sy(f[key]) - 5, 10, 10, COLORS[name]))
            out.append(_text(sx(f["calls_per_day"]) + 8, sy(f[key]) + 14, name, 10, fill="#444"))
        for i, s in enumerate(sweep, 1):
            cx, cy = sx(s["calls_per_day"]), sy(s[key])
            label = f"{i} (off scale: {s[key]:.0f})" if s[key] > ymax else str(i)
            out.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="{COLORS["edgemail"]}" fill-opacity="0.7"/>')
            out.append(_text(cx + 5, cy - 4, label, 9, fill=COLORS["edgemail"]))
    legend_y = top + 270
    for i, s in enumerate(sweep, 1):
        col, line = divmod(i - 1, 6)
        out.append(_text(30 + col * 470, legend_y + 14 * line, f"{i}. {s['label']}", 10, fill="#333"))
    return out


def _nice(v: float) -> float:
    """The next round number >= v whose quarters are round too (axis top)."""
    for step in (1, 2, 2.5, 5, 10, 15, 20, 25, 30, 40, 50, 75, 100, 150, 200, 250, 500, 1000):
        if v <= 4 * step:
            return 4.0 * step
    return v


def render(figures: dict, timeline: dict, sweep: list[dict], day_label: str) -> str:
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
             f'viewBox="0 0 {W} {H}" {FONT}>', _rect(0, 0, W, H, "white"),
             _text(W / 2, 26, "edgemail link economy: a simulated office week on a 56k line", 18,
                   "middle", "bold")]
    parts += _bars(figures, 60)
    parts += _timeline(timeline, 335, day_label)
    parts += _tradeoff(figures, sweep, 520)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
