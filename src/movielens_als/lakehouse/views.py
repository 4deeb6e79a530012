"""The SQL views and functions of ``jobs/sql``: found, parsed and created in a namespace.

The files are the same text a Databricks SQL file task or dashboard runs: each starts with
``SET CATALOG IDENTIFIER(:catalog); USE SCHEMA IDENTIFIER(:schema);`` and then uses unqualified
names. Here the two named parameters are bound from the validated namespace, so a catalog or
schema name never becomes SQL text. The wheel carries a copy of ``jobs/sql`` as
``movielens_als/jobs_sql``; a source checkout (editable install) uses ``jobs/sql`` itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import SparkSession

from movielens_als.errors import MovieLensAlsError, first_line
from movielens_als.faults import failpoint
from movielens_als.lakehouse.names import Namespace
from movielens_als.lakehouse.sql import split_statements
from movielens_als.lakehouse.tables import table_exists

# Tables the view files read; checked first so a missing one is one clear line, not a Spark trace.
REQUIRED_TABLES = ("ratings", "movies", "user_recommendations", "popular_movies", "similar_movies")

_CREATED = re.compile(
    r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:TEMPORARY\s+)?(VIEW|FUNCTION)\s+(?:IF\s+NOT\s+EXISTS\s+)?([A-Za-z_][A-Za-z0-9_]*)",
    re.IGNORECASE,
)
_COMMENT_LINE = re.compile(r"^\s*--[^\n]*\n", re.MULTILINE)


@dataclass(frozen=True)
class Published:
    files: int
    views: tuple[str, ...]
    functions: tuple[str, ...]


def default_sql_dir() -> Path:
    """The packaged copy of jobs/sql, else jobs/sql of the source checkout."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "jobs_sql", package.parents[1] / "jobs" / "sql"):
        if candidate.is_dir() and any(candidate.glob("*.sql")):
            return candidate
    raise MovieLensAlsError(
        "no view SQL files found: neither the packaged movielens_als/jobs_sql nor jobs/sql; pass --sql-dir"
    )


def sql_files(sql_dir: str | Path | None = None) -> list[Path]:
    """The ``*.sql`` files of ``sql_dir`` (default: the packaged copy), in name order."""
    folder = Path(sql_dir) if sql_dir is not None else default_sql_dir()
    if not folder.is_dir():
        raise MovieLensAlsError(f"SQL folder {folder} does not exist")
    files = sorted(folder.glob("*.sql"))
    if not files:
        raise MovieLensAlsError(f"no .sql files in {folder}")
    return files


def created_object(statement: str) -> tuple[str, str] | None:
    """(``VIEW``|``FUNCTION``, name) if the statement creates one, else None."""
    match = _CREATED.match(_COMMENT_LINE.sub("", statement))
    return (match.group(1).upper(), match.group(2)) if match else None


def publish_views(spark: SparkSession, namespace: Namespace, sql_dir: str | Path | None = None) -> Published:
    """Run every statement of the view SQL files with :catalog/:schema bound to the namespace."""
    files = sql_files(sql_dir)
    scripts = [(path, split_statements(path.read_text(encoding="utf-8"))) for path in files]
    missing = [t for t in REQUIRED_TABLES if not table_exists(spark, namespace, t)]
    if missing:
        raise MovieLensAlsError(
            f"cannot publish views in {namespace}: missing table(s) {', '.join(missing)}; "
            "run land, train and recommend first"
        )
    params = {"catalog": namespace.catalog, "schema": namespace.schema}
    previous = (spark.catalog.currentCatalog(), spark.catalog.currentDatabase())
    views: list[str] = []
    functions: list[str] = []
    try:
        for path, statements in scripts:
            for statement in statements:
                try:
                    spark.sql(statement, args=params)
                except Exception as exc:
                    raise MovieLensAlsError(f"{path.name}: {first_line(exc)}") from exc
                failpoint("publish.statement")
                created = created_object(statement)
                if created:
                    (views if created[0] == "VIEW" else functions).append(created[1])
    finally:
        # The files switch the session's namespace; callers keep theirs.
        spark.catalog.setCurrentCatalog(previous[0])
        spark.catalog.setCurrentDatabase(previous[1])
    return Published(len(files), tuple(views), tuple(functions))
