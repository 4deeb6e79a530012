"""Charts of line and bar widgets as PNG bytes, with matplotlib when it is installed (the ``evaluate`` extra).

Without matplotlib :func:`chart_png` returns None and the page shows the chart's rows as a table instead.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

CHART_KINDS = ("line", "bar", "area", "scatter")
MAX_TICKS = 24  # labelled categories on a bar chart's x axis; the others keep their bar, not their label


@dataclass(frozen=True)
class Series:
    name: str | None  # the color field's value; None when the chart has one series
    points: tuple[tuple[Any, float], ...]  # (x, y), in x order


def series_of(rows: Sequence[dict], x: str, y: str, color: str | None) -> list[Series]:
    """The chart's series: rows grouped by ``color``, NULL y values left out, empty series dropped."""
    groups: dict[Any, list[tuple[Any, float]]] = {}
    for row in rows:
        if row.get(y) is None or row.get(x) is None:
            continue
        groups.setdefault(row.get(color) if color else None, []).append((row[x], float(row[y])))
    return [
        Series(None if name is None else str(name), tuple(sorted(points, key=lambda p: _sort_key(p[0]))))
        for name, points in sorted(groups.items(), key=lambda item: str(item[0]))
    ]


def chart_png(kind: str, series: list[Series], title: str, x_label: str, y_label: str) -> bytes | None:
    """A PNG of the series drawn as ``kind``; None when matplotlib is not installed."""
    try:
        from matplotlib.figure import Figure  # the object API: no pyplot state, safe beside evaluate's plots
    except ImportError:
        return None
    figure = Figure(figsize=(6.4, 3.2), dpi=100)
    ax = figure.subplots()
    if kind == "bar":
        _bars(ax, series)
    else:
        for s in series:
            xs, ys = zip(*s.points, strict=True)
            style = "o" if kind == "scatter" else "o-"
            ax.plot(xs, ys, style, markersize=4, label=s.name)
        if any(isinstance(p[0], dt.date) for s in series for p in s.points):
            from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

            locator = AutoDateLocator()
            ax.xaxis.set_major_locator(locator)
            ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(x_label, fontsize=9)
    ax.set_ylabel(y_label, fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    ax.set_axisbelow(True)
    if any(s.name is not None for s in series):
        ax.legend(fontsize=8)
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()


def _bars(ax, series: list[Series]) -> None:
    """Stacked bars over the union of the series' x values, as categories."""
    categories = sorted({p[0] for s in series for p in s.points}, key=_sort_key)
    positions = range(len(categories))
    bottom = [0.0] * len(categories)
    for s in series:
        values = dict(s.points)
        heights = [values.get(c, 0.0) for c in categories]
        ax.bar(positions, heights, bottom=bottom, label=s.name)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    step = max(1, -(-len(categories) // MAX_TICKS))
    ax.set_xticks(list(positions)[::step], [_category(c) for c in categories][::step], rotation=45, ha="right")


def _category(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _sort_key(value: Any) -> tuple:
    # Dates, numbers and strings never share one column, but keep sorting total anyway.
    if isinstance(value, (int, float)):
        return (0, value, "")
    if isinstance(value, dt.datetime):
        return (1, value.timestamp(), "")
    if isinstance(value, dt.date):
        return (1, dt.datetime.combine(value, dt.time()).timestamp(), "")
    return (2, 0, str(value))
