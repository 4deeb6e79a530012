"""Crash harness: every task killed mid-way, then re-run, ends where an uninterrupted run ends.

A small synthetic release goes through the DAG twice. The reference schema runs each task once,
in this process. The crash schema runs each task first in a CLI subprocess that a failpoint
(:mod:`movielens_als.faults`) stops with SIGKILL to its process group, as a lost driver, at every
point of ``KILL_POINTS``; after each kill every table the task writes must hold either what it
held before or what the reference holds, or be empty if it did not exist (a reader never sees a
half-written table). The task is
then re-run here and its tables must equal the reference's, with leftovers cleaned: no ``running``
training rows, no RUNNING MLflow runs, no staged files. Ctrl-C during ALS must stop train with
exit code 130, one ``error:`` line and every data table as it was.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import mlflow
import pytest
from pyspark.sql import functions as F

from movielens_als.commands import build_parser, execute
from movielens_als.faults import KILL_AT
from movielens_als.ingest.synth import synthesize
from movielens_als.lakehouse import tables
from movielens_als.lakehouse.names import Namespace
from movielens_als.lakehouse.spark import storage_root

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
GRID = json.dumps(
    {
        "rating": {"rank": [4], "reg_param": [0.1], "max_iter": [6], "passes": [1]},
        "ranking": {"rank": [4], "reg_param": [0.1], "alpha": [0.3], "max_iter": [6]},
    }
)
RUN_ID = "crash-run"
DAG = ("land", "split", "train", "evaluate", "promote", "recommend", "publish")
# Where each task is stopped before its re-run: failpoint[+seconds after it][:INT for Ctrl-C instead of SIGKILL].
KILL_POINTS = {
    "land": ["land.wrote_movies"],  # between table writes
    "split": ["split.write+0.3"],  # mid-write
    "train": ["train.tuning+2:INT", "train.tuning+2", "train.logging"],  # mid-ALS; between model saves and run row
    "evaluate": ["evaluate.scored"],
    "promote": ["promote.recorded"],  # between the decision's row and the alias move
    "recommend": ["recommend.write_user_recommendations+0.3"],  # mid-write of the last serving table
    "publish": ["publish.statement"],
}
# The tables each task writes, and the columns that differ between two runs by nature (ids, clocks).
WRITES = {
    "land": ["ratings", "movies", "users", "quarantine"],
    "split": ["splits"],
    "train": ["ratings", "splits"],  # reads only: a stopped train must leave them alone
    "evaluate": ["model_metrics"],
    "promote": ["promotions"],
    "recommend": ["user_recommendations", "popular_movies", "similar_movies"],
    "publish": [],
}
VOLATILE = {"run_id", "model_run_id", "model_version", "generated_at", "evaluated_at", "decided_at", "source_checksum",
            "challenger_ranking_version", "challenger_rating_version", "champion_ranking_version",
            "champion_rating_version"}  # fmt: skip


def task_args(task: str, home: Path, namespace: Namespace, source: Path) -> list[str]:
    extra = {
        "land": ["--source", str(source)],
        "train": ["--run-id", RUN_ID, "--grid", GRID],
        "evaluate": ["--run-id", RUN_ID, "--diversity-users", "50"],
        "promote": ["--run-id", RUN_ID],
    }.get(task, [])
    return [task, "--home", str(home), "--schema", namespace.schema, *extra]


def snapshot(spark, namespace: Namespace, table: str):
    """A table's rows without the volatile columns, doubles rounded; None when it does not exist."""
    if not tables.table_exists(spark, namespace, table):
        return None
    df = spark.table(namespace.table(table))
    cols = [F.round(c, 6).alias(c) if t == "double" else F.col(c) for c, t in df.dtypes if c not in VOLATILE]
    return sorted(tuple(r) for r in df.select(*cols).collect())


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def stopped(task: str, point: str, home: Path, namespace: Namespace, source: Path) -> subprocess.Popen:
    """The task as a CLI subprocess in a process group of its own, stopped at ``point``."""
    cmd = [sys.executable, "-m", "movielens_als.cli", *task_args(task, home, namespace, source)]
    env = {**os.environ, KILL_AT: point}
    env.pop("SPARK_REMOTE", None)
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip


