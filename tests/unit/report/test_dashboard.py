"""The dashboard file: its widgets name fields their dataset returns, and its queries read the project's tables
unqualified (the bundle binds the catalog and schema). Analysed on empty tables of the real schemas: fast."""

from __future__ import annotations

import re
import uuid

import pytest

from movielens_als.ingest.feedback import FEEDBACK
from movielens_als.lakehouse.names import Namespace
from movielens_als.lakehouse.sql import use_namespace
from movielens_als.lakehouse.tables import ensure_table
from movielens_als.lakehouse.views import publish_views
from movielens_als.ml.models import MODEL_METRICS, TRAINING_RUNS
from movielens_als.report.dashboard import Field, load_dashboard
from movielens_als.serving.health import SERVING_HEALTH
from movielens_als.tasks.land import INGESTION_RUNS, MOVIES, QUARANTINE, RATINGS
from movielens_als.tasks.promote import PROMOTIONS
from movielens_als.tasks.recommend import POPULAR_MOVIES, SIMILAR_MOVIES, USER_RECOMMENDATIONS

SPECS = (RATINGS, MOVIES, QUARANTINE, INGESTION_RUNS, MODEL_METRICS, TRAINING_RUNS, PROMOTIONS,
         USER_RECOMMENDATIONS, POPULAR_MOVIES, SIMILAR_MOVIES, SERVING_HEALTH, FEEDBACK)  # fmt: skip
PAGES = ["Model quality", "Beyond accuracy", "Data", "Explore", "Feedback"]
CHANNELS = {"line": ("x", "y"), "bar": ("x", "y"), "counter": ("value",)}


@pytest.fixture(scope="module")
def board():
    return load_dashboard()


@pytest.fixture(scope="module")
def empty_lakehouse(spark) -> Namespace:
    """Every table the dashboard reads, empty with its real schema, and the published views."""
    namespace = Namespace("spark_catalog", f"t_{uuid.uuid4().hex[:12]}")
    spark.sql(f"CREATE SCHEMA {namespace.qualified_schema}")
    for spec in SPECS:
        ensure_table(spark, namespace, spec)
    publish_views(spark, namespace)
    return namespace


@pytest.fixture(scope="module")
def returned_columns(spark, board, empty_lakehouse) -> dict[str, list[str]]:
    """Each dataset's columns, from Spark's analysis of its query with the namespace current, as the dashboard runs."""
    use_namespace(spark, empty_lakehouse)
    try:
        return {name: spark.sql(d.query).columns for name, d in board.datasets.items()}
    finally:
        spark.sql("USE spark_catalog.default")


def test_pages_are_the_four_the_issue_names_with_their_tables(board):
    assert [p.title for p in board.pages] == PAGES
    read = {p.title: " ".join(board.datasets[w.dataset].query for w in p.widgets if w.dataset) for p in board.pages}
    for page, tables in {
        "Model quality": ("model_metrics", "promotions", "user_recommendations"),
        "Beyond accuracy": ("model_metrics", "serving_health"),
        "Data": ("ingestion_runs", "quarantine", "ratings"),
        "Explore": ("recommendations_with_titles", "similar_movies_by_title", "popular_movies_with_titles"),
        "Feedback": ("feedback", "ingestion_runs"),
    }.items():
        for table in tables:
            assert re.search(rf"\bFROM {table}\b|\bJOIN {table}\b", read[page]), (page, table)
    explore_filters = {w.title for w in board.pages[3].widgets if w.is_filter}
    assert explore_filters == {"User", "Movie", "Genre"}


def test_queries_read_the_projects_tables_and_views_by_unqualified_names(board):
    known = {spec.name for spec in SPECS} | {"recommendations_with_titles", "similar_movies_by_title",
                                              "popular_movies_with_titles"}  # fmt: skip
    assert {t for d in board.datasets.values() for t in d.tables} <= known
    assert board.datasets["champion"].tables == ("user_recommendations", "promotions")
    assert board.datasets["quarantine_reasons"].tables == ("quarantine",)  # not VALUES
    for d in board.datasets.values():
        assert not re.search(r"\b(USE|SET CATALOG)\b", d.query, re.IGNORECASE), d.name
        assert not re.search(r"\b(FROM|JOIN)\s+`?\w+`?\.", d.query, re.IGNORECASE), d.name


def test_every_dataset_has_a_figure_and_every_widget_a_known_dataset(board):
    shown = {w.dataset for _, w in board.widgets() if w.dataset and not w.is_filter}
    assert shown == set(board.datasets)
    names = [w.name for _, w in board.widgets()]
    assert len(names) == len(set(names))


def test_encodings_name_fields_of_the_widgets_query(board):
    for _, widget in board.widgets():
        fields = {f.name for f in widget.fields}
        for channel in CHANNELS.get(widget.kind, ()):
            assert widget.channel(channel) in fields, (widget.name, channel)
        if widget.kind in ("line", "bar") and widget.channel("color"):
            assert widget.channel("color") in fields, widget.name
        if widget.kind == "table":
            assert {c["fieldName"] for c in widget.encodings["columns"]} <= fields, widget.name
        if widget.is_filter:
            assert {f["fieldName"] for f in widget.encodings["fields"]} <= fields, widget.name


def test_every_widget_field_names_columns_its_dataset_returns(board, returned_columns):
    for page, widget in board.widgets():
        if widget.dataset is None:
            continue
        for f in widget.fields:
            if not f.columns:  # a filter's cross-filter count reads the dashboard's virtual column only
                assert widget.is_filter and "associative_filter_predicate_group" in f.expression, widget.name
            missing = set(f.columns) - set(returned_columns[widget.dataset])
            assert not missing, f"{page.title} / {widget.name}: {sorted(missing)} not in {widget.dataset}"


def test_the_field_check_can_fail():
    assert Field("y", "MAX(`churn`)").columns == ("churn",)
    assert Field("n", "COUNT_IF(`associative_filter_predicate_group`)").columns == ()
    assert Field("a", "`a ``b`").columns == ("a `b",)


def test_data_widgets_show_plain_columns_so_the_report_draws_the_dashboards_rows(board):
    for _, widget in board.widgets():
        if widget.dataset is not None and not widget.is_filter:
            assert all(widget.column(f.name) for f in widget.fields), widget.name
