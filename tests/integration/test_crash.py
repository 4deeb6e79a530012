"""Crash harness: every task failed at each of its failpoints, some killed outright, then re-run, ends where the
reference DAG (:mod:`tests.reference`, the same release, bundle parameters and grid) ended.

The crash schema runs the DAG task by task. A task first meets its real stops: a CLI subprocess in a process
group of its own that a failpoint (:mod:`movielens_als.faults`) stops with SIGKILL, as a lost driver (mid-ALS,
between two table writes, mid-write of a table), or with SIGINT mid-ALS, as Ctrl-C. Then, in this process,
each of its failpoints in turn raises (``:RAISE``), each attempt starting from what the one before left.
After every stop each table the task writes must hold what it held before, what the reference holds, or
nothing if it did not exist (a reader never sees a half-written table). The task is then re-run here and its
tables must equal the reference's, with leftovers cleaned: no ``running`` training rows, no RUNNING MLflow
runs, no staged files. Ctrl-C during ALS stops train with exit code 130, one ``error:`` line, the run row
marked interrupted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid

import mlflow
import pytest
from pyspark.sql import functions as F

from movielens_als.commands import build_parser, execute
from movielens_als.faults import KILL_AT, InjectedFailureError
from movielens_als.lakehouse import tables
from movielens_als.lakehouse.names import Namespace
from movielens_als.lakehouse.spark import storage_root
from tests.reference import REPO, task_argv

pytestmark = pytest.mark.integration

RUN_ID = "crash-run"
DAG = ("land", "split", "train", "evaluate", "promote", "recommend", "publish")
# Real stops of a CLI process: failpoint[+seconds after it][:INT for Ctrl-C instead of SIGKILL].
KILLED = {
    "land": ["land.wrote_movies"],  # between two table writes
    "split": ["split.write+0.3"],  # mid-write of a table
    "train": ["train.tuning+2:INT", "train.tuning+2"],  # mid-ALS: Ctrl-C, then a lost driver
}
# Every failpoint of each task, in the order the task reaches them: each raises once, in this process.
RAISED = {
    "land": ["land.staged", "land.wrote_movies"],
    "split": ["split.write"],
    "train": ["train.tuning", "train.logging", "train.logged"],  # before the fits; between two model logs; after
    "evaluate": ["evaluate.scored"],
    "promote": ["promote.recorded"],  # between the decision's row and the alias move
    "recommend": [f"recommend.write_{t}" for t in ("popular_movies", "similar_movies", "user_recommendations")]
    + ["recommend.health"],
    "publish": ["publish.statement"],
}
# The tables each task writes, and the columns that differ between two runs by nature (ids, clocks).
WRITES = {
    "land": ["ratings", "movies", "users", "quarantine"],
    "split": ["splits"],
    "train": ["ratings", "splits"],  # reads only: a stopped train must leave them alone
    "evaluate": ["model_metrics"],
    "promote": ["promotions"],
    "recommend": ["user_recommendations", "popular_movies", "similar_movies", "serving_health"],
    "publish": [],
}
VOLATILE = {"run_id", "model_run_id", "model_version", "generated_at", "evaluated_at", "decided_at", "source_checksum",
            "challenger_ranking_version", "challenger_rating_version", "champion_ranking_version",
            "champion_rating_version", "checked_at", "user_recommendations_version", "previous_version"}  # fmt: skip


def rows(df):
    """A table's rows without the volatile columns, doubles rounded, sorted."""
    cols = [F.round(c, 6).alias(c) if t == "double" else F.col(c) for c, t in df.dtypes if c not in VOLATILE]
    return sorted(tuple(r) for r in df.select(*cols).collect())


def snapshot(spark, namespace: Namespace, table: str):
    """The rows of a table of the crash schema; None when it does not exist."""
    if not tables.table_exists(spark, namespace, table):
        return None
    return rows(spark.table(namespace.table(table)))


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def killed(argv: list[str], point: str) -> subprocess.CompletedProcess:
    """The task as a CLI subprocess in a process group of its own, stopped at ``point``."""
    env = {k: v for k, v in os.environ.items() if k != "SPARK_REMOTE"} | {KILL_AT: point}
    cmd = [sys.executable, "-m", "movielens_als.cli", *argv]
    process = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)  # fmt: skip
    out, err = process.communicate(timeout=600)
    return subprocess.CompletedProcess(argv, process.returncode, out, err)


