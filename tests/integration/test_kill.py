"""Real stops of a CLI process, as a lost driver or Ctrl-C: SIGKILL of its process group between two table writes
(land), mid-write of a table (split) and mid-ALS (train), and SIGINT mid-ALS. After each, every table the task
writes holds what it held before, what the reference DAG holds, or nothing; each task's re-run here writes
what the reference wrote. Ctrl-C stops train with exit code 130, one ``error:`` line, the run row marked
interrupted. The helpers are in ``stops.py``; every failpoint raising in process is ``test_crash.py``.
"""

from __future__ import annotations

import signal

import pytest

from tests.integration.stops import (
    assert_each_stop_left_tables_before_or_after,
    assert_reruns_equal_the_reference,
    walk,
)

pytestmark = pytest.mark.integration

TASKS = ("land", "split", "train")
# failpoint[+seconds after it][:INT for Ctrl-C instead of SIGKILL]
KILLED = {
    "land": ["land.wrote_movies"],  # between two table writes
    "split": ["split.write+0.3"],  # mid-write of a table
    "train": ["train.tuning+2:INT", "train.tuning+2"],  # mid-ALS: Ctrl-C, then a lost driver
}


@pytest.fixture(scope="module")
def chain(spark, lakehouse_home, reference) -> dict:
    return walk(spark, lakehouse_home, reference, TASKS, {t: [(p, "killed") for p in KILLED[t]] for t in TASKS})


def test_each_process_was_stopped_by_its_signal(chain):
    assert [s["point"] for s in chain["stops"]] == [p for t in TASKS for p in KILLED[t]]
    for stop in chain["stops"]:
        expected_code = 130 if stop["point"].endswith(":INT") else -signal.SIGKILL
        assert stop["code"] == expected_code, f"{stop['point']}: {stop['stderr'][-3000:]}"


def test_every_kill_leaves_each_table_as_it_was_or_as_the_uninterrupted_run_left_it(chain):
    assert_each_stop_left_tables_before_or_after(chain)


def test_each_task_rerun_after_its_kills_writes_what_the_uninterrupted_run_wrote(chain):
    assert_reruns_equal_the_reference(chain, TASKS)


def test_ctrl_c_stops_train_promptly_with_130_one_line_and_no_traceback(chain):
    stop = next(s for s in chain["stops"] if s["point"].endswith(":INT"))
    assert stop["code"] == 130
    assert stop["stderr"].strip().splitlines()[-1] == "error: interrupted"
    assert "Traceback" not in stop["stderr"] and "\tat " not in stop["stderr"], stop["stderr"][-3000:]
    # Stopped mid-ALS, the cancelled job's cleanup ran: the run is recorded as interrupted, not left running.
    assert stop["run_row"] == ("failed", "interrupted")


def test_a_killed_train_leaves_a_running_row_that_its_rerun_replaces(spark, chain):
    kill = next(s for s in chain["stops"] if s["point"] == "train.tuning+2")
    assert kill["run_row"] == ("running", None)  # SIGKILL runs no cleanup: the row of a process that is gone
    rows = spark.table(chain["schema"].table("training_runs")).collect()
    assert [(r.run_id, r.status) for r in rows] == [("crash-run", "succeeded")]
