"""Models in MLflow: a training run registered, loaded back by version and by alias, pyfunc predictions
equal to Spark's, evaluate's model_metrics, and the champion gate (its decision table and the task)."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import mlflow
import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from movielens_als.errors import MovieLensAlsError
from movielens_als.lakehouse.names import Namespace
from movielens_als.ml import registry
from movielens_als.ml.factors import Factors
from movielens_als.ml.models import load_champion, load_run_models, resolve_run_id
from movielens_als.tasks.evaluate import evaluate
from movielens_als.tasks.promote import Scores, decide, promote
from movielens_als.tasks.split import split
from movielens_als.tasks.train import train

GRID = {
    "rating": {"rank": [2], "reg_param": [0.1], "max_iter": [2], "passes": [1]},
    "ranking": {"rank": [2], "reg_param": [0.1], "alpha": [1.0], "max_iter": [2]},
    "k": 3,
}


@pytest.fixture(scope="module")
def trained_in(spark, tmp_path_factory):
    """One training run shared by this module's tests, evaluated once."""
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
    evaluated = evaluate(spark, namespace, storage, run_id=run_id, k=3)
    return namespace, storage, run_id, evaluated


def test_train_registers_both_models_as_challengers_linked_to_the_run(spark, trained_in):
    namespace, _, run_id, _ = trained_in
    row = spark.table(namespace.table("training_runs")).first()
    assert resolve_run_id(spark, namespace, None) == run_id == row["run_id"]
    for kind, version in (("ranking", row["ranking_model_version"]), ("rating", row["rating_model_version"])):
        found = registry.version_by_alias(namespace, kind, registry.CHALLENGER)
        assert found.name == f"spark_catalog.{namespace.schema}.movielens_als_{kind}"
        assert (found.version, found.run_id, found.tags["movielens_als.run_id"]) == (
            version,
            row["mlflow_run_id"],
            run_id,
        )
    tracked = mlflow.get_run(row["mlflow_run_id"])
    assert tracked.data.tags["ratings_version"] == str(row["ratings_version"])
    assert tracked.data.params["ranking.rank"] == "2" and "validation_rmse" in tracked.data.metrics
    with pytest.raises(MovieLensAlsError, match="no succeeded training run 'nope'"):
        resolve_run_id(spark, namespace, "nope")


def test_registered_models_loaded_back_predict_like_spark_and_like_their_pyfunc(spark, trained_in):
    namespace, _, run_id, _ = trained_in
    models = load_run_models(spark, namespace, run_id)
    hyperparams = json.loads(spark.table(namespace.table("training_runs")).first()["rating_hyperparams"])
    saved = hyperparams["blend"]
    assert models.rating.blend.as_dict() == saved
    # The knn term is in the model and weighs in, so the pyfunc comparison below covers it.
    assert (hyperparams["knn_k"], hyperparams["knn_power"]) == (100, 3.0)
    assert models.rating.knn is not None and saved["knn"] != 0
    pairs = (
        spark.table(namespace.table("splits"))
        .select("user_id", "movie_id")
        .union(spark.createDataFrame([(999, 1), (1, 999)], "user_id INT, movie_id INT"))
    )  # unknown ids too
    spark_pred = models.rating.predict(pairs).select("user_id", "movie_id", "prediction").orderBy("user_id", "movie_id")
    assert spark_pred.where("prediction IS NULL OR prediction < 1 OR prediction > 5").count() == 0
    # The same version through MLflow's pyfunc loader, without Spark.
    pdf = pairs.orderBy("user_id", "movie_id").toPandas().astype("int64")
    version = models.rating_version
    pyfunc = mlflow.pyfunc.load_model(f"models:/{registry.model_name(namespace, 'rating')}/{version}")
    ours = spark_pred.toPandas()
    assert ours[["user_id", "movie_id"]].to_numpy().tolist() == pdf[["user_id", "movie_id"]].to_numpy().tolist()
    assert np.allclose(ours["prediction"], pyfunc.predict(pdf)["prediction"], atol=1e-6)
    ranking = mlflow.pyfunc.load_model(f"models:/{registry.model_name(namespace, 'ranking')}/{models.ranking_version}")
    scores = ranking.predict(pd.DataFrame({"user_id": [1, 999], "movie_id": [1, 1]}))["prediction"]
    serving = Factors.load(spark, registry.download(namespace, "ranking", models.ranking_version) / "serving")
    served = serving.transform(spark.createDataFrame([(1, 1)], "user_id INT, movie_id INT")).first()
    assert scores[0] == pytest.approx(served["prediction"], abs=1e-6) and pd.isna(scores[1])


