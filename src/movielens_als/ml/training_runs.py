"""A training run's row in ``training_runs``, the one place train writes it: claimed, started, then ended.

The row is written when the run starts (``running``, with its owner process) and replaced when it ends, so a run
killed outright leaves a ``running`` row of a dead process, which the next run's claim marks failed.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from movielens_als.errors import MovieLensAlsError
from movielens_als.ids import utc_now
from movielens_als.lakehouse import tables
from movielens_als.lakehouse.names import Namespace
from movielens_als.ml import registry
from movielens_als.ml.models import TRAINING_RUNS
from movielens_als.processes import alive as owner_alive
from movielens_als.processes import owner_tag


def write_run(spark: SparkSession, namespace: Namespace, row: dict[str, Any]) -> None:
    """Replace ``row["run_id"]``'s row with ``row`` (columns it lacks are NULL)."""
    values = {c.name: row.get(c.name) for c in TRAINING_RUNS.columns}
    df = spark.createDataFrame([values], schema=TRAINING_RUNS.schema_ddl)
    tables.replace_where(spark, namespace, TRAINING_RUNS, df, F.col("run_id") == row["run_id"])


def claim_run(spark: SparkSession, namespace: Namespace, run_id: str) -> None:
    """Check ``run_id`` may be trained, and mark ``running`` rows of dead processes failed, with the reason.

    A failed or killed attempt of the same run id (a job task retry) is trained again and its row
    replaced; a succeeded one, or one whose process still runs on this host, is an error. Rows of
    other hosts' processes are left alone unless they are this run id's.
    """
    if not tables.table_exists(spark, namespace, TRAINING_RUNS.name):
        return
    name = tables.ensure_table(spark, namespace, TRAINING_RUNS)  # adds `owner` to an older table
    running = spark.table(name).where((F.col("status") == "running") | (F.col("run_id") == run_id))
    rows = [
        (r.run_id, r.status, r.owner, owner_alive(r.owner))
        for r in running.select("run_id", "status", "owner").collect()
    ]
    for rid, status, owner, alive in rows:
        if rid == run_id and (status == "succeeded" or (status == "running" and alive)):
            state = "already exists" if status == "succeeded" else f"is being trained by {owner}"
            raise MovieLensAlsError(f"training run {run_id!r} {state} in {namespace}: pick another --run-id")
    dead = [rid for rid, status, _, alive in rows if status == "running" and (rid == run_id or alive is False)]
    if not dead:
        return
    ids = {f"id{i}": d for i, d in enumerate(dead)}
    spark.sql(
        f"UPDATE {name} SET status = 'failed', finished_at = :now, "
        "error = concat('process ', coalesce(owner, '?'), ' stopped while training (found by run ', :by, ')') "
        f"WHERE status = 'running' AND run_id IN ({', '.join(':' + k for k in ids)})",
        args={"now": utc_now(), "by": run_id, **ids},
    )
    registry.fail_runs(dead)


class RunRecord:
    """This run's row: :meth:`start` writes it ``running``, :meth:`succeeded` or :meth:`failed` replaces it."""

    def __init__(self, spark: SparkSession, namespace: Namespace, run_id: str):
        self.spark, self.namespace = spark, namespace
        self.row: dict[str, Any] = {"run_id": run_id}

    def start(self, **columns: Any) -> None:
        self.row.update(columns, status="running", started_at=utc_now(), owner=owner_tag())
        write_run(self.spark, self.namespace, self.row)

    def succeeded(self, **columns: Any) -> None:
        self.row.update(columns, status="succeeded", finished_at=utc_now())
        write_run(self.spark, self.namespace, self.row)

    def failed(self, error: str, **columns: Any) -> None:
        self.row.update(columns, status="failed", finished_at=utc_now(), error=error[:2000])
        write_run(self.spark, self.namespace, self.row)
