"""The local lakehouse as many processes share it: Delta tables on disk, each session's own catalog.

On Databricks, Unity Catalog lets any number of readers and writers share the tables. Locally there
is no shared metastore to emulate that with: Hive's embedded Derby admits one process at a time,
so a query during a job failed with ``Unable to instantiate SessionHiveMetaStoreClient``. Instead
every session has an in-memory catalog that :func:`open_lakehouse` fills from the warehouse folder:
each ``<schema>.db/<table>`` whose ``_delta_log`` holds a commit is registered by its location, and the views
of ``jobs/sql`` are created again where their tables exist. The Delta log is then the only shared
state, and its optimistic concurrency is what Databricks relies on too: a reader sees the last
committed version, and of two writers of one table the later either commits or fails with a
conflict. A table another process creates later is found on disk when a task looks for it
(:func:`tables.table_exists`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pyspark.sql import SparkSession

from movielens_als.errors import InvalidIdentifierError
from movielens_als.lakehouse.names import LOCAL_CATALOG, Namespace
from movielens_als.lakehouse.spark import get_spark, on_databricks
from movielens_als.lakehouse.tables import committed, register_location, warehouse_dir
from movielens_als.lakehouse.views import REQUIRED_TABLES, publish_views

log = logging.getLogger(__name__)


def open_lakehouse(
    home: str | os.PathLike | None = None, remote: str | None = None, namespace: Namespace | None = None
) -> SparkSession:
    """A session on the lakehouse: on Databricks the runtime's; locally one whose catalog holds the tables of
    ``namespace``'s schema (default: every schema)."""
    spark = get_spark(home, remote=remote)
    if not on_databricks():
        register_lakehouse(spark, namespace.schema if namespace else None)
    return spark


def register_lakehouse(spark: SparkSession, schema: str | None = None) -> list[str]:
    """Register the Delta tables under the warehouse (one schema's, or all), then the views of schemas that have
    their tables. Registering reads each table's log: a task registers its own schema only."""
    warehouse = warehouse_dir(spark)
    registered = []
    # The session catalog keeps schema names in lower case, and so do their folders.
    for folder in sorted(warehouse.glob("*.db" if schema is None else f"{schema.lower()}.db")) if warehouse else []:
        try:
            namespace = Namespace(LOCAL_CATALOG, folder.name[: -len(".db")])
        except InvalidIdentifierError:
            continue  # not a folder this package made
        tables = [p.name for p in sorted(folder.iterdir()) if committed(p)]
        for name in tables:
            if register_location(spark, namespace, name):
                registered.append(f"{namespace}.{name}")
        if set(REQUIRED_TABLES) <= set(tables):
            _views(spark, namespace)
    return registered


def _views(spark: SparkSession, namespace: Namespace) -> None:
    try:
        publish_views(spark, namespace)
    except Exception as exc:  # noqa: BLE001 - the tables stay queryable; only the convenience views are missing
        log.warning("views of %s not created: %s", namespace, exc)


def delta_path(home: Path, schema: str, table: str) -> Path:
    """Where a local table's files are: readable without any catalog (``delta.`<path>` ``)."""
    return home / "warehouse" / f"{schema}.db" / table
