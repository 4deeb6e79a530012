"""``movielens-als report``: run the dashboard's datasets and write ``<volume>/reports/<run_id>/report.html``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pyspark.sql import SparkSession

from movielens_als.config import REPORT, REPORT_FETCH_ROWS
from movielens_als.lakehouse.names import Namespace
from movielens_als.ml.models import resolve_run_id, run_info
from movielens_als.report.dashboard import load_dashboard
from movielens_als.report.datasets import latest_health, run_datasets
from movielens_als.report.page import Header, render_report
from movielens_als.result import TaskResult
from movielens_als.serving.health import Thresholds, alerts

REPORT_FILE = "report.html"
THRESHOLDS = Thresholds(REPORT.max_churn, REPORT.max_coverage_drop)


def report_path(storage: Path, run_id: str) -> Path:
    """Beside the run's evaluation plots."""
    return Path(storage) / "reports" / run_id / REPORT_FILE


def write_report(
    spark: SparkSession,
    namespace: Namespace,
    storage: Path,
    run_id: str | None = REPORT.run_id,
    dashboard: str | Path | None = REPORT.dashboard,
    thresholds: Thresholds = THRESHOLDS,
    rows: int = REPORT.rows,
) -> TaskResult:
    """The report of ``run_id`` (default: the latest succeeded training run); its path is ``details["path"]``."""
    board = load_dashboard(dashboard)
    run_id = resolve_run_id(spark, namespace, run_id)
    run = run_info(spark, namespace, run_id)
    results = run_datasets(spark, namespace, board, REPORT_FETCH_ROWS)
    health = latest_health(spark, namespace)
    header = Header(
        title=f"MovieLens ALS: run {run_id}",
        facts=(
            ("schema", str(namespace)),
            (
                "training run",
                f"{run['status']}, protocol {run['protocol']}, finished {_when(run['finished_at'])}, "
                f"ranking model version {run['ranking_model_version']}, rating model version "
                f"{run['rating_model_version']}",
            ),
            ("datasets", f"{len(board.datasets)} from {board.path.name}, as the dashboard binds them"),
            ("written", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")),
        ),
        health=health,
        warnings=tuple(alerts(health, thresholds)) if health else (),
        thresholds=(("max churn", thresholds.max_churn), ("max coverage drop", thresholds.max_coverage_drop)),
    )
    path = report_path(storage, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(board, results, header, rows), encoding="utf-8")
    missing = [board.datasets[name].title for name, r in results.items() if r.error is not None]
    return TaskResult(
        "report",
        details={"run_id": run_id, "datasets": len(results), "unavailable": len(missing), "path": str(path)},
        headline=f"not available yet: {', '.join(missing)}" if missing else None,
    )


def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"
