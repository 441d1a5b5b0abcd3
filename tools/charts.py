"""Small SVG charts for the diagnosis report (`tools.report`): drawn here as text, so the page needs no script,
no library and no network, and every label is escaped text.

Each function returns one `<svg>` element as a string. Coordinates are in a fixed view box scaled by the page.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

from tools.page import esc

WIDTH, HEIGHT = 560, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 32
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def _scale(lo: float, hi: float, a: float, b: float):
    span = (hi - lo) or 1.0
    return lambda v: a + (v - lo) / span * (b - a)


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / count))
    for factor in (1, 2, 5, 10):
        if (hi - lo) / (step * factor) <= count:
            step *= factor
            break
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


def _frame(x_label: str, y_label: str, x, y, x_range, y_range, x_ticks: bool = True) -> list[str]:
    parts = [f'<rect x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" height="{HEIGHT - TOP - BOTTOM}" '
             'fill="none" stroke="#999"/>']
    for t in _ticks(*y_range):
        parts.append(f'<line x1="{LEFT - 4}" x2="{LEFT}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#999"/>'
                     f'<text x="{LEFT - 6}" y="{y(t) + 4:.1f}" text-anchor="end" font-size="10">{t:g}</text>')
    for t in _ticks(*x_range) if x_ticks else []:
        parts.append(f'<text x="{x(t):.1f}" y="{HEIGHT - BOTTOM + 14}" text-anchor="middle" font-size="10">{t:g}'
                     "</text>")
    parts.append(f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 4}" text-anchor="middle" font-size="11">'
                 f"{esc(x_label)}</text>")
    parts.append(f'<text x="12" y="{(TOP + HEIGHT - BOTTOM) / 2}" text-anchor="middle" font-size="11" '
                 f'transform="rotate(-90 12 {(TOP + HEIGHT - BOTTOM) / 2})">{esc(y_label)}</text>')
    return parts


def _svg(parts: list[str], title: str) -> str:
    return (f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
            f'aria-label="{esc(title)}" xmlns="http://www.w3.org/2000/svg">' + "".join(parts) + "</svg>")


def _legend(names: Sequence[str]) -> list[str]:
    return [f'<rect x="{LEFT + 8}" y="{TOP + 6 + 14 * i}" width="10" height="10" fill="{PALETTE[i % len(PALETTE)]}"/>'
            f'<text x="{LEFT + 22}" y="{TOP + 15 + 14 * i}" font-size="10">{esc(name)}</text>'
            for i, name in enumerate(names)]


def line_chart(series: dict[str, Sequence[Optional[float]]], x: Sequence[float], x_label: str, y_label: str,
               shaded: Sequence[tuple[float, float]] = (), marked: Optional[float] = None,
               marked_label: str = "") -> str:
    """Lines over a shared x; `shaded`: [x0, x1] spans drawn in red (e.g. collapsed epochs); `marked`: a dashed
    vertical line at that x (e.g. the selected epoch)."""
    values = [v for s in series.values() for v in s if v is not None and math.isfinite(v)]
    if not values or not x:
        return ""
    x_range, y_range = (min(x), max(x)), (min(0.0, min(values)), max(values) * 1.05 or 1.0)
    sx, sy = _scale(*x_range, LEFT, WIDTH - RIGHT), _scale(*y_range, HEIGHT - BOTTOM, TOP)
    parts = []
    for x0, x1 in shaded:
        parts.append(f'<rect x="{sx(x0 - 0.5):.1f}" y="{TOP}" width="{max(sx(x1 + 0.5) - sx(x0 - 0.5), 2):.1f}" '
                     f'height="{HEIGHT - TOP - BOTTOM}" fill="#d62728" opacity="0.15"><title>collapsed</title></rect>')
    parts += _frame(x_label, y_label, sx, sy, x_range, y_range)
    for i, (name, ys) in enumerate(series.items()):
        points = " ".join(f"{sx(a):.1f},{sy(b):.1f}" for a, b in zip(x, ys) if b is not None and math.isfinite(b))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{PALETTE[i % len(PALETTE)]}" '
                     f'stroke-width="2"/>')
    if marked is not None:
        parts.append(f'<line x1="{sx(marked):.1f}" x2="{sx(marked):.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" '
                     f'stroke="#333" stroke-dasharray="4 3"/><text x="{sx(marked) + 3:.1f}" y="{TOP + 10}" '
                     f'font-size="10">{esc(marked_label)}</text>')
    return _svg(parts + _legend(list(series)), y_label)


def scatter(points: Sequence[tuple[float, float, float, str]], x_label: str, y_label: str,
            x_range=(0.0, 0.5), y_range=(0.0, 1.0)) -> str:
    """(x, y, colour value in [0, 1] from red to blue, tooltip) dots, e.g. the data map."""
    sx, sy = _scale(*x_range, LEFT, WIDTH - RIGHT), _scale(*y_range, HEIGHT - BOTTOM, TOP)
    parts = _frame(x_label, y_label, sx, sy, x_range, y_range)
    for x, y, c, tip in points:
        colour = f"rgb({int(214 * (1 - c) + 31 * c)},{int(39 * (1 - c) + 119 * c)},{int(40 * (1 - c) + 180 * c)})"
        parts.append(f'<circle cx="{sx(min(x, x_range[1])):.1f}" cy="{sy(y):.1f}" r="3" fill="{colour}" '
                     f'opacity="0.75"><title>{esc(tip)}</title></circle>')
    return _svg(parts, y_label)


def strip_plot(groups: dict[str, dict], y_label: str) -> str:
    """Every value of each group as a dot, with its mean and 95% interval as a bar (an experiment's seeds)."""
    values = [v for g in groups.values() for v in g["values"]] + [
        b for g in groups.values() for b in (g["ci_low"], g["ci_high"]) if math.isfinite(b)]
    if not values:
        return ""
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.1 or 0.05
    y_range = (lo - pad, hi + pad)
    sy = _scale(*y_range, HEIGHT - BOTTOM, TOP)
    step = (WIDTH - LEFT - RIGHT) / max(1, len(groups))
    parts = _frame("", y_label, lambda v: LEFT, sy, (0, 0), y_range, x_ticks=False)
    for i, (name, g) in enumerate(groups.items()):
        cx = LEFT + step * (i + 0.5)
        colour = PALETTE[i % len(PALETTE)]
        for k, v in enumerate(g["values"]):
            parts.append(f'<circle cx="{cx - 14 + 7 * (k % 5):.1f}" cy="{sy(v):.1f}" r="3.5" fill="{colour}" '
                         f'opacity="0.8"><title>seed {esc(str(g["seeds"][k]))}: {v:.4f}</title></circle>')
        if math.isfinite(g["ci_low"]) and math.isfinite(g["ci_high"]):
            parts.append(f'<line x1="{cx + 22:.1f}" x2="{cx + 22:.1f}" y1="{sy(g["ci_low"]):.1f}" '
                         f'y2="{sy(g["ci_high"]):.1f}" stroke="#333" stroke-width="2"/>')
        parts.append(f'<line x1="{cx + 16:.1f}" x2="{cx + 28:.1f}" y1="{sy(g["mean"]):.1f}" y2="{sy(g["mean"]):.1f}" '
                     'stroke="#333" stroke-width="2"/>'
                     f'<text x="{cx:.1f}" y="{HEIGHT - BOTTOM + 14}" text-anchor="middle" font-size="10">'
                     f"{esc(name)}</text>")
    return _svg(parts, y_label)


def bars(values: Sequence[float], y_label: str, x_label: str, y_max: Optional[float] = None,
         reference: Optional[float] = None, reference_label: str = "") -> str:
    """One bar per value (e.g. per batch), with an optional horizontal reference line."""
    if not values:
        return ""
    top = y_max if y_max is not None else max(values) or 1.0
    x_range, y_range = (0, len(values)), (0, top)
    sx, sy = _scale(*x_range, LEFT, WIDTH - RIGHT), _scale(*y_range, HEIGHT - BOTTOM, TOP)
    width = max((WIDTH - LEFT - RIGHT) / len(values) - 1, 0.5)
    parts = _frame(x_label, y_label, sx, sy, x_range, y_range)
    for i, v in enumerate(values):
        parts.append(f'<rect x="{sx(i):.1f}" y="{sy(v):.1f}" width="{width:.1f}" height="{sy(0) - sy(v):.1f}" '
                     f'fill="{PALETTE[0]}"><title>{i}: {v:.3g}</title></rect>')
    if reference is not None:
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{sy(reference):.1f}" y2="{sy(reference):.1f}" '
                     f'stroke="#d62728" stroke-dasharray="4 3"/><text x="{WIDTH - RIGHT - 4}" '
                     f'y="{sy(reference) - 4:.1f}" text-anchor="end" font-size="10">{esc(reference_label)}</text>')
    return _svg(parts, y_label)
