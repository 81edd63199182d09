"""economy_svg.py - the link-economy picture, SVG written by hand (bench helper).

NAME
    economy_svg - render(points, tariffs) -> str

    Cost against p95, one point per policy variant of the sweep (office
    week), the recipe marked: one row of panels per tariff, p95 out on the
    left and p95 in on the right.  The goal's box (cost <= half the
    recipe's, p95 <= the recipe's) is shaded.

NEVER
    Computes figures or touches anything but the string it returns.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

EDGE, RECIPE = "#0072B2", "#E69F00"
W, PANEL_H = 980, 300
FONT = 'font-family="DejaVu Sans, Arial, sans-serif"'


def _text(x, y, s, size=12, anchor="start", weight="normal", fill="#222") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'font-weight="{weight}" fill="{fill}">{escape(str(s))}</text>')


def _rect(x, y, w, h, fill, extra="") -> str:
    return f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" fill="{fill}" {extra}/>'


def _line(x1, y1, x2, y2, stroke="#444") -> str:
    return f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}" stroke-width="1"/>'


def _nice(v: float) -> float:
    """The next round number >= v whose quarters are round too (axis top)."""
    for step in (0.25, 0.5, 1, 2, 2.5, 5, 10, 15, 20, 25, 30, 40, 50, 75, 100, 150, 200, 250, 500):
        if v <= 4 * step:
            return 4.0 * step
    return v


def _panel(points: list[dict], key: str, title: str, px: float, py: float, labels: dict) -> list[str]:
    pw, ph = 380, 200
    recipe = next(p for p in points if p["label"] == "recipe")
    xmax = _nice(1.1 * max(p["cost"] for p in points))
    ymax = _nice(1.1 * max(p[key] for p in points if p[key] == p[key] and p[key] < 300))
    sx = lambda v: px + pw * min(v, xmax) / xmax
    sy = lambda v: py + ph - ph * min(v, ymax) / ymax
    out = [_rect(px, sy(recipe[key]), sx(recipe["cost"] / 2) - px, py + ph - sy(recipe[key]), "#d8f0d8"),
           _text(px + 4, py + ph - 6, "goal", 10, fill="#3a7a3a"),
           _line(px, py + ph, px + pw, py + ph), _line(px, py, px, py + ph),
           _text(px + pw / 2, py + ph + 30, "cost / day", 11, "middle"), _text(px - 45, py - 8, title, 11)]
    for t in range(5):
        out.append(_text(sx(xmax * t / 4), py + ph + 14, f"{xmax * t / 4:.2f}", 9, "middle", fill="#555"))
        out.append(_text(px - 6, sy(ymax * t / 4) + 3, f"{ymax * t / 4:.0f}", 9, "end", fill="#555"))
    for p in points:
        cx, cy = sx(p["cost"]), sy(p[key])
        if p["label"] == "recipe":
            out.append(_rect(cx - 5, cy - 5, 10, 10, RECIPE))
            out.append(_text(cx + 8, cy + 14, "recipe", 10, fill="#444"))
            continue
        n = labels[p["label"]]
        off = f" (off scale: {p[key]:.0f})" if p[key] > ymax else ""
        out.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="{EDGE}" fill-opacity="0.7"/>')
        out.append(_text(cx + 5, cy - 4, f"{n}{off}", 9, fill=EDGE))
    return out


def render(points: list[dict], tariffs: dict) -> str:
    labels = {}
    for p in points:
        if p["label"] != "recipe":
            labels.setdefault(p["label"], len(labels) + 1)
    height = 60 + PANEL_H * len(tariffs) + 16 * ((len(labels) + 1) // 2) + 20
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" '
             f'viewBox="0 0 {W} {height}" {FONT}>', _rect(0, 0, W, height, "white"),
             _text(W / 2, 26, "edgemail link economy: cost against p95 (office week; policy variants, recipe marked)",
                   16, "middle", "bold")]
    for i, (name, text) in enumerate(tariffs.items()):
        top = 60 + PANEL_H * i
        mine = [p for p in points if p["tariff"] == name]
        parts.append(_text(20, top, f"tariff {name}: {'; '.join(text.strip().splitlines())}", 13, weight="bold"))
        parts += _panel(mine, "out_p95_min", "p95 out (min)", 70, top + 30, labels)
        parts += _panel(mine, "in_p95_min", "p95 in (min)", 530, top + 30, labels)
    legend = 60 + PANEL_H * len(tariffs)
    for label, n in labels.items():
        col, row = divmod(n - 1, (len(labels) + 1) // 2)
        parts.append(_text(30 + col * 470, legend + 16 * row, f"{n}. {label}", 10, fill="#333"))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
