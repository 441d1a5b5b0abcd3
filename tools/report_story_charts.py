"""Charts of the story sections of the diagnosis page (`tools.report_story_runs`): the runs of an experiment
overlaid, one colour per configuration, and a run's learning rate under its loss. SVG as text, like
`tools.charts`, whose frame, scales and palette they share.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

from tools import charts
from tools.page import esc

def colour(index: int) -> str:
    return charts.PALETTE[index % len(charts.PALETTE)]


def runs_chart(lines: Sequence[tuple[int, str, Sequence[Optional[float]], bool]], names: Sequence[str],
               y_label: str) -> str:
    """Every run's curve over its epochs (1, 2, ...), coloured by its configuration: `lines` holds
    (configuration index, tooltip, values per epoch, dashed: e.g. a collapsed run); `names` the configurations
    in index order (the legend)."""
    values = [v for _, _, ys, _ in lines for v in ys if v is not None and math.isfinite(v)]
    if not values:
        return ""
    last = max(len(ys) for _, _, ys, _ in lines)
    x_range, y_range = (1, max(2, last)), (min(0.0, min(values)), max(values) * 1.05 or 1.0)
    sx = charts._scale(*x_range, charts.LEFT, charts.WIDTH - charts.RIGHT)
    sy = charts._scale(*y_range, charts.HEIGHT - charts.BOTTOM, charts.TOP)
    parts = charts._frame("epoch", y_label, sx, sy, x_range, y_range)
    for index, tip, ys, dashed in lines:
        points = " ".join(f"{sx(e + 1):.1f},{sy(v):.1f}" for e, v in enumerate(ys)
                          if v is not None and math.isfinite(v))
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour(index)}" stroke-width="1.6"{dash} '
                     f'opacity="0.85"><title>{esc(tip)}</title></polyline>')
    parts += charts._legend(list(names))
    return charts._svg(parts, y_label)


def learning_rate_chart(epochs: Sequence[int], rate: Sequence[Optional[float]], low: Sequence[Optional[float]],
                        high: Sequence[Optional[float]], shaded: Sequence[tuple[int, int]] = ()) -> str:
    """The learning rate per epoch (at the epoch's last step) with the band of the rates its steps used, as wide
    as the loss chart above it and on the same epochs; `shaded`: collapsed epochs, red as on the loss chart."""
    values = [v for s in (rate, low, high) for v in s if v is not None]
    if not values or not epochs:
        return ""
    x_range, y_range = (min(epochs), max(epochs)), (0.0, max(values) * 1.1)
    sx = charts._scale(*x_range, charts.LEFT, charts.WIDTH - charts.RIGHT)
    sy = charts._scale(*y_range, charts.HEIGHT - charts.BOTTOM, charts.TOP)
    parts = [f'<rect x="{sx(x0 - 0.5):.1f}" y="{charts.TOP}" width="{max(sx(x1 + 0.5) - sx(x0 - 0.5), 2):.1f}" '
             f'height="{charts.HEIGHT - charts.TOP - charts.BOTTOM}" fill="#d62728" opacity="0.15"><title>collapsed'
             "</title></rect>" for x0, x1 in shaded]
    parts += charts._frame("epoch", "learning rate", sx, sy, x_range, y_range)
    band = [(e, a, b) for e, a, b in zip(epochs, low, high) if a is not None and b is not None]
    if any(a != b for _, a, b in band):
        outline = ([f"{sx(e):.1f},{sy(b):.1f}" for e, _, b in band]
                   + [f"{sx(e):.1f},{sy(a):.1f}" for e, a, _ in band[::-1]])
        parts.append(f'<polygon points="{" ".join(outline)}" fill="{colour(0)}" opacity="0.25"><title>lowest to '
                     "highest rate of the epoch's steps</title></polygon>")
    points = " ".join(f"{sx(e):.1f},{sy(v):.1f}" for e, v in zip(epochs, rate) if v is not None)
    parts.append(f'<polyline points="{points}" fill="none" stroke="{colour(0)}" stroke-width="2"/>')
    return charts._svg(parts + charts._legend(["learning rate (band: its steps in the epoch)"]), "learning rate")
