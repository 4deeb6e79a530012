"""Delta table definitions with comments, and the writes every task uses.

Each table is declared once as a TableSpec (columns, types, comments). Writes replace or append
data without touching the table's definition, and each write is one Delta commit: readers see
the previous version or the new one, never a half-written table.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from movielens_als.errors import MovieLensAlsError, first_line
from movielens_als.lakehouse.names import LOCAL_CATALOG, Namespace, quote
from movielens_als.lakehouse.spark import conf_value, on_databricks


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    comment: str
    nullable: bool = True

    @property
    def ddl(self) -> str:
        not_null = "" if self.nullable else " NOT NULL"
        return f"{quote(self.name, 'column')} {self.type}{not_null} COMMENT {sql_string(self.comment)}"


@dataclass(frozen=True)
class TableSpec:
    name: str
    comment: str
    columns: tuple[Column, ...]
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def schema_ddl(self) -> str:
        """``name TYPE, ...``: a schema for spark.createDataFrame."""
        return ", ".join(f"{c.name} {c.type}" for c in self.columns)

    def ddl(self, namespace: Namespace) -> str:
        cols = ",\n  ".join(c.ddl for c in self.columns)
        props = ", ".join(f"{sql_string(k)} = {sql_string(v)}" for k, v in self.properties.items())
        return (
            f"CREATE TABLE IF NOT EXISTS {namespace.table(self.name)} (\n  {cols}\n) USING DELTA"
            f" COMMENT {sql_string(self.comment)}" + (f" TBLPROPERTIES ({props})" if props else "")
        )

    def conform(self, df: DataFrame) -> DataFrame:
        """Select the spec's columns in order, cast to the declared types."""
        return df.select(*[F.col(c.name).cast(c.type).alias(c.name) for c in self.columns])


