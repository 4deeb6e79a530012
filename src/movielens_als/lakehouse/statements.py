"""Statements on a Databricks SQL warehouse through the SDK's Statement Execution API, without Spark.

INLINE disposition, JSON_ARRAY format, the namespace as the statement's catalog and schema, values bound as named
parameters; rows come back typed from the result manifest. Authentication is the SDK's own: DATABRICKS_HOST /
DATABRICKS_TOKEN, ``~/.databrickscfg`` profiles, OAuth, a Databricks App's service principal. Each call is its own
session: a ``USE`` does not carry over to the next statement. ``sql --warehouse`` and the app run statements here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import json
import logging
import re
import time
from collections.abc import Callable

import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config
from databricks.sdk.errors import DatabricksError, NotFound, PermissionDenied, Unauthenticated
from databricks.sdk.service.sql import (
    ExecuteStatementRequestOnWaitTimeout,
    ResultManifest,
    StatementParameterListItem,
    StatementResponse,
    StatementState,
)

from movielens_als import __version__
from movielens_als.config import Sql
from movielens_als.errors import MovieLensAlsError, first_line
from movielens_als.lakehouse.names import Namespace

# The SDK retries a refused connection for 300 s by default, in its host probe and again in each call:
# a mistyped host would hang the command for ten minutes before saying so.
RETRY_SECONDS = 30
# The SDK warns on stderr (logging's last resort) when its best-effort host metadata probe fails; the
# command promises one `error:` line at most, so those records are dropped unless logging is configured.
logging.getLogger("databricks.sdk").addHandler(logging.NullHandler())

_WAITING = (StatementState.PENDING, StatementState.RUNNING)


def connect(warehouse_id: str, profile: str | None = None) -> WorkspaceClient:
    """A client authenticated the SDK's way (env, ``~/.databrickscfg`` profile, OAuth)."""
    try:
        config = Config(
            profile=profile,
            retry_timeout_seconds=RETRY_SECONDS,
            product="movielens-als",
            product_version=__version__,
        )
    except ValueError as exc:  # no credentials, unknown profile, conflicting auth methods
        raise MovieLensAlsError(
            f"warehouse {warehouse_id}: cannot authenticate to Databricks ({_sdk_message(exc)}); "
            "set DATABRICKS_HOST and DATABRICKS_TOKEN, or pass --profile"
        ) from exc
    return WorkspaceClient(config=config)


