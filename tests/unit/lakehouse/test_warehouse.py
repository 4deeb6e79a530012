"""sql --warehouse: the real Databricks SDK against a local Statement Execution API, no Spark started."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
import math
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.sql import ResultManifest

from movielens_als import cli
from movielens_als.errors import MovieLensAlsError
from movielens_als.lakehouse import statements
from movielens_als.lakehouse.names import Namespace
from movielens_als.lakehouse.warehouse import decode, execute, run_warehouse_sql
from tests.fake_api import isolate_databricks_config, json_handler, running

WAREHOUSE = "abc123def456"
NS = Namespace("main", "movielens")
QUERY = "SELECT movie_id, title, score, genres FROM {catalog}.{schema}.titles ORDER BY movie_id"
STATEMENT = "SELECT movie_id, title, score, genres FROM `main`.`movielens`.titles ORDER BY movie_id"
STATEMENTS = "/api/2.0/sql/statements"

MANIFEST = {
    "format": "JSON_ARRAY",
    "schema": {
        "column_count": 4,
        "columns": [
            {"name": "movie_id", "position": 0, "type_name": "INT", "type_text": "INT"},
            {"name": "title", "position": 1, "type_name": "STRING", "type_text": "STRING"},
            {"name": "score", "position": 2, "type_name": "DOUBLE", "type_text": "DOUBLE"},
            {"name": "genres", "position": 3, "type_name": "ARRAY", "type_text": "ARRAY<STRING>"},
        ],
    },
    "total_chunk_count": 2,
    "total_row_count": 3,
    "chunks": [
        {"chunk_index": 0, "row_offset": 0, "row_count": 2},
        {"chunk_index": 1, "row_offset": 2, "row_count": 1},
    ],
    "truncated": False,
}
CHUNKS = [
    [["1", "Toy Story (1995)", "4.25", '["Animation","Comedy"]'], ["2", "GoldenEye, The (1995)", None, '["Action"]']],
    [["3", 'Heat "1995"', "3.5", "[]"]],
]
CSV_OUT = [
    ["movie_id", "title", "score", "genres"],
    ["1", "Toy Story (1995)", "4.25", '["Animation", "Comedy"]'],
    ["2", "GoldenEye, The (1995)", "", '["Action"]'],
    ["3", 'Heat "1995"', "3.5", "[]"],
]


def status(state: str, **extra) -> dict:
    return {"state": state, **extra}


class FakeWarehouse:
    """The three Statement Execution endpoints the SDK calls, plus cancel; scripted per statement text.

    ``script[statement]`` lists the StatementResponse bodies: the first answers the POST, the next
    ones the status polls (the last repeats). ``reject`` answers every POST with (HTTP status, error body).
    """

    def __init__(self) -> None:
        self.script: dict[str, list[dict]] = {STATEMENT: self.two_chunk_success()}
        self.reject: tuple[int, dict] | None = None
        self.requests: list[tuple[str, str, dict | None]] = []
        self.host = ""
        self._polls: dict[str, list[dict]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def two_chunk_success() -> list[dict]:
        return [
            {"status": status("PENDING")},
            {
                "status": status("SUCCEEDED"),
                "manifest": MANIFEST,
                "result": {
                    "chunk_index": 0,
                    "row_offset": 0,
                    "row_count": 2,
                    "data_array": CHUNKS[0],
                    "next_chunk_index": 1,
                    "next_chunk_internal_link": f"{STATEMENTS}/ID/result/chunks/1",
                },
            },
        ]

    def answer(self, method: str, path: str, body: dict | None) -> tuple[int, dict]:
        with self._lock:
            if path.startswith("/api/"):  # not the SDK's host metadata probe, answered 404 below
                self.requests.append((method, path, body))
            path = path.rstrip("/")
            if method == "POST" and path == STATEMENTS:
                if self.reject:
                    return self.reject
                statement_id = f"stmt-{len(self._polls) + 1}"
                # A statement nobody scripted succeeds without a result set, like DDL.
                script = self.script.get(body["statement"], [{"status": status("SUCCEEDED")}])
                replies = [{"statement_id": statement_id} | reply for reply in script]
                self._polls[statement_id] = replies[1:] or replies
                return 200, replies[0]
            if m := re.fullmatch(rf"{STATEMENTS}/([\w-]+)/result/chunks/(\d+)", path):
                n = int(m[2])
                offset = sum(len(chunk) for chunk in CHUNKS[:n])
                return 200, {
                    "chunk_index": n,
                    "row_offset": offset,
                    "row_count": len(CHUNKS[n]),
                    "data_array": CHUNKS[n],
                }
            if m := re.fullmatch(rf"{STATEMENTS}/([\w-]+)/cancel", path):
                return 200, {}
            if (m := re.fullmatch(rf"{STATEMENTS}/([\w-]+)", path)) and m[1] in self._polls:
                replies = self._polls[m[1]]
                return 200, replies.pop(0) if len(replies) > 1 else replies[0]
            return 404, {"error_code": "NOT_FOUND", "message": f"no such endpoint {path}"}

    def posted(self) -> list[dict]:
        return [body for method, path, body in self.requests if method == "POST" and path.rstrip("/") == STATEMENTS]

    def handler(self) -> type[BaseHTTPRequestHandler]:
        return json_handler(self)


@pytest.fixture(autouse=True)
def no_databricks_config(monkeypatch, tmp_path):
    isolate_databricks_config(monkeypatch, tmp_path)


@pytest.fixture
def server():
    with running(FakeWarehouse()) as fake:
        yield fake


@pytest.fixture
def client(server) -> WorkspaceClient:
    return WorkspaceClient(host=server.host, token="x")


@pytest.fixture
def no_spark(monkeypatch):
    """Opening the local lakehouse (what starts Spark for `sql`) fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("Spark was started for --warehouse")

    monkeypatch.setattr(cli, "open_lakehouse", refuse)


