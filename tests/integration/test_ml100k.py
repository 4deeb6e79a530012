"""The real MovieLens 100k (MOVIELENS_100K; CI: ../shared/datasets/ml-100k) landed once and run through the DAG's
tasks once, in this process, with a small grid: what only real data shows. The landed rows are the files'; the
models beat the recommenders quick-start baseline on the benchmark split; a deliberately bad challenger is
refused and the served rows stay; every dashboard dataset returns rows and the report draws each of them.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from movielens_als.config import REPORT_FETCH_ROWS
from movielens_als.ingest.feedback import FEEDBACK
from movielens_als.lakehouse import tables
from movielens_als.ml import registry
from movielens_als.report.dashboard import load_dashboard
from movielens_als.report.datasets import run_datasets
from movielens_als.report.write import write_report
from movielens_als.tasks.evaluate import evaluate
from movielens_als.tasks.promote import promote
from movielens_als.tasks.publish import publish
from movielens_als.tasks.recommend import recommend
from movielens_als.tasks.split import split
from movielens_als.tasks.train import train
from tests.optional import require
from tests.unit.report.test_page import parse

pytestmark = pytest.mark.integration

GRID = {
    "rating": {"rank": [10], "reg_param": [0.1], "max_iter": [10], "passes": [1]},
    "ranking": {"rank": [16], "reg_param": [0.1], "alpha": [0.3], "max_iter": [6]},
}


def test_land_real_ml100k_counts_and_known_rows(spark, landed_ml100k):
    result, namespace = landed_ml100k.result, landed_ml100k.namespace

    assert result.rows == {"ratings": 100000, "movies": 1682, "users": 943, "quarantine": 0, "feedback_merged": 0}
    ratings = spark.table(namespace.table("ratings"))
    assert ratings.select("user_id").distinct().count() == 943
    row = ratings.where("user_id = 196 AND movie_id = 242").first()
    assert (row.rating, row.rated_at) == (3.0, dt.datetime(1997, 12, 4, 15, 55, 49))  # 881250949 in UTC
    movies = {r.movie_id: r for r in spark.table(namespace.table("movies")).where("movie_id IN (1, 1252)").collect()}
    assert movies[1].title == "Toy Story (1995)" and movies[1].genres == ["Animation", "Children's", "Comedy"]
    assert movies[1252].title == "Contempt (Mépris, Le) (1963)"  # Latin-1 decoded


@pytest.fixture(scope="module")
def classic(spark, landed_ml100k):
    """split -> train -> evaluate -> recommend on the landed ml-100k, in this process's classic session."""
    namespace, storage = landed_ml100k.namespace, landed_ml100k.storage
    result = split(spark, namespace, "benchmark")
    run_id = train(spark, namespace, storage, grid=GRID).details["run_id"]
    evaluate(spark, namespace, storage, run_id=run_id, k=10)
    assert promote(spark, namespace, run_id=run_id).details["decision"] == "first"
    recommend(spark, namespace)
    return namespace, run_id, result


def test_classic_pipeline_beats_the_quickstart_baseline(spark, classic):
    namespace, run_id, result = classic
    assert result.rows["splits"] == 100_000 and result.details["test"] == 24_934  # round(0.75 n) per movie
    m = {
        (r["model"], r["metric"]): r["value"]
        for r in spark.table(namespace.table("model_metrics")).where(F.col("run_id") == run_id).collect()
    }
    assert m[("ranking", "ndcg_at_k")] > 0.3 > m[("baseline", "ndcg_at_k")]
    assert m[("rating", "rmse")] < 0.96


