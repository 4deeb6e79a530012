"""What the crash tests share: the tables each task writes, a table's comparable rows, stopping a task (a real
signal to a CLI process, or a failpoint that raises here) and walking the DAG's tasks through their stops."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

from pyspark.sql import functions as F

from movielens_als.commands import build_parser, execute
from movielens_als.faults import KILL_AT, InjectedFailureError
from movielens_als.lakehouse import tables
from movielens_als.lakehouse.names import Namespace
from tests.reference import REPO, seed_feedback, task_argv

RUN_ID = "crash-run"
DAG = ("land", "split", "train", "evaluate", "promote", "recommend", "publish")
# The tables each task writes, and the columns that differ between two runs by nature (ids, clocks, versions).
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
            "champion_rating_version", "checked_at", "user_recommendations_version", "previous_version",
            "champion_version_before", "champion_version_after"}  # fmt: skip


def rows(df):
    """A table's rows without the volatile columns, doubles rounded, sorted."""
    cols = [F.round(c, 6).alias(c) if t == "double" else F.col(c) for c, t in df.dtypes if c not in VOLATILE]
    return sorted(tuple(r) for r in df.select(*cols).collect())


def snapshot(spark, namespace: Namespace, table: str):
    """The rows of a table of ``namespace``; None when it does not exist."""
    if not tables.table_exists(spark, namespace, table):
        return None
    return rows(spark.table(namespace.table(table)))


def killed(argv: list[str], point: str) -> subprocess.CompletedProcess:
    """The task as a CLI subprocess in a process group of its own, stopped at ``point``."""
    env = {k: v for k, v in os.environ.items() if k != "SPARK_REMOTE"} | {KILL_AT: point}
    cmd = [sys.executable, "-m", "movielens_als.cli", *argv]
    process = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)  # fmt: skip
    out, err = process.communicate(timeout=600)
    return subprocess.CompletedProcess(argv, process.returncode, out, err)


def walk(spark, home, reference, tasks: tuple[str, ...], attempts: dict[str, list[tuple[str, str]]]) -> dict:
    """Run ``tasks`` in a new schema, each first stopped at its ``attempts`` ((point, "killed" | "raised"), in
    order) and then re-run here: what each stop left, and each re-run's tables beside the reference's."""
    schema = Namespace("spark_catalog", f"crash_{uuid.uuid4().hex[:8]}")
    argv = task_argv(home, reference.release, schema.schema, RUN_ID)
    seed_feedback(home, schema.schema, reference.release)
    expected = {t: rows(reference.table(spark, t)) for task in tasks for t in WRITES[task]}
    stops, reruns = [], {}
    for task in tasks:
        parsed = build_parser().parse_args(argv[task])
        for point, how in attempts.get(task, []):
            started = time.monotonic()
            stop = {"task": task, "point": point, "how": how}
            stop["before"] = {t: snapshot(spark, schema, t) for t in WRITES[task]}
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
            stop["seen"] = {t: snapshot(spark, schema, t) for t in WRITES[task]}
            if task == "train" and tables.table_exists(spark, schema, "training_runs"):
                row = spark.table(schema.table("training_runs")).where(F.col("run_id") == RUN_ID).first()
                stop["run_row"] = (row.status, row.error) if row else None
            stop["seconds"] = time.monotonic() - started
            stops.append(stop)
        started = time.monotonic()
        try:
            execute(parsed, spark)
        except Exception as exc:
            seen = [(s["point"], s.get("code"), s.get("stderr", "")[-500:]) for s in stops if s["task"] == task]
            raise AssertionError(f"re-run of {task} failed after its stops {seen}") from exc
        reruns[task] = {t: (snapshot(spark, schema, t), expected[t]) for t in WRITES[task]}
        print(f"{task}: " + ", ".join(f"{s['point']} {s['seconds']:.1f}s" for s in stops if s["task"] == task)
              + f", re-run {time.monotonic() - started:.1f}s")  # fmt: skip
    return {"stops": stops, "reruns": reruns, "schema": schema, "expected": expected}


def assert_each_stop_left_tables_before_or_after(chain: dict) -> None:
    """After every stop each table the task writes holds what it held before, what the reference holds, or nothing
    if it did not exist: a first write creates the table (empty) and fills it in two commits, never partial."""
    for stop in chain["stops"]:
        for table, seen in stop["seen"].items():
            before, after = stop["before"][table], chain["expected"][table]
            allowed = [before, after] + ([[]] if before is None else [])
            assert seen in allowed, f"{table} half-written at {stop['point']} ({stop['how']})"


def assert_reruns_equal_the_reference(chain: dict, tasks: tuple[str, ...]) -> None:
    assert tuple(chain["reruns"]) == tasks
    for task, compared in chain["reruns"].items():
        for table, (crash, reference) in compared.items():
            assert crash == reference, f"{table} after {task}"