def test_pending_then_two_chunks_print_every_row_as_csv_with_types(server, client):
    out = run_warehouse_sql(WAREHOUSE, NS, QUERY, fmt="csv", client=client)
    assert out.note is None
    assert list(csv.reader(io.StringIO(out.text))) == CSV_OUT
    methods = [(method, path.rstrip("/")) for method, path, _ in server.requests]
    assert methods == [
        ("POST", STATEMENTS),
        ("GET", f"{STATEMENTS}/stmt-1"),
        ("GET", f"{STATEMENTS}/stmt-1/result/chunks/1"),
    ]


def test_request_carries_warehouse_namespace_substituted_statement_and_wait_timeout(server, client):
    run_warehouse_sql(WAREHOUSE, NS, QUERY, fmt="json", client=client, timeout=30)
    [body] = server.posted()
    assert body == {
        "warehouse_id": WAREHOUSE,
        "catalog": "main",
        "schema": "movielens",
        "statement": STATEMENT,
        "wait_timeout": "30s",
        "on_wait_timeout": "CONTINUE",
    }


def test_json_keeps_ints_doubles_nulls_and_arrays(server, client):
    out = run_warehouse_sql(WAREHOUSE, NS, QUERY, fmt="json", client=client)
    first, second, third = (json.loads(line) for line in out.text.splitlines())
    assert first == {"movie_id": 1, "title": "Toy Story (1995)", "score": 4.25, "genres": ["Animation", "Comedy"]}
    assert second["score"] is None and third == {"movie_id": 3, "title": 'Heat "1995"', "score": 3.5, "genres": []}
    assert isinstance(first["movie_id"], int) and isinstance(third["score"], float)


def test_limit_asks_one_row_more_and_stops_reading_chunks_once_the_cap_is_passed(server, client):
    out = run_warehouse_sql(WAREHOUSE, NS, QUERY, limit=1, client=client)
    assert server.posted()[0]["row_limit"] == 2
    assert out.text.splitlines() == [
        "movie_id | title            |  score | genres",
        "---------+------------------+--------+--------------------",
        "       1 | Toy Story (1995) | 4.2500 | [Animation, Comedy]",
        "(1 row, truncated)",
    ]
    assert out.note.startswith("note: printed the first 1 rows")
    assert not any("/result/chunks/" in path for _, path, _ in server.requests)


