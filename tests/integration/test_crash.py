"""Every failpoint of every task raises once, in this process, each attempt starting from what the one before left;
each task is then re-run and must write what the reference DAG (:mod:`tests.reference`: the same release, bundle
parameters and grid) wrote, with its leftovers cleaned: no ``running`` training rows, no RUNNING MLflow runs, no
staged files. Real SIGKILLs and Ctrl-C of a CLI process are in ``test_kill.py``; the helpers in ``stops.py``.
"""

from __future__ import annotations

import json

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


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


@pytest.fixture(scope="module")
def chain(spark, lakehouse_home, reference) -> dict:
    return walk(spark, lakehouse_home, reference, DAG, {t: [(p, "raised") for p in RAISED[t]] for t in DAG})


def test_every_failpoint_raised_where_it_was_asked(chain):
    assert [(s["point"], s["raised"]) for s in chain["stops"]] == [
        (p, f"failpoint {p}") for t in DAG for p in RAISED[t]
    ]  # fmt: skip


def test_every_failure_leaves_each_table_as_it_was_or_as_the_uninterrupted_run_left_it(chain):
    assert_each_stop_left_tables_before_or_after(chain)


def test_each_task_rerun_after_its_failures_writes_what_the_uninterrupted_run_wrote(chain):
    assert_reruns_equal_the_reference(chain, DAG)


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
