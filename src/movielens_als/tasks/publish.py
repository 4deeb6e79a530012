"""The publish task: create or replace the SQL views and functions of ``jobs/sql`` over the tables."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import SparkSession

from movielens_als.lakehouse.names import Namespace
from movielens_als.lakehouse.views import publish_views
from movielens_als.result import TaskResult


def publish(spark: SparkSession, namespace: Namespace, sql_dir: str | Path | None = None) -> TaskResult:
    """Run the view SQL files in ``namespace``; the rows each view returns are the task's figures."""
    done = publish_views(spark, namespace, sql_dir)
    return TaskResult(
        "publish",
        rows={view: spark.table(namespace.table(view)).count() for view in done.views},
        details={"files": done.files, "views": ",".join(done.views), "functions": ",".join(done.functions)},
    )
