"""The ``.lvdash.json`` file read as what the report needs: datasets, pages and their widgets. Pure: no Spark."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from movielens_als.errors import MovieLensAlsError

DASHBOARD_FILE = "movielens_als.lvdash.json"
FILTER_PREFIX = "filter-"
# A column the dashboard adds to every dataset for its cross-filters; no query returns it.
VIRTUAL_COLUMNS = frozenset({"associative_filter_predicate_group", "*"})
_BACKTICKED = re.compile(r"`((?:[^`]|``)+)`")
_COMMENTS_AND_STRINGS = re.compile(r"--[^\n]*|'(?:[^'\\]|\\.)*'")
_READS = re.compile(r"\b(?:FROM|JOIN)\s+([A-Za-z_][A-Za-z0-9_]*)\b", re.IGNORECASE)
_NOT_TABLES = frozenset({"values", "lateral"})


@dataclass(frozen=True)
class Dataset:
    name: str
    title: str
    query: str

    @property
    def tables(self) -> tuple[str, ...]:
        """The tables and views the query reads: the unqualified names after FROM and JOIN."""
        code = _COMMENTS_AND_STRINGS.sub(" ", self.query)
        names = (n for n in _READS.findall(code) if n.lower() not in _NOT_TABLES)
        return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class Field:
    name: str
    expression: str

    @property
    def columns(self) -> tuple[str, ...]:
        """The dataset columns the expression reads (backticked names), virtual ones left out."""
        names = (m.replace("``", "`") for m in _BACKTICKED.findall(self.expression))
        return tuple(n for n in names if n not in VIRTUAL_COLUMNS)


@dataclass(frozen=True)
class Widget:
    name: str
    kind: str  # the spec's widgetType (line, bar, table, counter, filter-...), or "text"
    title: str
    dataset: str | None
    fields: tuple[Field, ...]
    encodings: dict[str, Any]
    position: tuple[int, int, int, int]  # x, y, width, height on the 6-column grid
    text: tuple[str, ...] = ()

    @property
    def is_filter(self) -> bool:
        return self.kind.startswith(FILTER_PREFIX)

    def channel(self, name: str) -> str | None:
        """The field an encoding channel (x, y, color, value) shows, None when the widget has no such channel."""
        spec = self.encodings.get(name)
        return spec.get("fieldName") if isinstance(spec, dict) else None

    def label(self, name: str) -> str:
        """The display name of an encoding channel, else its field's name."""
        spec = self.encodings.get(name) or {}
        return spec.get("displayName") or spec.get("fieldName") or name

    def column(self, field_name: str) -> str:
        """The dataset column a field shows. The report draws fields that are one plain column (no aggregate), so the
        dataset's rows are the widget's rows, as on the dashboard with ``disaggregated`` queries."""
        for f in self.fields:
            if f.name == field_name:
                if len(f.columns) != 1 or f.expression.strip() != f"`{f.columns[0]}`":
                    raise MovieLensAlsError(f"widget {self.name}: field {field_name} is {f.expression}, not a column")
                return f.columns[0]
        raise MovieLensAlsError(f"widget {self.name}: no field {field_name!r} in its query")

    def table_columns(self) -> list[tuple[str, str]]:
        """(column, heading) of a table widget, in its order."""
        columns = self.encodings["columns"]
        return [(self.column(c["fieldName"]), c.get("displayName") or c["fieldName"]) for c in columns]


@dataclass(frozen=True)
class Page:
    name: str
    title: str
    widgets: tuple[Widget, ...]  # in reading order: top to bottom, left to right


@dataclass(frozen=True)
class Dashboard:
    path: Path
    datasets: dict[str, Dataset]
    pages: tuple[Page, ...]

    def widgets(self) -> list[tuple[Page, Widget]]:
        return [(page, w) for page in self.pages for w in page.widgets]


def default_dashboard_path() -> Path:
    """The packaged copy of the dashboard, else jobs/dashboards/ of the source checkout."""
    package = Path(__file__).resolve().parents[1]
    for folder in (package / "jobs_dashboards", package.parents[1] / "jobs" / "dashboards"):
        candidate = folder / DASHBOARD_FILE
        if candidate.is_file():
            return candidate
    raise MovieLensAlsError(f"no {DASHBOARD_FILE} packaged or in jobs/dashboards/: pass --dashboard")


def load_dashboard(path: str | Path | None = None) -> Dashboard:
    """Read a Lakeview dashboard file (default: the project's)."""
    path = Path(path) if path is not None else default_dashboard_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MovieLensAlsError(f"cannot read dashboard {path}: {exc}") from exc
    datasets = {}
    for d in data.get("datasets", []):
        query = "".join(d["queryLines"]) if "queryLines" in d else d.get("query", "")
        datasets[d["name"]] = Dataset(d["name"], d.get("displayName") or d["name"], query)
    pages = tuple(
        Page(p["name"], p.get("displayName") or p["name"], tuple(sorted(map(_widget, p["layout"]), key=_reading_order)))
        for p in data.get("pages", [])
    )
    for widget in (w for page in pages for w in page.widgets):
        if widget.dataset is not None and widget.dataset not in datasets:
            raise MovieLensAlsError(f"{path.name}: widget {widget.name} reads unknown dataset {widget.dataset!r}")
    return Dashboard(path, datasets, pages)


def _widget(item: dict) -> Widget:
    w, p = item["widget"], item.get("position", {})
    position = (p.get("x", 0), p.get("y", 0), p.get("width", 6), p.get("height", 1))
    if "multilineTextboxSpec" in w or "textbox_spec" in w:
        lines = w.get("multilineTextboxSpec", {}).get("lines") or [w.get("textbox_spec", "")]
        return Widget(w["name"], "text", "", None, (), {}, position, tuple(lines))
    spec = w.get("spec", {})
    queries = w.get("queries") or [{}]
    query = queries[0].get("query", {})
    fields = tuple(Field(f["name"], f["expression"]) for f in query.get("fields", []))
    title = spec.get("frame", {}).get("title") or w["name"]
    return Widget(w["name"], spec.get("widgetType", "unknown"), title, query.get("datasetName"), fields,
                  spec.get("encodings", {}), position)  # fmt: skip


def _reading_order(widget: Widget) -> tuple[int, int]:
    return widget.position[1], widget.position[0]