def test_a_deliberately_bad_run_is_refused_and_the_served_rows_stay(spark, landed_ml100k, classic):
    namespace, storage = landed_ml100k.namespace, landed_ml100k.storage
    champion = registry.version_by_alias(namespace, "ranking", registry.CHAMPION)
    served = tables.table_version(spark, namespace, "user_recommendations")
    # One point per model (the default grid searches four ranking regularisers): rank 1, one iteration.
    bad = {"rating": {"rank": [1], "max_iter": [1], "passes": [1]},
           "ranking": {"rank": [1], "reg_param": [0.1], "max_iter": [1]}}  # fmt: skip
    run_id = train(spark, namespace, storage, grid=bad).details["run_id"]
    evaluate(spark, namespace, storage, run_id=run_id, k=10)
    decision = promote(spark, namespace, run_id=run_id)
    assert decision.details["decision"] == "refused", decision.details["reason"]
    assert registry.version_by_alias(namespace, "ranking", registry.CHAMPION).version == champion.version
    assert recommend(spark, namespace).details["unchanged"] is True
    assert tables.table_version(spark, namespace, "user_recommendations") == served
    row = spark.table(namespace.table("promotions")).where(F.col("run_id") == run_id).first()
    assert row["champion_ndcg"] - row["challenger_ndcg"] > row["ndcg_tolerance"]


@pytest.fixture(scope="module")
def published(spark, classic, landed_ml100k):
    """The classic DAG's schema with the views publish creates: everything the dashboard reads."""
    namespace, run_id, _ = classic
    publish(spark, namespace)
    # Feedback rows as a harvest leaves them (the harvest itself: the reference DAG and unit/ingest), so that the
    # dashboard's Feedback page has rows to show; ratings stay the release's.
    at = dt.datetime(2031, 1, 1, tzinfo=dt.UTC)
    rows = [(1_000_000_001, m, 5.0, at, "endpoint", "r-1", at) for m in (50, 172, 181, 174, 127)]
    tables.append(spark, namespace, FEEDBACK, spark.createDataFrame(rows, FEEDBACK.schema_ddl))
    return namespace, run_id, landed_ml100k.storage


def test_every_dashboard_dataset_returns_rows_and_the_columns_its_widgets_name(spark, published):
    namespace, run_id, _ = published
    board = load_dashboard()
    results = run_datasets(spark, namespace, board, REPORT_FETCH_ROWS)  # the namespace bound as the bundle binds it
    assert set(results) == set(board.datasets)
    for name, rows in results.items():
        assert rows.error is None and rows.rows, (name, rows.error)
    for page, widget in board.widgets():
        if widget.dataset is not None:
            for f in widget.fields:
                assert set(f.columns) <= set(results[widget.dataset].columns), (page.title, widget.name, f.expression)
    metrics = spark.table(namespace.table("model_metrics")).where(F.col("run_id") == run_id)
    ndcg = metrics.where("model = 'ranking' AND metric = 'ndcg_at_k'").first()["value"]
    shown = {(r["run_id"], r["model"]): r for r in results["model_quality"].records()}
    assert shown[(run_id, "ranking")]["ndcg_at_k"] == ndcg
    assert {m for _, m in shown} == {"rating", "ranking", "baseline", "popular"}
    assert results["champion"].records()[0]["decision"] == "first"
    assert results["ratings_per_month"].records()[0]["month"].isoformat() == "1997-09-01"
    assert sum(r["ratings"] for r in results["ratings_per_month"].records()) == 100_000


def test_report_of_the_ml100k_dag_has_every_datasets_title_and_figure(spark, published):
    require("matplotlib", "the report's charts, in the evaluate extra")
    namespace, run_id, storage = published
    result = write_report(spark, namespace, storage, run_id=run_id)
    assert result.details["unavailable"] == 0, result.headline
    path = Path(result.details["path"])
    assert path == storage / "reports" / run_id / "report.html"
    parsed = parse(path.read_text(encoding="utf-8"))
    board = load_dashboard()
    for name, dataset in board.datasets.items():
        figures = [f for f in parsed.figures if f["dataset"] == name]
        assert figures and all(dataset.title in f["caption"] for f in figures), name
        assert any(f["shows"] & {"img", "table", "counter"} for f in figures), name
    assert not any("error" in f["shows"] for f in parsed.figures)
    # Every chart is drawn but churn's: one served version so far, nothing to compare it with.
    charts = [w for _, w in board.widgets() if w.kind in ("line", "bar")]
    empty = [f["widget"] for f in parsed.figures if "empty" in f["shows"]]
    assert empty == ["churn_chart"] and sum("img" in f["shows"] for f in parsed.figures) == len(charts) - 1
    # One served version so far (the refused run kept the tables): nothing to compare, nothing fires.
    assert "Latest serving health" in parsed.text and "Within the alert's thresholds" in "".join(parsed.text)
