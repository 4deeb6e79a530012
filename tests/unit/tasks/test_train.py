"""Test rows never reach tuning; a full tiny training run records itself; what a killed run left is marked failed;
clear errors without splits."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import mlflow
import pytest

from movielens_als.errors import MovieLensAlsError
from movielens_als.ml.splitting import tuning_frames
from movielens_als.ml.training_runs import claim_run, write_run
from movielens_als.tasks.split import split
from movielens_als.tasks.train import train

TINY_GRID = {
    "rating": {"rank": [2], "reg_param": [0.1], "max_iter": [2], "passes": [1]},
    "ranking": {"rank": [2], "reg_param": [0.1, 1.0], "alpha": [1.0], "max_iter": [2]},
    "k": 3,
}


def _write_ratings(spark, namespace, test_rating=None):
    t0 = dt.datetime(2020, 1, 1)
    rows = [(u, i, float(1 + (u + 2 * i) % 5), t0) for u in range(1, 16) for i in range(1, 9) if (u * i) % 4 != 1]
    df = spark.createDataFrame(rows, "user_id INT, movie_id INT, rating DOUBLE, rated_at TIMESTAMP")
    df.writeTo(namespace.table("ratings")).using("delta").createOrReplace()
    split(spark, namespace, "benchmark")
    if test_rating is not None:  # corrupt the test rows only
        spark.sql(f"UPDATE {namespace.table('splits')} SET rating = {test_rating} WHERE split = 'test'")


def test_tuning_frames_drop_test_rows(spark, namespace):
    _write_ratings(spark, namespace)
    splits_df = spark.table(namespace.table("splits"))
    fit, validation, full = tuning_frames(splits_df)
    test = splits_df.where("split = 'test'").select("user_id", "movie_id")
    for df in (fit, validation, full):
        assert df.join(test, ["user_id", "movie_id"]).count() == 0
    assert full.count() == splits_df.where("split != 'test'").count()


def test_train_ignores_test_rows_and_records_the_run(spark, namespace, storage):
    _write_ratings(spark, namespace)
    first = train(spark, namespace, storage, run_id="run_a", grid=TINY_GRID)
    # Wildly different test ratings must not change anything tuning sees.
    spark.sql(f"UPDATE {namespace.table('splits')} SET rating = 1000.0 WHERE split = 'test'")
    second = train(spark, namespace, storage, run_id="run_b", grid=TINY_GRID)
    runs = {r["run_id"]: r for r in spark.table(namespace.table("training_runs")).collect()}
    assert set(runs) == {"run_a", "run_b"}
    assert all(r["status"] == "succeeded" for r in runs.values())

    def rounded(value):  # scores may differ only in float summation order
        if isinstance(value, dict):
            return {k: rounded(v) for k, v in value.items()}
        return round(value, 9) if isinstance(value, float) else value

    def scores(run):  # wall-clock seconds differ between runs
        return [rounded({k: v for k, v in m.items() if k != "seconds"}) for m in json.loads(run["validation_metrics"])]

    assert scores(runs["run_a"]) == scores(runs["run_b"])
    assert runs["run_a"]["ranking_hyperparams"] == runs["run_b"]["ranking_hyperparams"]
    assert first.details["validation_rmse"] == pytest.approx(second.details["validation_rmse"], abs=1e-9)
    assert runs["run_a"]["ratings_version"] is not None
    assert set(json.loads(runs["run_a"]["timings"])) == {
        "tune_rating",
        "tune_ranking",
        "blend",
        "refit",
        "serving_refit",
        "log_models",
    }
    assert len(json.loads(runs["run_a"]["validation_metrics"])) == 1 + 1 + 1 + 2  # bias, rating ALS, blend, 2 ranking
    with pytest.raises(MovieLensAlsError, match="already exists"):
        train(spark, namespace, storage, run_id="run_a", grid=TINY_GRID)


def test_train_without_splits_is_a_clear_error(spark, namespace, storage):
    with pytest.raises(MovieLensAlsError, match="movielens-als split"):
        train(spark, namespace, storage, grid=TINY_GRID)


# A trainer killed outright (kill -9, a lost driver) between its MLflow run's start and its end.
KILLED_TRAINER = """
import mlflow, os, signal
from movielens_als.processes import owner_tag
run = mlflow.start_run(run_name="movielens-als-ghost", tags={"movielens_als.run_id": "ghost"})
print(owner_tag(), run.info.run_id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_next_train_marks_failed_what_a_killed_trainer_left_running(spark, namespace):
    env = os.environ | {"MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()}
    done = subprocess.run([sys.executable, "-c", KILLED_TRAINER], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == -9, done.stderr
    owner, mlflow_run_id = done.stdout.split()
    assert mlflow.get_run(mlflow_run_id).info.status == "RUNNING"  # nobody ended it
    write_run(spark, namespace, {"run_id": "ghost", "status": "running", "owner": owner})
    claim_run(spark, namespace, "next")  # what every train does first
    row = spark.table(namespace.table("training_runs")).where("run_id = 'ghost'").first()
    assert (row["status"], row["error"]) == ("failed", f"process {owner} stopped while training (found by run next)")
    assert mlflow.get_run(mlflow_run_id).info.status == "FAILED"
