"""``movielens-als sql``: run SQL against the lakehouse as on Databricks, printed as a table, JSON or CSV.

The current catalog and schema are set to the namespace, so the unqualified names of the README
queries resolve exactly as in a Databricks SQL editor with that schema selected. With ``--warehouse``
the query runs on a Databricks SQL warehouse instead (:mod:`.warehouse`), printed by the same code.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
import math
from dataclasses import dataclass

from pyspark.errors import AnalysisException, ParseException
from pyspark.sql import DataFrame, SparkSession

from movielens_als.config import SQL_FORMATS, TABLE_LIMIT
from movielens_als.errors import MovieLensAlsError, first_line
from movielens_als.lakehouse.names import Namespace, quote
from movielens_als.lakehouse.tables import schema_exists


def split_statements(text: str) -> list[str]:
    """Split SQL text on ``;`` outside quotes, backticks and comments; drop empty statements.

    Comments stay inside their statement (Spark ignores them); a statement that is only comments
    is dropped.
    """
    statements: list[str] = []
    buf: list[str] = []
    has_code = False
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in ("'", '"', "`"):
            end = _closing_quote(text, i)
            buf.append(text[i:end])
            has_code = True
            i = end
        elif text.startswith("--", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
            buf.append(text[i:end])
            i = end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise MovieLensAlsError("unterminated /* comment in SQL text")
            buf.append(text[i : end + 2])
            i = end + 2
        elif c == ";":
            if has_code:
                statements.append("".join(buf).strip())
            buf, has_code = [], False
            i += 1
        else:
            buf.append(c)
            has_code = has_code or not c.isspace()
            i += 1
    if has_code:
        statements.append("".join(buf).strip())
    return statements


def _closing_quote(text: str, start: int) -> int:
    """Index just past the quote closing the one at ``start`` (backslash escapes in strings)."""
    q = text[start]
    i = start + 1
    while i < len(text):
        if text[i] == "\\" and q != "`":
            i += 2
            continue
        if text[i] == q:
            if q == "`" and text.startswith("``", i):  # a doubled backtick is a literal backtick
                i += 2
                continue
            return i + 1
        i += 1
    raise MovieLensAlsError(f"unterminated {q} quote in SQL text")


def use_namespace(spark: SparkSession, namespace: Namespace) -> None:
    """Make the namespace's catalog and schema current, so unqualified names resolve in it."""
    spark.sql(f"USE {namespace.qualified_schema}")


def substitute(query: str, namespace: Namespace) -> str:
    """Replace ``{catalog}`` and ``{schema}`` by the validated, backtick-quoted namespace parts."""
    return query.replace("{catalog}", quote(namespace.catalog, "catalog")).replace(
        "{schema}", quote(namespace.schema, "schema")
    )


@dataclass(frozen=True)
class SqlResult:
    """What ``sql`` prints: the formatted rows, and a note for stderr when rows were left out."""

    text: str
    note: str | None = None


def run_sql(
    spark: SparkSession, namespace: Namespace, query: str, fmt: str = "table", limit: int | None = None
) -> SqlResult:
    """Run ``query`` (one or more ``;``-separated statements) in the namespace; format the last result.

    ``limit`` None means every row for the machine formats (an export is never cut silently) and
    ``TABLE_LIMIT`` rows for the table a person reads; any cut is said in ``note``.
    """
    cap = row_cap(fmt, limit)
    statements = split_statements(substitute(query, namespace))
    if not statements:
        raise MovieLensAlsError("no SQL statement given")
    if not schema_exists(spark, namespace):
        raise MovieLensAlsError(f"schema {namespace} does not exist: run `movielens-als land` first")
    use_namespace(spark, namespace)
    df = None
    for statement in statements:
        df = _execute(spark, statement)
    columns = df.columns
    if not columns:
        rows = []
    elif cap is None:
        rows = [tuple(r) for r in df.toLocalIterator()]
    else:
        rows = [tuple(r) for r in df.limit(cap + 1).collect()]
    return format_result(columns, rows, fmt, cap)


def row_cap(fmt: str, limit: int | None) -> int | None:
    """Validate ``fmt`` and ``limit``; the most rows to print, None for all (see :func:`run_sql`)."""
    if fmt not in SQL_FORMATS:
        raise MovieLensAlsError(f"invalid format {fmt!r}: expected one of {', '.join(SQL_FORMATS)}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise MovieLensAlsError(f"invalid limit {limit!r}: expected a positive integer")
    return limit if limit is not None else (TABLE_LIMIT if fmt == "table" else None)


def format_result(columns: list[str], rows: list[tuple], fmt: str, cap: int | None) -> SqlResult:
    """Print ``rows`` in ``fmt``; more than ``cap`` rows (fetch ``cap + 1``) means the result was cut."""
    truncated = cap is not None and len(rows) > cap
    rows = rows[:cap] if truncated else rows
    note = f"note: printed the first {cap} rows; the result has more (pass --limit N to change)" if truncated else None
    if fmt == "json":
        lines = (json.dumps(dict(zip(columns, map(_json_value, r), strict=True)), ensure_ascii=False) for r in rows)
        return SqlResult("\n".join(lines), note)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_csv_value(v) for v in r] for r in rows])
        return SqlResult(out.getvalue().rstrip("\n"), note)
    if not columns:
        return SqlResult("OK")
    return SqlResult(format_table(columns, rows, truncated=truncated), note)


def _execute(spark: SparkSession, statement: str) -> DataFrame:
    try:
        df = spark.sql(statement)
        _ = df.schema  # Spark Connect analyses lazily: resolve now, so a bad query fails here
        return df
    except (AnalysisException, ParseException) as exc:
        # One line for the command line: Spark's messages carry the SQL position in later lines.
        raise MovieLensAlsError(f"SQL failed: {first_line(exc)}") from exc


def _text(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.4f}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_text(k)}: {_text(v)}" for k, v in value.items()) + "}"
    if hasattr(value, "asDict"):
        return _text(value.asDict())
    return str(value)


def format_table(columns: list[str], rows: list[tuple], truncated: bool = False) -> str:
    """An aligned text table (floats to 4 decimals), with a row count footer."""
    cells = [[_text(v) for v in r] for r in rows]
    numeric = [
        all(
            isinstance(r[i], (int, float, decimal.Decimal)) and not isinstance(r[i], bool)
            for r in rows
            if r[i] is not None
        )
        and any(r[i] is not None for r in rows)
        for i in range(len(columns))
    ]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]

    def line(values):
        cells = zip(values, widths, numeric, strict=True)
        return " | ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in cells).rstrip()

    out = [line(columns), "-+-".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    count = f"({len(rows)} row{'s' if len(rows) != 1 else ''}{', truncated' if truncated else ''})"
    return "\n".join(out + [count])


def _json_value(value):
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if hasattr(value, "asDict"):
        return _json_value(value.asDict())
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    return value


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, (list, tuple, dict)) or hasattr(value, "asDict"):
        return json.dumps(_json_value(value), ensure_ascii=False)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    return value
