"""The report as one self-contained HTML page: inline CSS, charts as base64 PNG, tables for the rest. Pure."""

from __future__ import annotations

import base64
import datetime as dt
import html
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from movielens_als.report.charts import CHART_KINDS, chart_png, series_of
from movielens_als.report.dashboard import Dashboard, Widget

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1100px;
       padding: 0 24px 48px; color: #1b1f23; }
header { border-bottom: 2px solid #ff3621; margin-bottom: 16px; }
h1 { font-size: 22px; margin: 20px 0 4px; } h2 { font-size: 18px; margin: 32px 0 8px; }
nav a { margin-right: 14px; }
.meta, .note, .more, .empty { color: #59636e; font-size: 12px; }
.grid { display: flex; flex-wrap: wrap; gap: 16px; }
figure { margin: 0; padding: 10px; border: 1px solid #d0d7de; border-radius: 6px; box-sizing: border-box;
         overflow-x: auto; flex: 1 1 calc(50% - 16px); min-width: 320px; }
figure.wide { flex-basis: 100%; }
figcaption { font-weight: 600; margin-bottom: 6px; }
figcaption .dataset { font-weight: 400; color: #59636e; font-size: 12px; margin-left: 6px; }
img { max-width: 100%; height: auto; }
table { border-collapse: collapse; font-size: 12px; }
th, td { padding: 3px 8px; border-bottom: 1px solid #eaeef2; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.counter { font-size: 32px; font-weight: 600; margin: 8px 0; }
.alert { color: #b3261e; font-weight: 600; } .ok { color: #1a7f37; font-weight: 600; }
.error { color: #b3261e; }
code { background: #f6f8fa; padding: 0 3px; border-radius: 3px; }
"""


@dataclass(frozen=True)
class Rows:
    """What one dataset query returned: at most the report's cap of rows (``truncated`` when there were more)."""

    columns: tuple[str, ...] = ()
    rows: tuple[tuple, ...] = ()
    truncated: bool = False
    error: str | None = None

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, r, strict=True)) for r in self.rows]


@dataclass(frozen=True)
class Header:
    title: str
    facts: tuple[tuple[str, Any], ...] = ()  # (label, value) lines under the title
    health: Mapping[str, Any] | None = None  # the latest serving_health row
    warnings: tuple[str, ...] = ()  # what the serving_health alert fires on in that row
    thresholds: tuple[tuple[str, Any], ...] = field(default_factory=tuple)


def render_report(
    dashboard: Dashboard,
    results: Mapping[str, Rows],
    header: Header,
    max_rows: int,
    chart: Callable[..., bytes | None] = chart_png,
) -> str:
    """The whole page: header, the latest serving health, then every dashboard page's widgets in reading order."""
    nav = " ".join(f'<a href="#page-{_e(p.name)}">{_e(p.title)}</a>' for p in dashboard.pages)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(header.title)}</title><style>{STYLE}</style></head><body>",
        f"<header><h1>{_e(header.title)}</h1>",
        *(f'<p class="meta">{_e(label)}: {_e(_text(value))}</p>' for label, value in header.facts),
        f'<nav><a href="#serving-health">Serving health</a> {nav}</nav></header>',
        _health(header),
    ]
    for page in dashboard.pages:
        parts.append(f'<section id="page-{_e(page.name)}"><h2>{_e(page.title)}</h2>')
        figures: list[str] = []  # side by side until a text or a filter note, which keeps its place in between
        for widget in page.widgets:
            if widget.kind == "text" or widget.is_filter:
                parts.append(_grid(figures))
                figures = []
                parts.extend(_text_widget(widget) if widget.kind == "text" else [_filter_note(widget, dashboard)])
            else:
                figures.append(_figure(widget, dashboard, results.get(widget.dataset, Rows()), max_rows, chart))
        parts += [_grid(figures), "</section>"]
    parts.append("</body></html>")
    return "\n".join(parts)


def _grid(figures: list[str]) -> str:
    return f'<div class="grid">{"".join(figures)}</div>' if figures else ""


def _health(header: Header) -> str:
    out = ['<section id="serving-health"><h2>Latest serving health</h2>']
    if header.health is None:
        out.append('<p class="note">No serving_health row yet: recommend has not served a version.</p></section>')
        return "".join(out)
    limits = ", ".join(f"{name} {_text(value)}" for name, value in header.thresholds)
    if header.warnings:
        out += [f'<p class="alert">The serving_health alert fires: {_e(w)}.</p>' for w in header.warnings]
    else:
        out.append(f'<p class="ok">Within the alert\'s thresholds ({_e(limits)}).</p>')
    rows = "".join(f"<tr><th>{_e(k)}</th><td{_num_class(v)}>{_e(_text(v))}</td></tr>" for k, v in header.health.items())
    out.append(f'<figure class="wide" data-dataset="serving_health_latest"><table>{rows}</table></figure></section>')
    return "".join(out)


def _text_widget(widget: Widget) -> list[str]:
    """Its paragraphs: the dashboard joins the lines as they are (newlines included), as markdown. Headings are left
    out, the page's own heading is the section's."""
    paragraphs = re.split(r"\n\s*\n", "".join(widget.text))
    return [f"<p>{_inline(p.strip())}</p>" for p in paragraphs if p.strip() and not p.lstrip().startswith("#")]


def _filter_note(widget: Widget, dashboard: Dashboard) -> str:
    dataset = dashboard.datasets[widget.dataset].title if widget.dataset else ""
    column = _filter_field(widget)
    return (
        f'<p class="note">Filter <b>{_e(widget.title)}</b> ({_e(column)}) of {_e(dataset)}: '
        "pick a value on the dashboard; here the first rows are shown.</p>"
    )


def _filter_field(widget: Widget) -> str:
    fields = widget.encodings.get("fields") or [{}]
    return fields[0].get("fieldName") or (widget.fields[0].name if widget.fields else "")


def _figure(widget: Widget, dashboard: Dashboard, rows: Rows, max_rows: int, chart) -> str:
    dataset = dashboard.datasets[widget.dataset] if widget.dataset else None
    wide = widget.position[2] >= 5
    head = (
        f'<figure class="{"wide" if wide else ""}" data-widget="{_e(widget.name)}" '
        f'data-dataset="{_e(widget.dataset or "")}"><figcaption>{_e(widget.title)}'
        f'<span class="dataset">{_e(dataset.title if dataset else "")}</span></figcaption>'
    )
    if rows.error is not None:
        return f'{head}<p class="error">Not available: {_e(rows.error)}</p></figure>'
    if widget.kind in CHART_KINDS:
        body = _chart(widget, rows, max_rows, chart)
    elif widget.kind == "counter":
        column = widget.column(widget.channel("value"))
        value = rows.records()[0][column] if rows.rows else None
        body = f'<p class="counter">{_e(_text(value))}</p><p class="note">{_e(widget.label("value"))}</p>'
    elif widget.kind == "table":
        body = _table(widget.table_columns(), rows, max_rows)
    else:
        body = _table([(c, c) for c in rows.columns], rows, max_rows)
    return f"{head}{body}</figure>"


def _chart(widget: Widget, rows: Rows, max_rows: int, chart) -> str:
    x, y = widget.column(widget.channel("x")), widget.column(widget.channel("y"))
    color = widget.column(widget.channel("color")) if widget.channel("color") else None
    series = series_of(rows.records(), x, y, color)
    if not series:
        return '<p class="empty">No values to draw yet.</p>'
    png = chart(widget.kind, series, widget.title, widget.label("x"), widget.label("y"))
    if png is None:  # no matplotlib: the chart's own columns as a table
        columns = [(x, widget.label("x")), *([(color, widget.label("color"))] if color else []), (y, widget.label("y"))]
        return '<p class="note">matplotlib is not installed: the chart\'s values.</p>' + _table(columns, rows, max_rows)
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_e(widget.title)}" src="data:image/png;base64,{data}">'


def _table(columns: Sequence[tuple[str, str]], rows: Rows, max_rows: int) -> str:
    shown = rows.records()[:max_rows]
    head = "".join(f"<th>{_e(title)}</th>" for _, title in columns)
    body = "".join(
        "<tr>" + "".join(f"<td{_num_class(r.get(c))}>{_e(_text(r.get(c)))}</td>" for c, _ in columns) + "</tr>"
        for r in shown
    )
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    total = f"more than {len(rows.rows)}" if rows.truncated else str(len(rows.rows))
    if not rows.rows:
        return table + '<p class="more">No rows.</p>'
    if len(shown) < len(rows.rows) or rows.truncated:
        return table + f'<p class="more">First {len(shown)} rows of {total}.</p>'
    return table


def _num_class(value: Any) -> str:
    return ' class="num"' if isinstance(value, (int, float)) and not isinstance(value, bool) else ""


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.4f}"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_text(v)}" for k, v in value.items())
    return str(value)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _inline(line: str) -> str:
    """Escaped text with markdown's `code` spans and **bold** kept."""
    text = _e(line)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)