def test_evaluate_appends_model_metrics(spark, trained_in):
    namespace, storage, run_id, result = trained_in
    metrics = spark.table(namespace.table("model_metrics"))
    assert metrics.count() == result.rows["model_metrics"]
    by_model = {r["model"]: r["n"] for r in metrics.groupBy("model").agg(F.count("*").alias("n")).collect()}
    assert by_model == {"rating": 4, "ranking": 10, "baseline": 14, "popular": 10}
    assert metrics.where("metric = 'precision_at_k' AND k = 3 AND value BETWEEN 0 AND 1").count() == 3
    assert metrics.where("metric = 'rmse' AND k IS NULL AND value > 0").count() == 2
    assert (storage / "reports" / run_id / "metrics_vs_baseline.png").is_file()


@pytest.mark.parametrize(
    ("challenger", "champion", "force", "decision"),
    [
        (Scores(0.50, 0.90), Scores(0.48, 0.92), False, "promoted"),  # better on both
        (Scores(0.48, 0.92), Scores(0.48, 0.92), False, "promoted"),  # equal
        (Scores(0.476, 0.923), Scores(0.48, 0.92), False, "promoted"),  # worse, within both tolerances
        (Scores(0.47, 0.92), Scores(0.48, 0.92), False, "refused"),  # nDCG beyond its tolerance
        (Scores(0.48, 0.93), Scores(0.48, 0.92), False, "refused"),  # RMSE beyond its tolerance
        (Scores(0.10, 2.00), None, False, "first"),  # no champion yet
        (Scores(0.10, 2.00), Scores(0.48, 0.92), True, "forced"),  # an operator's override
    ],
)
def test_gate_decision_table(challenger, champion, force, decision):
    outcome, reason = decide(challenger, champion, ndcg_tolerance=0.005, rmse_tolerance=0.005, force=force)
    assert outcome == decision, reason
    if decision == "refused":
        assert "tolerance" in reason


def test_promote_first_run_then_a_refused_challenger_keeps_the_champion_until_forced_and_rolled_back(spark, trained_in):
    namespace, storage, run_id, _ = trained_in
    assert load_champion(spark, namespace) is None
    first = promote(spark, namespace, run_id=run_id, k=3)
    assert first.details["decision"] == "first"
    champion = registry.version_by_alias(namespace, "ranking", registry.CHAMPION)
    # A run already decided is not scored again: a retry re-applies the recorded decision.
    retry = promote(spark, namespace, run_id=run_id, k=3)
    assert (retry.details["decision"], retry.details["reapplied"], retry.rows["promotions"]) == ("first", True, 0)
    # Other tolerances decide anew: the same models against themselves are equal, promoted with zero tolerance.
    again = promote(spark, namespace, run_id=run_id, k=3, ndcg_tolerance=0.0, rmse_tolerance=0.0)
    assert (again.details["decision"], again.details["reapplied"]) == ("promoted", False)
    # A challenger whose recorded figures are far worse is refused and the alias stays where it was.
    worse = "r_worse"
    train(spark, namespace, storage, run_id=worse, grid=GRID)
    spark.createDataFrame(
        [
            (worse, "ranking", "benchmark", "ndcg_at_k", 3, 0.0, dt.datetime(2020, 1, 1)),
            (worse, "rating", "benchmark", "rmse", None, 9.0, dt.datetime(2020, 1, 1)),
        ],
        "run_id STRING, model STRING, protocol STRING, metric STRING, k INT, value DOUBLE, evaluated_at TIMESTAMP",
    ).writeTo(namespace.table("model_metrics")).append()
    refused = promote(spark, namespace, run_id=worse, k=3)
    assert refused.details["decision"] == "refused"
    assert registry.version_by_alias(namespace, "ranking", registry.CHAMPION).version == champion.version
    # The operator's override re-decides the refused run; promoting the first run again rolls back.
    assert promote(spark, namespace, run_id=worse, k=3, force=True).details["decision"] == "forced"
    assert registry.version_by_alias(namespace, "ranking", registry.CHAMPION).version != champion.version
    rollback = promote(spark, namespace, run_id=run_id, k=3, ndcg_tolerance=0.0, rmse_tolerance=0.0)
    assert (rollback.details["decision"], rollback.details["reapplied"]) == ("promoted", True)
    assert registry.version_by_alias(namespace, "ranking", registry.CHAMPION).version == champion.version
    decisions = [r["decision"] for r in spark.table(namespace.table("promotions")).orderBy("decided_at").collect()]
    assert decisions == ["first", "promoted", "refused", "forced"]


