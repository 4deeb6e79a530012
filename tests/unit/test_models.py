"""Model store: save/load round trip, run resolution, model_metrics rows from evaluate."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
from pyspark.sql import functions as F

from movielens_als.errors import MovieLensAlsError
from movielens_als.models import load_ranking_model, load_rating_model, model_dir, resolve_run_id
from movielens_als.names import Namespace
from movielens_als.rating_model import predict_ratings_fn
from movielens_als.splits import split
from movielens_als.train import train

GRID = {
    "rating": {"rank": [2], "reg_param": [0.1], "max_iter": [2], "passes": [1]},
    "ranking": {"rank": [2], "reg_param": [0.1], "alpha": [1.0], "max_iter": [2]},
    "k": 3,
}


@pytest.fixture(scope="module")
def trained_in(spark, tmp_path_factory):
    """One training run shared by this module's tests, which only read it or add metrics to it."""
    namespace = Namespace("spark_catalog", f"t_{uuid.uuid4().hex[:12]}")
    spark.sql(f"CREATE SCHEMA {namespace.qualified_schema}")
    storage = tmp_path_factory.mktemp("models_volume")
    t0 = dt.datetime(2020, 1, 1)
    rows = [(u, i, float(1 + (u * 3 + i) % 5), t0) for u in range(1, 13) for i in range(1, 8) if (u + i) % 4]
    spark.createDataFrame(rows, "user_id INT, movie_id INT, rating DOUBLE, rated_at TIMESTAMP").writeTo(
        namespace.table("ratings")
    ).using("delta").createOrReplace()
    split(spark, namespace, "benchmark")
    run_id = train(spark, namespace, storage, run_id="r1", grid=GRID).details["run_id"]
    return namespace, storage, run_id


def test_round_trip_and_resolution(spark, trained_in):
    namespace, storage, _ = trained_in
    assert resolve_run_id(spark, namespace, None) == "r1"
    run_id, model = load_ranking_model(spark, namespace, storage)
    assert run_id == "r1" and model.rank == 2
    assert model_dir(storage, "r1", "ranking").is_dir()
    users = spark.createDataFrame([(1,)], "user_id INT")
    assert model.recommendForUserSubset(users, 3).count() == 1
    _, rating_model, baseline, blend = load_rating_model(spark, namespace, storage, "r1")
    saved = json.loads(spark.table(namespace.table("training_runs")).first()["rating_hyperparams"])["blend"]
    assert blend.as_dict() == saved
    pred = predict_ratings_fn(baseline, rating_model, spark.table(namespace.table("splits")), model, blend)
    assert pred.where(F.col("prediction").isNull() | (F.col("prediction") < 1) | (F.col("prediction") > 5)).count() == 0
    with pytest.raises(MovieLensAlsError, match="no succeeded training run 'nope'"):
        resolve_run_id(spark, namespace, "nope")
    with pytest.raises(MovieLensAlsError, match="invalid run id"):
        model_dir(storage, "../x", "ranking")


def test_no_runs_is_a_clear_error(spark, namespace):
    with pytest.raises(MovieLensAlsError, match="run `movielens-als train` first"):
        resolve_run_id(spark, namespace, None)


def test_evaluate_appends_model_metrics(spark, trained_in):
    pytest.importorskip("recommenders")
    namespace, storage, trained = trained_in
    from movielens_als.evaluate import evaluate

    result = evaluate(spark, namespace, storage, run_id=trained, k=3)
    metrics = spark.table(namespace.table("model_metrics"))
    assert metrics.count() == result.rows["model_metrics"]
    by_model = {r["model"]: r["n"] for r in metrics.groupBy("model").agg(F.count("*").alias("n")).collect()}
    assert by_model == {"rating": 4, "ranking": 10, "baseline": 14, "popular": 10}
    assert metrics.where("metric = 'precision_at_k' AND k = 3 AND value BETWEEN 0 AND 1").count() == 3
    assert metrics.where("metric = 'rmse' AND k IS NULL AND value > 0").count() == 2
    assert (storage / "reports" / trained / "metrics_vs_baseline.png").is_file()