def test_statements_run_in_order_and_only_the_last_result_prints(server, client):
    out = run_warehouse_sql(
        WAREHOUSE, NS, f"CREATE SCHEMA IF NOT EXISTS {{schema}}; {QUERY};", fmt="csv", client=client
    )
    assert [b["statement"] for b in server.posted()] == ["CREATE SCHEMA IF NOT EXISTS `movielens`", STATEMENT]
    assert list(csv.reader(io.StringIO(out.text))) == CSV_OUT


def test_a_statement_without_result_set_prints_ok(server, client):
    assert run_warehouse_sql(WAREHOUSE, NS, "CREATE SCHEMA IF NOT EXISTS x", client=client).text == "OK"


def test_failed_statement_is_one_line_with_the_server_message_and_warehouse(server, client):
    message = "[TABLE_OR_VIEW_NOT_FOUND] The table or view `nope` cannot be found. SQLSTATE: 42P01\n== SQL ==\nSELECT"
    failed = status("FAILED", sql_state="42P01", error={"error_code": "BAD_REQUEST", "message": message})
    server.script["SELECT 1 FROM nope"] = [{"status": failed}]
    with pytest.raises(MovieLensAlsError) as info:
        run_warehouse_sql(WAREHOUSE, NS, "SELECT 1 FROM nope; SELECT 2", client=client)
    text = str(info.value)
    assert "\n" not in text and WAREHOUSE in text and "statement 1 of 2" in text
    assert "[TABLE_OR_VIEW_NOT_FOUND] The table or view `nope` cannot be found" in text
    assert len(server.posted()) == 1  # the failure stops the script, as locally


def test_canceled_statement_is_an_error(server, client):
    server.script[STATEMENT] = [{"status": status("RUNNING")}, {"status": status("CANCELED")}]
    with pytest.raises(MovieLensAlsError, match=rf"^warehouse {WAREHOUSE}: statement stmt-1 was canceled$"):
        run_warehouse_sql(WAREHOUSE, NS, QUERY, client=client)


def test_poll_backs_off_and_a_timeout_cancels_the_statement(server, client):
    server.script["SELECT 1"] = [{"status": status("PENDING")}, {"status": status("RUNNING")}]
    naps = []
    with pytest.raises(MovieLensAlsError, match=r"still RUNNING after 0.3 s; canceled it \(pass --timeout"):
        execute(client, WAREHOUSE, NS, "SELECT 1", timeout=0.3, poll_seconds=0.01, sleep=lambda s: naps.append(s))
    assert naps[:3] == [0.01, 0.02, 0.04]
    assert server.posted()[0]["wait_timeout"] == "0s"  # the server may only wait 0 or 5-50 s
    assert ("POST", f"{STATEMENTS}/stmt-1/cancel") in [(m, p.rstrip("/")) for m, p, _ in server.requests]


