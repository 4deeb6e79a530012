"""The dashboard's dataset queries run on the lakehouse, with the catalog and schema current as the bundle binds
the dashboard's (``dataset_catalog``/``dataset_schema``): unqualified names resolve in the namespace."""

from __future__ import annotations

from typing import Any

from pyspark.errors import PySparkException
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from movielens_als.errors import first_line
from movielens_als.lakehouse.names import Namespace
from movielens_als.lakehouse.sql import use_namespace
from movielens_als.lakehouse.tables import table_exists
from movielens_als.report.dashboard import Dashboard, Dataset
from movielens_als.report.page import Rows
from movielens_als.serving.health import SERVING_HEALTH


def run_datasets(spark: SparkSession, namespace: Namespace, dashboard: Dashboard, max_rows: int) -> dict[str, Rows]:
    """Each dataset's rows (at most ``max_rows``); a query that fails is its one-line error, not the report's end."""
    previous = (spark.catalog.currentCatalog(), spark.catalog.currentDatabase())
    try:
        use_namespace(spark, namespace)
        return {name: dataset_rows(spark, namespace, d, max_rows) for name, d in dashboard.datasets.items()}
    finally:
        # The caller's session keeps its namespace (the local runner shares one session across tasks).
        spark.catalog.setCurrentCatalog(previous[0])
        spark.catalog.setCurrentDatabase(previous[1])


def dataset_rows(spark: SparkSession, namespace: Namespace, dataset: Dataset, max_rows: int) -> Rows:
    """The dataset's rows, or why there are none: a table its task has not written yet is said so in one line
    (checked first, so Spark logs no analysis error for it)."""
    missing = [t for t in dataset.tables if not table_exists(spark, namespace, t)]
    if missing:
        return Rows(error=f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not there yet")
    try:
        df = spark.sql(dataset.query)
        rows = df.limit(max_rows + 1).collect()
    except PySparkException as exc:
        return Rows(error=first_line(exc))
    return Rows(tuple(df.columns), tuple(tuple(r) for r in rows[:max_rows]), truncated=len(rows) > max_rows)


def latest_health(spark: SparkSession, namespace: Namespace) -> dict[str, Any] | None:
    """The serving_health row of the latest served version, None before recommend wrote one."""
    if not table_exists(spark, namespace, SERVING_HEALTH.name):
        return None
    table = spark.table(namespace.table(SERVING_HEALTH.name))
    row = table.orderBy(F.desc("user_recommendations_version")).first()
    return row.asDict() if row is not None else None
