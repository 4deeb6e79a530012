"""Every way a task can stop short, in one walk of the DAG's tasks: each failpoint raising in this process, and real
stops of a CLI process as a lost driver or Ctrl-C (SIGKILL of its process group between two table writes (land),
mid-write of a table (split) and mid-ALS (train), and SIGINT mid-ALS). Each attempt starts from what the one before
left; after every stop each table the task writes holds what it held before, what the reference DAG
(:mod:`tests.reference`: the same release, bundle parameters and grid) holds, or nothing. Each task is then re-run
once and must write what the reference wrote, with its leftovers cleaned: no ``running`` training rows, no RUNNING
MLflow runs, no staged files. Ctrl-C stops train with exit code 130, one ``error:`` line, the run row marked
interrupted. The helpers are in ``stops.py``.
"""

from __future__ import annotations

import json
import signal

import mlflow
import pytest

from movielens_als.lakehouse.spark import storage_root
from tests.integration.stops import (
    DAG,
    RUN_ID,
    assert_each_stop_left_tables_before_or_after,
    assert_reruns_equal_the_reference,
    walk,
)

pytestmark = pytest.mark.integration

# Every failpoint of each task, in the order the task reaches them.
RAISED = {
    "land": ["land.staged", "land.wrote_movies", "land.harvested"],  # the last: feedback in, ratings not yet
    "split": ["split.write"],
    "train": ["train.tuning", "train.logging", "train.logged"],  # before the fits; between two model logs; after
    "evaluate": ["evaluate.scored"],
    "promote": ["promote.recorded"],  # between the decision's row and the alias move
    "recommend": [f"recommend.write_{t}" for t in ("popular_movies", "similar_movies", "user_recommendations")]
    + ["recommend.health"],
    "publish": ["publish.statement"],
}
# Real signals, before the task's raised failpoints: failpoint[+seconds after it][:INT for Ctrl-C instead of SIGKILL].
KILLED = {
    "land": ["land.wrote_movies"],  # between two table writes
    "split": ["split.write+0.3"],  # mid-write of a table
    "train": ["train.tuning+2:INT", "train.tuning+2"],  # mid-ALS: Ctrl-C, then a lost driver
}


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


@pytest.fixture(scope="module")
def chain(spark, lakehouse_home, reference) -> dict:
    attempts = {t: [(p, "killed") for p in KILLED.get(t, [])] + [(p, "raised") for p in RAISED[t]] for t in DAG}
    return walk(spark, lakehouse_home, reference, DAG, attempts)


def test_every_failpoint_raised_where_it_was_asked(chain):
    raised = [(s["point"], s["raised"]) for s in chain["stops"] if s["how"] == "raised"]
    assert raised == [(p, f"failpoint {p}") for t in DAG for p in RAISED[t]]


def test_each_process_was_stopped_by_its_signal(chain):
    killed = [s for s in chain["stops"] if s["how"] == "killed"]
    assert [s["point"] for s in killed] == [p for t in DAG for p in KILLED.get(t, [])]
    for stop in killed:
        expected_code = 130 if stop["point"].endswith(":INT") else -signal.SIGKILL
        assert stop["code"] == expected_code, f"{stop['point']}: {stop['stderr'][-3000:]}"


def test_every_stop_leaves_each_table_as_it_was_or_as_the_uninterrupted_run_left_it(chain):
    assert_each_stop_left_tables_before_or_after(chain)


def test_each_task_rerun_after_its_stops_writes_what_the_uninterrupted_run_wrote(chain):
    assert_reruns_equal_the_reference(chain, DAG)


def test_ctrl_c_stops_train_promptly_with_130_one_line_and_no_traceback(chain):
    stop = next(s for s in chain["stops"] if s["point"].endswith(":INT"))
    assert stop["code"] == 130
    assert stop["stderr"].strip().splitlines()[-1] == "error: interrupted"
    assert "Traceback" not in stop["stderr"] and "\tat " not in stop["stderr"], stop["stderr"][-3000:]
    # Stopped mid-ALS, the cancelled job's cleanup ran: the run is recorded as interrupted, not left running.
    assert stop["run_row"] == ("failed", "interrupted")


def test_a_killed_train_leaves_a_running_row_that_a_later_attempt_replaces(chain):
    kill = next(s for s in chain["stops"] if s["point"] == "train.tuning+2")
    assert kill["run_row"] == ("running", None)  # SIGKILL runs no cleanup: the row of a process that is gone
    after = next(s for s in chain["stops"] if s["point"] == "train.tuning")  # the next attempt claims the run
    assert after["run_row"] == ("failed", "failpoint train.tuning")


def test_leftovers_of_failed_runs_are_cleaned_or_marked(spark, chain, reference, lakehouse_home):
    schema = chain["schema"]
    runs = spark.table(schema.table("training_runs")).collect()
    assert [(r.run_id, r.status) for r in runs] == [(RUN_ID, "succeeded")]  # the failed attempts' row replaced
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
    assert left_running == []  # the attempt failed between the two model logs ended FAILED
    staged = storage_root(schema, "files", lakehouse_home) / "landing" / "staged"
    assert not staged.exists() or not any(staged.iterdir())
    assert [r.decision for r in spark.table(schema.table("promotions")).collect()] == ["first"]
