"""Line charts as inline SVG, computed on the server: no script, no chart library to ship.

A :class:`LineChart` holds what a template draws: one polyline per series
(split where a value is missing), y-axis ticks, the first and last time,
and the values again as a table for screen readers and keyboard users
(the template puts it in a ``<details>``). Series are told apart by a
dash pattern as well as a colour (WCAG 1.4.1: not by colour alone).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from modelreg.dashboard.render import number, when

WIDTH = 640
HEIGHT = 200
PAD_LEFT = 56  # room for the y labels
PAD_RIGHT = 12
PAD_TOP = 10
PAD_BOTTOM = 24  # room for the x labels


@dataclass(frozen=True)
class Line:
    """One series: its name, style index and SVG point lists (one per unbroken stretch)."""

    name: str
    style: int
    segments: tuple[str, ...]
    dots: tuple[tuple[float, float], ...]  # lone points, drawn as circles


@dataclass(frozen=True)
class LineChart:
    """A chart ready for the ``line_chart`` macro; ``rows`` is its data as a table."""

    title: str
    unit: str
    lines: tuple[Line, ...]
    y_ticks: tuple[tuple[float, str], ...]  # (y pixel, label)
    x_first: str
    x_last: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    empty: bool
    width: int = WIDTH
    height: int = HEIGHT
    left: int = PAD_LEFT
    bottom: int = HEIGHT - PAD_BOTTOM


def line_chart(
    title: str,
    times: Sequence[datetime],
    series: Mapping[str, Sequence[float | None]],
    *,
    unit: str = "",
    y_max: float | None = None,
) -> LineChart:
    """A chart of ``series`` (name → one value or None per time) over ``times``.

    The y axis starts at 0 and ends at ``y_max`` or the largest value (with
    a little headroom); an x position is proportional to the time. ``empty``
    when no series has a value.
    """
    values = [v for vs in series.values() for v in vs if v is not None and math.isfinite(v)]
    top = y_max if y_max is not None else (max(values) * 1.1 if values else 1.0)
    top = top if top > 0 else 1.0
    inner_w = WIDTH - PAD_LEFT - PAD_RIGHT
    inner_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    start = times[0].timestamp() if times else 0.0
    span = (times[-1].timestamp() - start) if len(times) > 1 else 0.0

    def x(i: int) -> float:
        if span <= 0:
            return PAD_LEFT + inner_w / 2
        return round(PAD_LEFT + (times[i].timestamp() - start) / span * inner_w, 1)

    def y(v: float) -> float:
        return round(PAD_TOP + inner_h * (1 - min(v, top) / top), 1)

    lines = []
    for style, (name, vs) in enumerate(series.items()):
        segments: list[str] = []
        dots: list[tuple[float, float]] = []
        run: list[tuple[float, float]] = []
        for i, v in enumerate([*vs, None]):
            if v is not None and math.isfinite(v) and i < len(times):
                run.append((x(i), y(v)))
                continue
            if len(run) == 1:
                dots.append(run[0])
            elif run:
                segments.append(" ".join(f"{px},{py}" for px, py in run))
            run = []
        lines.append(Line(name, style % 4, tuple(segments), tuple(dots)))
    ticks = tuple((y(top * f), number(top * f, 3) + unit) for f in (0.0, 0.5, 1.0))
    header = ("time", *series.keys())
    rows = tuple(
        (when(t), *(number(vs[i] if i < len(vs) else None) for vs in series.values()))
        for i, t in enumerate(times)
    )
    return LineChart(
        title=title,
        unit=unit,
        lines=tuple(lines),
        y_ticks=ticks,
        x_first=when(times[0]) if times else "",
        x_last=when(times[-1]) if times else "",
        header=header,
        rows=rows,
        empty=not values,
    )
