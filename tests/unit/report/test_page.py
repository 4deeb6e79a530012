"""The report page without Spark: every dataset's title and figure, charts as PNG or (no matplotlib) tables,
the latest serving_health row with the alert's verdict, and text escaped."""

from __future__ import annotations

import datetime as dt
from html.parser import HTMLParser

import pytest

from movielens_als.report.charts import Series, chart_png, series_of
from movielens_als.report.dashboard import load_dashboard
from movielens_als.report.page import Header, Rows, render_report
from tests.optional import require

PNG = b"\x89PNG\r\n\x1a\n"


class Figures(HTMLParser):
    """Each <figure>'s dataset, caption text and what it shows (img, table, counter, error, empty)."""

    def __init__(self):
        super().__init__()
        self.figures: list[dict] = []
        self.text: list[str] = []
        self._open: dict | None = None
        self._caption = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "figure":
            self._open = {
                "dataset": attrs.get("data-dataset"),
                "widget": attrs.get("data-widget"),
                "caption": "",
                "shows": set(),
            }
            self.figures.append(self._open)
        elif tag == "figcaption":
            self._caption = True
        elif self._open is not None and tag in ("img", "table"):
            self._open["shows"].add(tag)
            if tag == "img":
                self._open["src"] = attrs.get("src", "")
        elif self._open is not None and tag == "p" and attrs.get("class") in ("counter", "error", "empty"):
            self._open["shows"].add(attrs["class"])

    def handle_endtag(self, tag):
        if tag == "figure":
            self._open = None
        elif tag == "figcaption":
            self._caption = False

    def handle_data(self, data):
        self.text.append(data)
        if self._caption and self._open is not None:
            self._open["caption"] += data


def parse(page: str) -> Figures:
    parser = Figures()
    parser.feed(page)
    parser.close()
    return parser


@pytest.fixture(scope="module")
def board():
    return load_dashboard()


def sample_rows(board) -> dict[str, Rows]:
    """Three rows per dataset with the columns its widgets read: times on x, numbers on y, names as colors."""
    kinds: dict[str, dict[str, str]] = {name: {} for name in board.datasets}
    for _, w in board.widgets():
        if w.dataset is None:
            continue
        for f in w.fields:
            for column in f.columns:
                kinds[w.dataset].setdefault(column, "text")
        for channel, kind in (("x", "time"), ("y", "number"), ("value", "number")):
            if w.channel(channel) and w.kind != "bar":
                kinds[w.dataset][w.column(w.channel(channel))] = kind
        if w.kind == "bar":
            kinds[w.dataset][w.column(w.channel("y"))] = "number"

    def value(kind: str, column: str, i: int):
        if kind == "time":
            return dt.datetime(2026, 1, 1 + i, 5)
        if kind == "number":
            return 0.1 * (i + 1)
        return f"{column} <{i % 2}>"  # two color groups, and markup to escape

    return {
        name: Rows(tuple(columns), tuple(tuple(value(k, c, i) for c, k in columns.items()) for i in range(3)))
        for name, columns in kinds.items()
    }


HEALTH = {"user_recommendations_version": 7, "churn": 0.62, "catalog_coverage": 0.2, "previous_coverage": 0.21}


def header(warnings=("churn 0.620 above 0.5",)) -> Header:
    return Header("MovieLens ALS: run r1", (("schema", "spark_catalog.movielens"),), HEALTH, warnings,
                  (("max churn", 0.5), ("max coverage drop", 0.05)))  # fmt: skip


def test_every_dataset_has_its_title_and_a_figure(board):
    page = render_report(board, sample_rows(board), header(), max_rows=2, chart=lambda *a: PNG)
    parsed = parse(page)
    for name, dataset in board.datasets.items():
        figures = [f for f in parsed.figures if f["dataset"] == name]
        assert figures, name
        assert all(dataset.title in f["caption"] for f in figures), name
        assert all(f["shows"] & {"img", "table", "counter"} for f in figures), (name, figures)
    charts = [f for f in parsed.figures if "img" in f["shows"]]
    assert len(charts) == sum(w.kind in ("line", "bar") for _, w in board.widgets())
    assert all(f["src"].startswith("data:image/png;base64,") for f in charts)
    assert all(p.title in parsed.text for p in board.pages)


def test_without_matplotlib_charts_become_tables_of_their_values(board):
    page = render_report(board, sample_rows(board), header(), max_rows=2, chart=lambda *a: None)
    parsed = parse(page)
    assert not any("img" in f["shows"] for f in parsed.figures)
    assert "matplotlib is not installed: the chart's values." in "".join(parsed.text)


def test_latest_serving_health_row_and_the_alerts_verdict(board):
    fired = "".join(parse(render_report(board, {}, header(), max_rows=2)).text)
    assert "The serving_health alert fires: churn 0.620 above 0.5." in fired
    assert "0.6200" in fired
    calm = "".join(parse(render_report(board, {}, header(warnings=()), max_rows=2)).text)
    assert "Within the alert's thresholds (max churn 0.5000, max coverage drop 0.0500)." in calm
    empty = Header("t", health=None)
    assert "No serving_health row yet" in render_report(board, {}, empty, max_rows=2)


def test_errors_tables_capped_and_markup_escaped(board):
    rows = sample_rows(board)
    rows["landings"] = Rows(error="[TABLE_OR_VIEW_NOT_FOUND] The table or view `ingestion_runs` cannot be found.")
    page = render_report(board, rows, header(), max_rows=2, chart=lambda *a: PNG)
    parsed = parse(page)
    assert all("error" in f["shows"] for f in parsed.figures if f["dataset"] == "landings")
    assert "First 2 rows of 3." in parsed.text
    assert "<0>" not in page.replace("&lt;0&gt;", "") and "title &lt;0&gt;" in page


def test_series_group_by_color_and_skip_nulls():
    rows = [
        {"t": 2, "v": 1.0, "m": "a"},
        {"t": 1, "v": 2.0, "m": "a"},
        {"t": 1, "v": None, "m": "b"},
        {"t": 3, "v": 4, "m": "c"},
    ]
    assert series_of(rows, "t", "v", "m") == [Series("a", ((1, 2.0), (2, 1.0))), Series("c", ((3, 4.0),))]
    assert series_of(rows, "t", "v", None)[0].name is None


def test_chart_png_draws_lines_over_dates_and_stacked_bars():
    require("matplotlib", "the report's charts, in the evaluate extra")
    days = [
        Series("ranking", ((dt.datetime(2026, 1, 1), 0.4), (dt.datetime(2026, 1, 2), 0.5))),
        Series("popular", ((dt.datetime(2026, 1, 1), 0.2),)),
    ]
    assert chart_png("line", days, "nDCG", "evaluated", "nDCG@k").startswith(PNG)
    reasons = [
        Series("rejected", (("bad rating", 3.0),)),
        Series("superseded", (("duplicate", 2.0), ("bad rating", 1.0))),
    ]
    assert chart_png("bar", reasons, "quarantine", "reason", "rows").startswith(PNG)


def test_a_chart_without_values_says_so_instead_of_drawing_nothing(board):
    rows = sample_rows(board)
    health = rows["serving_health"]
    churn = health.columns.index("churn")
    rows["serving_health"] = Rows(health.columns, tuple(r[:churn] + (None,) + r[churn + 1 :] for r in health.rows))
    parsed = parse(render_report(board, rows, header(), max_rows=2, chart=lambda *a: PNG))
    assert [f["widget"] for f in parsed.figures if "empty" in f["shows"]] == ["churn_chart"]