def execute(
    client: WorkspaceClient,
    warehouse_id: str,
    namespace: Namespace,
    statement: str,
    *,
    timeout: float = Sql.timeout,
    row_limit: int | None = None,
    parameters: dict[str, object] | None = None,
    poll_seconds: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> StatementResponse:
    """Submit one statement and wait until it leaves PENDING/RUNNING; cancel it after ``timeout`` seconds.

    ``parameters`` bind the statement's ``:name`` markers (sent as text with their SQL type, never formatted in).
    """
    deadline = time.monotonic() + timeout
    api = client.statement_execution
    response = api.execute_statement(
        statement,
        warehouse_id,
        catalog=namespace.catalog,
        schema=namespace.schema,
        row_limit=row_limit,
        parameters=[_parameter(name, value) for name, value in (parameters or {}).items()] or None,
        # The server waits up to 50 s itself (0 or 5-50 s allowed); longer statements are polled below.
        wait_timeout="0s" if timeout < 5 else f"{min(50, int(timeout))}s",
        on_wait_timeout=ExecuteStatementRequestOnWaitTimeout.CONTINUE,
    )
    try:
        while _state(response) in _WAITING:
            if time.monotonic() >= deadline:
                _cancel(client, response.statement_id)
                raise MovieLensAlsError(
                    f"warehouse {warehouse_id}: statement {response.statement_id} still {_state(response).value} "
                    f"after {timeout:g} s; canceled it (pass --timeout SECONDS to wait longer)"
                )
            sleep(min(poll_seconds, max(0.0, deadline - time.monotonic())))
            poll_seconds = min(poll_seconds * 2, 5.0)  # back off: a status call may itself take seconds
            response = api.get_statement(response.statement_id)
    except KeyboardInterrupt:
        _cancel(client, response.statement_id)  # Ctrl-C must not leave the warehouse busy
        raise
    return response


def _parameter(name: str, value: object) -> StatementParameterListItem:
    """A named parameter; its type tells the warehouse how to read the text (strings need none)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(f"parameter {name}: {type(value).__name__} is not bound (give int, float or str)")
    kind = "BIGINT" if isinstance(value, int) else "DOUBLE" if isinstance(value, float) else None
    return StatementParameterListItem(name=name, value=str(value), type=kind)


def check(response: StatementResponse, warehouse_id: str, where: str = "") -> None:
    """Raise MovieLensAlsError unless the statement SUCCEEDED; the server's SQL error message says why."""
    state = _state(response)
    if state == StatementState.SUCCEEDED:
        return
    error = response.status.error if response.status else None
    if state == StatementState.FAILED:
        message = first_line(error.message) if error and error.message else "no error message"
        raise MovieLensAlsError(f"SQL failed on warehouse {warehouse_id}{where}: {message}")
    if state == StatementState.CANCELED:
        raise MovieLensAlsError(f"warehouse {warehouse_id}: statement {response.statement_id} was canceled{where}")
    ended = state.value if state else "without a state"
    raise MovieLensAlsError(
        f"warehouse {warehouse_id}: statement {response.statement_id} ended {ended}{where}, no result to print"
    )


def fetch(client: WorkspaceClient, response: StatementResponse, cap: int | None) -> tuple[list[str], list[tuple]]:
    """Columns and typed rows of a SUCCEEDED statement, reading chunk after chunk until ``cap + 1`` rows."""
    manifest = response.manifest
    columns, _ = decode(manifest, [])
    data: list[list[str | None]] = []
    chunk = response.result
    if (chunk is None or chunk.data_array is None) and manifest and manifest.total_chunk_count:
        chunk = client.statement_execution.get_statement_result_chunk_n(response.statement_id, 0)
    while chunk is not None and columns:
        data.extend(chunk.data_array or [])
        if chunk.next_chunk_index is None or (cap is not None and len(data) > cap):
            break
        chunk = client.statement_execution.get_statement_result_chunk_n(response.statement_id, chunk.next_chunk_index)
    return decode(manifest, data)


def decode(manifest: ResultManifest | None, data_array: list[list[str | None]]) -> tuple[list[str], list[tuple]]:
    """Column names and Python-typed rows from a result manifest and JSON_ARRAY data (values arrive as text)."""
    infos = manifest.schema.columns if manifest and manifest.schema and manifest.schema.columns else []
    columns = [c.name or f"col{i}" for i, c in enumerate(infos)]
    converters = [_CONVERTERS.get(_base_type(c), str) for c in infos]
    rows = [tuple(_convert(conv, v) for conv, v in zip(converters, row, strict=True)) for row in data_array]
    return columns, rows


def _base_type(column) -> str:
    if column.type_name is not None:
        return column.type_name.value
    # A type newer than this SDK's enum (e.g. TIMESTAMP_NTZ) leaves type_name None: fall back to the text.
    return re.split(r"[<(]", column.type_text or "STRING", maxsplit=1)[0].strip().upper()


def _convert(converter: Callable[[str], object], value: str | None):
    if value is None:
        return None
    try:
        return converter(value)
    except (ValueError, decimal.InvalidOperation):
        return value  # an unexpected rendering is printed as sent rather than failing the whole query


def _timestamp(text: str) -> dt.datetime:
    # Wall-clock time in the session time zone, naive, as a local Spark collect returns it.
    return dt.datetime.fromisoformat(text).replace(tzinfo=None)


def _boolean(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise ValueError(text)
    return text.lower() == "true"


_CONVERTERS: dict[str, Callable[[str], object]] = {
    **dict.fromkeys(("BYTE", "SHORT", "INT", "LONG", "TINYINT", "SMALLINT", "BIGINT"), int),
    **dict.fromkeys(("FLOAT", "DOUBLE"), float),  # float() reads the NaN and Infinity the API sends
    "DECIMAL": decimal.Decimal,
    "BOOLEAN": _boolean,
    "DATE": dt.date.fromisoformat,
    **dict.fromkeys(("TIMESTAMP", "TIMESTAMP_NTZ"), _timestamp),
    **dict.fromkeys(("ARRAY", "MAP", "STRUCT"), json.loads),  # complex values arrive as JSON text
}


def _state(response: StatementResponse) -> StatementState | None:
    return response.status.state if response.status else None


def _cancel(client: WorkspaceClient, statement_id: str | None) -> None:
    if not statement_id:
        return
    with contextlib.suppress(DatabricksError, TimeoutError, requests.RequestException):  # the error to show is ours
        client.statement_execution.cancel_execution(statement_id)


def _sdk_message(exc: BaseException) -> str:
    """The SDK's message on one line, without the ``Config: ...`` / ``Env: ...`` debug tail it appends."""
    return re.split(r"\.? (?:Config|Env): ", first_line(exc), maxsplit=1)[0]


_API_FAILURES = (
    (Unauthenticated, "the credentials were rejected"),
    (PermissionDenied, "permission denied"),
    (NotFound, "not found (check the warehouse id and the host)"),
)


def api_failure(exc: DatabricksError, warehouse_id: str, client: WorkspaceClient) -> str:
    cause = next((text for kind, text in _API_FAILURES if isinstance(exc, kind)), "request failed")
    code = f" [{exc.error_code}]" if exc.error_code else ""
    return f"warehouse {warehouse_id} on {client.config.host}: {cause}{code}: {_sdk_message(exc)}"