@pytest.fixture(scope="module")
def chain(spark, lakehouse_home, reference) -> dict:
    """The crash schema's DAG with every stop; what each stop left, and the re-runs against the reference."""
    crash = Namespace("spark_catalog", f"crash_{uuid.uuid4().hex[:8]}")
    argv = task_argv(lakehouse_home, reference.release, crash.schema, RUN_ID)
    expected_of = {t: rows(reference.table(spark, t)) for task in DAG for t in WRITES[task]}
    stops, reruns = [], {}
    for task in DAG:
        parsed = build_parser().parse_args(argv[task])
        attempts = [(point, "killed") for point in KILLED.get(task, [])]
        attempts += [(point, "raised") for point in RAISED[task]]
        for point, how in attempts:
            before = {t: snapshot(spark, crash, t) for t in WRITES[task]}
            stop = {"task": task, "point": point, "how": how, "before": before}
            if how == "killed":
                done = killed(argv[task], point)
                stop.update(code=done.returncode, stderr=done.stderr)
            else:
                os.environ[KILL_AT] = f"{point}:RAISE"
                try:
                    execute(parsed, spark)
                    stop["raised"] = None
                except InjectedFailureError as exc:
                    stop["raised"] = str(exc)
                finally:
                    del os.environ[KILL_AT]
            stop["seen"] = {t: snapshot(spark, crash, t) for t in WRITES[task]}
            if task == "train" and tables.table_exists(spark, crash, "training_runs"):
                row = spark.table(crash.table("training_runs")).where(F.col("run_id") == RUN_ID).first()
                stop["run_row"] = (row.status, row.error) if row else None
            stops.append(stop)
        try:
            execute(parsed, spark)
        except Exception as exc:
            seen = [(s["point"], s.get("code"), s.get("stderr", "")[-500:]) for s in stops if s["task"] == task]
            raise AssertionError(f"re-run of {task} failed after its stops {seen}") from exc
        reruns[task] = {t: (snapshot(spark, crash, t), expected_of[t]) for t in WRITES[task]}
    return {"stops": stops, "reruns": reruns, "crash": crash, "expected": expected_of}


def test_every_stop_happened_where_it_was_asked(chain):
    assert [s["point"] for s in chain["stops"]] == [
        p for t in DAG for p in KILLED.get(t, []) + RAISED[t]
    ]  # fmt: skip
    for stop in chain["stops"]:
        if stop["how"] == "killed":
            expected_code = 130 if stop["point"].endswith(":INT") else -signal.SIGKILL
            assert stop["code"] == expected_code, f"{stop['point']}: {stop['stderr'][-3000:]}"
        else:
            assert stop["raised"] == f"failpoint {stop['point']}", stop["point"]


def test_every_stop_leaves_each_table_as_it_was_or_as_the_uninterrupted_run_left_it(chain):
    for stop in chain["stops"]:
        for table, seen in stop["seen"].items():
            before, after = stop["before"][table], chain["expected"][table]
            # A first write creates the table (empty) and fills it in two commits: empty, never partial.
            allowed = [before, after] + ([[]] if before is None else [])
            assert seen in allowed, f"{table} half-written at {stop['point']} ({stop['how']})"


def test_each_task_rerun_after_its_stops_writes_what_the_uninterrupted_run_wrote(chain):
    assert list(chain["reruns"]) == list(DAG)
    for task, compared in chain["reruns"].items():
        for table, (crash, reference) in compared.items():
            assert crash == reference, f"{table} after {task}"


def test_leftovers_of_stopped_runs_are_cleaned_or_marked(spark, chain, reference, lakehouse_home):
    crash = chain["crash"]
    runs = spark.table(crash.table("training_runs")).collect()
    assert [(r.run_id, r.status) for r in runs] == [(RUN_ID, "succeeded")]  # the stopped attempts' row replaced
    ref = reference.table(spark, "training_runs").first()
    for column in ("rating_hyperparams", "ranking_hyperparams"):
        got, want = flat(json.loads(runs[0][column])), flat(json.loads(ref[column]))
        assert got.keys() == want.keys(), column
        for key, value in want.items():
            assert got[key] == (pytest.approx(value, rel=1e-9) if isinstance(value, float) else value), key
    left_running = mlflow.search_runs(
        search_all_experiments=True,
        filter_string=f"tags.`movielens_als.run_id` = '{RUN_ID}' and attributes.status = 'RUNNING'",
        output_format="list",
    )
    assert left_running == []  # the attempts stopped between the model logs ended FAILED
    staged = storage_root(crash, "files", lakehouse_home) / "landing" / "staged"
    assert not staged.exists() or not any(staged.iterdir())
    assert [r.decision for r in spark.table(crash.table("promotions")).collect()] == ["first"]


def test_ctrl_c_stops_train_promptly_with_130_one_line_and_no_traceback(chain):
    stop = next(s for s in chain["stops"] if s["point"].endswith(":INT"))
    assert stop["code"] == 130
    assert stop["stderr"].strip().splitlines()[-1] == "error: interrupted"
    assert "Traceback" not in stop["stderr"] and "\tat " not in stop["stderr"], stop["stderr"][-3000:]
    # Stopped mid-ALS, the cancelled job's cleanup ran: the run is recorded as interrupted, not left running.
    assert stop["run_row"] == ("failed", "interrupted")