def sql_string(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def schema_exists(spark: SparkSession, namespace: Namespace) -> bool:
    return spark.catalog.databaseExists(f"{namespace.catalog}.{namespace.schema}")


def table_exists(spark: SparkSession, namespace: Namespace, name: str) -> bool:
    """True if the catalog knows the table, or (locally) its Delta log is on disk, which registers it."""
    if spark.catalog.tableExists(f"{namespace.catalog}.{namespace.schema}.{name}"):
        return True
    return register_location(spark, namespace, name)


def warehouse_dir(spark: SparkSession) -> Path | None:
    """The local warehouse folder of a session (None on Databricks, where Unity Catalog holds the tables)."""
    if on_databricks():
        return None
    value = conf_value(spark, "spark.sql.warehouse.dir")
    return Path(value.removeprefix("file:")) if value else None


def committed(location: Path) -> bool:
    """A Delta table folder with at least one commit: a CREATE killed mid-way leaves the folder, an empty log."""
    log = location / "_delta_log"
    return log.is_dir() and any(
        p.name[:20].isdigit() and p.name.endswith((".json", ".checkpoint.parquet")) for p in log.iterdir()
    )


def _local_location(spark: SparkSession, namespace: Namespace, name: str) -> Path | None:
    warehouse = warehouse_dir(spark)
    if namespace.catalog != LOCAL_CATALOG or warehouse is None:
        return None
    return warehouse / f"{namespace.schema.lower()}.db" / name


def register_location(spark: SparkSession, namespace: Namespace, name: str) -> bool:
    """Make a local Delta table that another process created known to this session's catalog."""
    location = _local_location(spark, namespace, name)
    if location is None or not committed(location):
        return False
    spark.sql(f"CREATE SCHEMA IF NOT EXISTS {namespace.qualified_schema}")
    create = f"CREATE TABLE IF NOT EXISTS {namespace.table(name)} USING DELTA LOCATION {sql_string(str(location))}"
    try:
        spark.sql(create)
    except Exception as exc:
        if not any(marker in str(exc) for marker in _UNREADABLE_LOG):
            raise
        raise MovieLensAlsError(
            f"table {namespace}.{name} cannot be read from {location}: its Delta log is damaged "
            f"({first_line(exc)[:200]}); restore the folder from a backup, or delete it and run the task that "
            "writes it again"
        ) from exc
    return True


# What Spark says when a commit file of the log cannot be parsed.
_UNREADABLE_LOG = ("FAILED_READ_FILE", "MALFORMED_RECORD", "JsonParseException", "DELTA_LOG_FILE_NOT_FOUND")


def require_table(spark: SparkSession, namespace: Namespace, name: str, hint: str) -> DataFrame:
    """The table, or one clear error naming it and the command that makes it (``hint``)."""
    if not table_exists(spark, namespace, name):
        raise MovieLensAlsError(f"table {namespace}.{name} is missing: {hint}")
    return spark.table(namespace.table(name))


def ensure_schema(spark: SparkSession, namespace: Namespace) -> None:
    """Create the schema if it is missing (on Databricks the bundle normally owns it)."""
    if not schema_exists(spark, namespace):
        spark.sql(f"CREATE SCHEMA IF NOT EXISTS {namespace.qualified_schema}")


def ensure_table(spark: SparkSession, namespace: Namespace, spec: TableSpec) -> str:
    """Create the table from its spec if missing, add columns a newer spec declares; return its quoted name."""
    name = namespace.table(spec.name)
    if not table_exists(spark, namespace, spec.name):
        ensure_schema(spark, namespace)
        try:
            spark.sql(spec.ddl(namespace))
        except Exception:
            # A CREATE killed mid-way leaves its folder without a commit, which no reader sees as a table
            # but which blocks the next CREATE; removed only then, so a CREATE under way elsewhere is kept.
            location = _local_location(spark, namespace, spec.name)
            if location is None or not location.exists() or committed(location):
                raise
            shutil.rmtree(location)
            spark.sql(spec.ddl(namespace))
        return name
    existing = set(spark.table(name).columns)
    missing = [c for c in spec.columns if c.name not in existing]
    if missing:
        spark.sql(f"ALTER TABLE {name} ADD COLUMNS ({', '.join(c.ddl for c in missing)})")
    return name


def overwrite(
    spark: SparkSession, namespace: Namespace, spec: TableSpec, df: DataFrame, metadata: str | None = None
) -> None:
    """Replace the table's rows in one Delta commit, keeping its definition and comments; ``metadata`` is kept
    in that commit (``DESCRIBE HISTORY``'s ``userMetadata``)."""
    name = ensure_table(spark, namespace, spec)
    writer = spec.conform(df).writeTo(name)
    if metadata is not None:
        writer = writer.option("userMetadata", metadata)
    writer.overwrite(F.lit(True))


def append(spark: SparkSession, namespace: Namespace, spec: TableSpec, df: DataFrame) -> None:
    """Append rows in one Delta commit."""
    name = ensure_table(spark, namespace, spec)
    spec.conform(df).writeTo(name).append()


def replace_where(spark: SparkSession, namespace: Namespace, spec: TableSpec, df: DataFrame, condition) -> None:
    """Replace only the rows matching ``condition`` (a Column) in one Delta commit."""
    name = ensure_table(spark, namespace, spec)
    spec.conform(df).writeTo(name).overwrite(condition)


def table_version(spark: SparkSession, namespace: Namespace, table: str) -> int | None:
    """Latest Delta version of a table, or None if it does not exist."""
    if not table_exists(spark, namespace, table):
        return None
    row = spark.sql(f"DESCRIBE HISTORY {namespace.table(table)} LIMIT 1").select("version").first()
    return int(row[0])


def last_commit_metadata(spark: SparkSession, namespace: Namespace, table: str) -> str | None:
    """The ``userMetadata`` of a table's latest commit, or None (no table, or none written)."""
    if not table_exists(spark, namespace, table):
        return None
    return spark.sql(f"DESCRIBE HISTORY {namespace.table(table)} LIMIT 1").select("userMetadata").first()[0]