@pytest.fixture(scope="module")
def chain(spark, lakehouse_home, tmp_path_factory) -> dict:
    """The two runs of the DAG; what was seen after each stop, and the two schemas."""
    home, release = lakehouse_home, tmp_path_factory.mktemp("synthetic_release")
    synthesize(2_000, release, seed=1)
    reference = Namespace("spark_catalog", f"ref_{uuid.uuid4().hex[:8]}")
    crash = Namespace("spark_catalog", f"crash_{uuid.uuid4().hex[:8]}")

    def run_here(task: str, namespace: Namespace):
        return execute(build_parser().parse_args(task_args(task, home, namespace, release)), spark)

    stops, reruns = [], {}
    for task in DAG:
        for n, point in enumerate(KILL_POINTS[task]):
            before = {t: snapshot(spark, crash, t) for t in WRITES[task]}
            process = stopped(task, point, home, crash, release)
            if n == 0:  # the reference run overlaps the subprocess's JVM start
                run_here(task, reference)
            out, err = process.communicate(timeout=600)
            seen = {t: snapshot(spark, crash, t) for t in WRITES[task]}
            expected = {t: snapshot(spark, reference, t) for t in WRITES[task]}
            run_row = None
            if task == "train" and tables.table_exists(spark, crash, "training_runs"):
                row = spark.table(crash.table("training_runs")).where(F.col("run_id") == RUN_ID).first()
                run_row = (row.status, row.error) if row else None
            stops.append({"task": task, "point": point, "code": process.returncode, "stderr": err,
                          "run_row": run_row, "before": before, "seen": seen, "after": expected})  # fmt: skip
        try:
            run_here(task, crash)
        except Exception as exc:
            seen = [(s["point"], s["code"], s["stderr"][-500:]) for s in stops if s["task"] == task]
            raise AssertionError(f"re-run of {task} failed after its stops {seen}") from exc
        reruns[task] = {t: (snapshot(spark, crash, t), snapshot(spark, reference, t)) for t in WRITES[task]}
    return {"stops": stops, "reruns": reruns, "crash": crash, "reference": reference, "home": home}


def test_every_stop_leaves_each_table_as_it_was_or_as_the_uninterrupted_run_left_it(chain):
    assert [s["point"] for s in chain["stops"]] == [p for t in DAG for p in KILL_POINTS[t]]
    for stop in chain["stops"]:
        expected_code = 130 if stop["point"].endswith(":INT") else -signal.SIGKILL
        assert stop["code"] == expected_code, f"{stop['point']}: {stop['stderr'][-3000:]}"
        for table, seen in stop["seen"].items():
            # A first write creates the table (empty) and fills it in two commits: empty, never partial.
            allowed = [stop["before"][table], stop["after"][table]] + ([[]] if stop["before"][table] is None else [])
            assert seen in allowed, f"{table} half-written at {stop['point']}"


def test_each_task_rerun_after_its_stops_writes_what_the_uninterrupted_run_wrote(chain):
    for task, compared in chain["reruns"].items():
        for table, (crash, reference) in compared.items():
            assert crash == reference, f"{table} after {task}"


def test_leftovers_of_stopped_runs_are_cleaned_or_marked(spark, chain):
    crash, reference = chain["crash"], chain["reference"]
    runs = spark.table(crash.table("training_runs")).collect()
    assert [(r.run_id, r.status) for r in runs] == [(RUN_ID, "succeeded")]  # the stopped attempts' row replaced
    ref = spark.table(reference.table("training_runs")).first()
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
    assert left_running == []  # the attempt killed between the two model logs ended FAILED
    staged = storage_root(crash, "files", chain["home"]) / "landing" / "staged"
    assert not staged.exists() or not any(staged.iterdir())
    assert [r.decision for r in spark.table(crash.table("promotions")).collect()] == ["first"]


def test_ctrl_c_stops_train_promptly_with_130_one_line_and_no_traceback(chain):
    stop = next(s for s in chain["stops"] if s["point"].endswith(":INT"))
    assert stop["code"] == 130
    assert stop["stderr"].strip().splitlines()[-1] == "error: interrupted"
    assert "Traceback" not in stop["stderr"] and "\tat " not in stop["stderr"], stop["stderr"][-3000:]
    # Stopped mid-ALS, the cancelled job's cleanup ran: the run is recorded as interrupted, not left running.
    assert stop["run_row"] == ("failed", "interrupted")