@pytest.mark.parametrize(
    ("code", "error", "cause"),
    [
        (401, {"error_code": "UNAUTHENTICATED", "message": "Invalid access token."}, "the credentials were rejected"),
        (403, {"error_code": "PERMISSION_DENIED", "message": "No CAN_USE on the warehouse."}, "permission denied"),
        (404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Warehouse not found."}, "not found"),
    ],
)
def test_http_errors_are_one_line_naming_warehouse_host_and_cause(server, client, code, error, cause):
    server.reject = (code, error)
    with pytest.raises(MovieLensAlsError) as info:
        run_warehouse_sql(WAREHOUSE, NS, "SELECT 1", client=client)
    text = str(info.value)
    assert text.startswith(f"warehouse {WAREHOUSE} on {server.host}: {cause}")
    assert error["message"].rstrip(".") in text and error["error_code"] in text
    assert "\n" not in text and "Config:" not in text and "token=" not in text


def test_no_credentials_is_one_line_pointing_at_the_variables():
    with pytest.raises(MovieLensAlsError, match=rf"^warehouse {WAREHOUSE}: cannot authenticate .*DATABRICKS_HOST"):
        run_warehouse_sql(WAREHOUSE, NS, "SELECT 1")


def test_profile_from_databrickscfg_is_used_and_an_unknown_one_is_one_line(server, tmp_path):
    (tmp_path / ".databrickscfg").write_text(f"[shared]\nhost = {server.host}\ntoken = x\n")
    out = run_warehouse_sql(WAREHOUSE, NS, QUERY, fmt="csv", profile="shared")
    assert list(csv.reader(io.StringIO(out.text))) == CSV_OUT
    with pytest.raises(MovieLensAlsError, match=r"cannot authenticate .*nope[^\n]*$"):
        run_warehouse_sql(WAREHOUSE, NS, QUERY, profile="nope")


def test_unreachable_host_gives_up_after_the_retry_budget(monkeypatch):
    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(statements, "RETRY_SECONDS", 1)
    monkeypatch.setenv("DATABRICKS_HOST", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("DATABRICKS_TOKEN", "x")
    with pytest.raises(MovieLensAlsError, match=rf"cannot connect to http://127.0.0.1:{port} \(\[Errno \d+\]"):
        run_warehouse_sql(WAREHOUSE, NS, "SELECT 1")


def test_decode_types_every_json_array_value():
    types = {"b": "BOOLEAN", "n": "LONG", "d": "DECIMAL", "x": "DOUBLE", "day": "DATE", "ts": "TIMESTAMP", "m": "MAP"}
    columns = [{"name": name, "type_name": t, "type_text": t} for name, t in types.items()]
    columns.append({"name": "ntz", "type_text": "TIMESTAMP_NTZ"})  # newer than the SDK's enum: no type_name
    manifest = ResultManifest.from_dict({"schema": {"column_count": 8, "columns": columns}})
    row = [
        "true",
        "9007199254740993",
        "1.10",
        "NaN",
        "2024-02-29",
        "2024-02-29T10:11:12.5Z",
        '{"a":1}',
        "2024-01-01T00:00",
    ]
    names, [values] = decode(manifest, [row])
    assert names == [*types, "ntz"]
    assert values[:3] == (True, 9007199254740993, decimal.Decimal("1.10")) and math.isnan(values[3])
    assert values[4:] == (
        dt.date(2024, 2, 29),
        dt.datetime(2024, 2, 29, 10, 11, 12, 500000),
        {"a": 1},
        dt.datetime(2024, 1, 1),
    )
    assert decode(manifest, [[None] * 8])[1] == [(None,) * 8]


def test_cli_prints_rows_and_starts_no_spark(server, no_spark, monkeypatch, capsys):
    monkeypatch.setenv("DATABRICKS_HOST", server.host)
    monkeypatch.setenv("DATABRICKS_TOKEN", "x")
    started = time.monotonic()
    argv = ["sql", "--warehouse", WAREHOUSE, "--catalog", "main", "--schema", "movielens", "--format", "csv", QUERY]
    cli.main(argv)  # returns without SystemExit: exit code 0
    assert time.monotonic() - started < 5
    out, err = capsys.readouterr()
    assert list(csv.reader(io.StringIO(out))) == CSV_OUT and err == ""


def test_cli_failure_is_one_error_line_and_exit_code_2(server, no_spark, monkeypatch, capsys):
    monkeypatch.setenv("DATABRICKS_HOST", server.host)
    monkeypatch.setenv("DATABRICKS_TOKEN", "x")
    server.reject = (404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Warehouse nope does not exist."})
    with pytest.raises(SystemExit) as info:
        cli.main(["sql", "--warehouse", "nope", "--catalog", "main", "--schema", "movielens", "SELECT 1"])
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("error: warehouse nope on http://127.0.0.1:")
    assert "Warehouse nope does not exist" in err