def test_a_train_after_promotion_fits_once_with_the_champions_hyperparameters_and_says_whose(spark, trained_in):
    namespace, storage, run_id, _ = trained_in
    promote(spark, namespace, run_id=run_id, k=3, force=True)  # the champion, whatever the tests before did
    result = train(spark, namespace, storage, run_id="r_nightly", grid=GRID)  # --tune auto: same grid and ratings
    runs = {r["run_id"]: r for r in spark.table(namespace.table("training_runs")).collect()}
    nightly, tuned = runs["r_nightly"], runs[run_id]
    version = tuned["ratings_version"]
    reason = f"hyperparameters reused from run {run_id} (0.00% of ratings changed since run {run_id} tuned on version"
    assert result.details["tuning"] == nightly["tuning"] == f"{reason} {version})"
    assert (nightly["tuned_by"], tuned["tuned_by"]) == (run_id, run_id)
    for column in ("rating_hyperparams", "ranking_hyperparams"):
        assert json.loads(nightly[column]) == json.loads(tuned[column]), column
    assert json.loads(nightly["validation_metrics"]) == [] and result.details["grid_points"] == 0
    assert set(json.loads(nightly["timings"])) == {"refit", "serving_refit", "log_models"}  # no tuning fits
    run = mlflow.get_run(nightly["mlflow_run_id"])
    assert (
        run.data.tags["movielens_als.tuned_by"] == run_id
        and run.data.tags["movielens_als.tuning"] == reason + f" {version})"
    )
    # The gate still decides: the nightly models are challengers until promote says otherwise.
    assert registry.version_by_alias(namespace, "ranking", registry.CHAMPION).tags["movielens_als.run_id"] == run_id


def test_evaluate_copies_the_baselines_recorded_for_the_same_split_k_and_sample_instead_of_scoring_them(
    spark, trained_in
):
    namespace, storage, run_id, first = trained_in
    assert first.details["baselines_from"] == run_id  # the first evaluate on this split scored them
    metrics = spark.table(namespace.table("model_metrics"))

    def figures(run: str) -> dict[tuple, float]:
        rows = metrics.where((F.col("run_id") == run) & F.col("model").isin("baseline", "popular")).collect()
        return {(r.model, r.metric, r.k, r.diversity_users, r.split_fingerprint): r.value for r in rows}

    nightly = evaluate(spark, namespace, storage, run_id="r_nightly", k=3)  # trained by the test above, same split
    assert nightly.details["baselines_from"] == run_id
    assert figures("r_nightly") == figures(run_id) and len(figures(run_id)) == 24
    assert nightly.details["ranking.ndcg_at_k"] >= 0 and nightly.rows["model_metrics"] == first.rows["model_metrics"]
    # Another diversity sample is another evaluation: scored again, not copied.
    other = evaluate(spark, namespace, storage, run_id="r_nightly", k=3, diversity_users=5)
    assert other.details["baselines_from"] == "r_nightly"


def test_promote_reads_the_champions_recorded_figures_on_the_same_split_and_scores_it_on_another(spark, trained_in):
    namespace, _, run_id, _ = trained_in
    promote(spark, namespace, run_id=run_id, k=3, force=True)
    metrics = spark.table(namespace.table("model_metrics")).where(F.col("run_id") == run_id)
    assert metrics.where(F.col("split_fingerprint").isNull()).count() == 0
    same = promote(spark, namespace, run_id=run_id, k=3, ndcg_tolerance=0.01, rmse_tolerance=0.01)
    assert same.details["champion_scored"] == f"recorded by run {run_id}'s evaluate"
    row = spark.table(namespace.table("promotions")).orderBy(F.col("decided_at").desc()).first()
    mine = "(model = 'ranking' AND metric = 'ndcg_at_k' AND k = 3) OR (model = 'rating' AND metric = 'rmse')"
    recorded = {r["metric"]: r["value"] for r in metrics.where(mine).collect()}
    assert (row["champion_ndcg"], row["champion_rmse"]) == (recorded["ndcg_at_k"], recorded["rmse"])
    # One test rating fewer: another split, whose figures nobody recorded, so the champion is scored on it.
    splits = namespace.table("splits")
    first = spark.table(splits).where("split = 'test'").orderBy("user_id", "movie_id").first()
    spark.sql(f"DELETE FROM {splits} WHERE user_id = {first.user_id} AND movie_id = {first.movie_id}")
    other = promote(spark, namespace, run_id=run_id, k=3, ndcg_tolerance=0.02, rmse_tolerance=0.02)
    assert other.details["champion_scored"] == "scored on the current test split"
