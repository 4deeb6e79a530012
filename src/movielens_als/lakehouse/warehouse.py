"""``movielens-als sql --warehouse ID``: the same query on a Databricks SQL warehouse, no local Spark.

The statements run through :mod:`.statements`; the last one's rows are printed by
:func:`movielens_als.lakehouse.sql.format_result`, so the output matches the local path.
"""

from __future__ import annotations

import re

import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import DatabricksError

from movielens_als.config import Sql
from movielens_als.errors import MovieLensAlsError, first_line
from movielens_als.lakehouse.names import Namespace
from movielens_als.lakehouse.sql import SqlResult, format_result, row_cap, split_statements, substitute
from movielens_als.lakehouse.statements import api_failure, check, connect, decode, execute, fetch

__all__ = ["decode", "execute", "run_warehouse_sql"]


def run_warehouse_sql(
    warehouse_id: str,
    namespace: Namespace,
    query: str,
    fmt: str = "table",
    limit: int | None = None,
    *,
    profile: str | None = None,
    timeout: float = Sql.timeout,
    client: WorkspaceClient | None = None,
) -> SqlResult:
    """Run ``query``'s statements one after another on the warehouse; format the last result as ``run_sql`` does."""
    cap = row_cap(fmt, limit)
    statements = split_statements(substitute(query, namespace))
    if not statements:
        raise MovieLensAlsError("no SQL statement given")
    if timeout <= 0:
        raise MovieLensAlsError(f"invalid timeout {timeout!r}: expected a positive number of seconds")
    client = client or connect(warehouse_id, profile)
    try:
        for i, statement in enumerate(statements, 1):
            last = i == len(statements)
            # The printed statement fetches one row past the cap, as run_sql does, to tell a cut result.
            row_limit = cap + 1 if last and cap is not None else None
            response = execute(client, warehouse_id, namespace, statement, timeout=timeout, row_limit=row_limit)
            check(response, warehouse_id, f" (statement {i} of {len(statements)})" if len(statements) > 1 else "")
        columns, rows = fetch(client, response, cap)
    except DatabricksError as exc:
        raise MovieLensAlsError(api_failure(exc, warehouse_id, client)) from exc
    except (TimeoutError, requests.RequestException) as exc:
        # The SDK raises TimeoutError when its retries of a refused or timed-out connection run out.
        text = first_line(exc.__cause__ or exc)
        reason = re.search(r"\[Errno -?\d+\] [^'\")]*", text)  # urllib3 nests the OS's reason deep inside
        raise MovieLensAlsError(
            f"warehouse {warehouse_id}: cannot connect to {client.config.host} "
            f"({reason.group(0) if reason else text[:200]}): check DATABRICKS_HOST or the profile's host"
        ) from exc
    return format_result(columns, rows, fmt, cap)
