"""`report` on Spark: the file under <volume>/reports/<run_id>/, the latest training run by default, datasets
whose tables are not there yet said so, and `run` handing it the job's namespace and thresholds."""

from __future__ import annotations

import datetime as dt
from html.parser import HTMLParser
from types import SimpleNamespace

import pytest

from movielens_als import commands, config
from movielens_als.bundle import runner
from movielens_als.bundle.config import Plan
from movielens_als.errors import MovieLensAlsError
from movielens_als.lakehouse import tables
from movielens_als.ml.models import MODEL_METRICS, TRAINING_RUNS
from movielens_als.report.dashboard import default_dashboard_path
from movielens_als.report.write import report_path, write_report
from movielens_als.serving.health import SERVING_HEALTH, Thresholds

T0 = dt.datetime(2026, 1, 1, 5)


def put(spark, namespace, spec, rows: list[dict]) -> None:
    """Rows of a table, unnamed columns NULL."""
    data = [tuple(row.get(c) for c in spec.column_names) for row in rows]
    tables.append(spark, namespace, spec, spark.createDataFrame(data, spec.schema_ddl))


def training_run(run_id: str, status: str, hour: int) -> dict:
    return {"run_id": run_id, "protocol": "benchmark", "status": status, "finished_at": T0.replace(hour=hour),
            "ranking_model_version": hour, "rating_model_version": hour}  # fmt: skip


def health(version: int, churn: float | None, coverage: float, previous: float | None) -> dict:
    return {"user_recommendations_version": version, "checked_at": T0, "churn": churn, "catalog_coverage": coverage,
            "previous_coverage": previous, "users_served": 3}  # fmt: skip


@pytest.fixture
def lakehouse(spark, namespace):
    put(spark, namespace, TRAINING_RUNS, [training_run("r1", "succeeded", 6), training_run("r2", "failed", 7)])
    put(spark, namespace, MODEL_METRICS, [
        {"run_id": "r1", "model": m, "metric": "ndcg_at_k", "k": 10, "value": v, "evaluated_at": T0}
        for m, v in (("ranking", 0.48), ("baseline", 0.04), ("popular", 0.25))
    ])  # fmt: skip
    put(spark, namespace, SERVING_HEALTH, [health(1, None, 0.2, None), health(2, 0.7, 0.19, 0.2)])
    return namespace


def test_report_of_the_latest_succeeded_run_lands_beside_its_plots(spark, lakehouse, storage):
    current = spark.catalog.currentDatabase()
    result = write_report(spark, lakehouse, storage, rows=5)
    path = report_path(storage, "r1")
    assert result.details["run_id"] == "r1" and result.details["path"] == str(path) and path.is_file()
    page = path.read_text(encoding="utf-8")
    HTMLParser().feed(page)
    assert "The serving_health alert fires: churn 0.700 above 0.5." in page
    assert "succeeded, protocol benchmark, finished 2026-01-01 06:00:00, ranking model version 6" in page
    assert 'data-widget="ndcg_chart"' in page and "data:image/png;base64," in page
    # Tables the test did not write: said per figure, counted in the result, never the end of the report.
    assert "Not available: ingestion_runs is not there yet" in page
    assert "Not available: user_recommendations, promotions are not there yet" in page
    assert result.details["unavailable"] == 10 and "Landings" in result.headline
    assert spark.catalog.currentDatabase() == current


def test_report_thresholds_decide_the_verdict_and_a_run_must_exist(spark, lakehouse, storage):
    write_report(spark, lakehouse, storage, run_id="r1", thresholds=Thresholds(0.8, 0.05))
    assert "Within the alert's thresholds (max churn 0.8000" in report_path(storage, "r1").read_text()
    with pytest.raises(MovieLensAlsError, match="no succeeded training run 'r2'"):
        write_report(spark, lakehouse, storage, run_id="r2")


def test_report_command_defaults_come_from_config():
    args = commands.build_parser().parse_args(["report"])
    assert (args.run_id, args.dashboard, args.max_churn, args.max_coverage_drop, args.rows) == (
        None,
        None,
        config.RECOMMEND.max_churn,
        config.RECOMMEND.max_coverage_drop,
        config.REPORT.rows,
    )


def plan(**parameters) -> Plan:
    return Plan("movielens_als", "dev", "local-1", parameters, ())


def test_run_passes_the_jobs_namespace_and_thresholds_and_prints_the_path(monkeypatch, tmp_path):
    seen = []

    def execute(args, spark):
        seen.append(args)
        return SimpleNamespace(details={"path": "/v/reports/local-1/report.html"})

    monkeypatch.setattr(runner.commands, "execute", execute)
    params = {"catalog": "spark_catalog", "schema": "films", "volume": "files2", "max_churn": "0.3",
              "max_coverage_drop": "0.01", "top_n": "10"}  # fmt: skip
    line = runner.write_report(commands.build_parser(), plan(**params), "/h", None, default_dashboard_path())
    assert line == "report: /v/reports/local-1/report.html"
    runner.write_report(commands.build_parser(), plan(), None, None, tmp_path / "no.lvdash.json")
    first, second = seen
    assert (first.command, first.run_id, first.catalog, first.schema, first.volume, first.home) == (
        "report", "local-1", "spark_catalog", "films", "files2", "/h"
    )  # fmt: skip
    assert (first.max_churn, first.max_coverage_drop) == (0.3, 0.01)
    assert first.dashboard == str(default_dashboard_path())
    assert second.dashboard is None and second.max_churn == config.RECOMMEND.max_churn  # not there: the default


def test_run_says_why_no_report_was_written_and_still_succeeds(monkeypatch):
    def execute(args, spark):
        raise MovieLensAlsError("no training runs in spark_catalog.films: run `movielens-als train` first")

    monkeypatch.setattr(runner.commands, "execute", execute)
    line = runner.write_report(commands.build_parser(), plan(schema="films"), None, None)
    assert line == "report: not written: no training runs in spark_catalog.films: run `movielens-als train` first"
