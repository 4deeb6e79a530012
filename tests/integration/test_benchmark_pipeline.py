"""split -> train -> evaluate on the real ml-100k with a one-point grid and few iterations."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from movielens_als.splits import split
from movielens_als.train import train

pytestmark = pytest.mark.integration

GRID = {
    "rating": {"rank": [10], "reg_param": [0.1], "max_iter": [5], "passes": [1]},
    "ranking": {"rank": [16], "reg_param": [0.1], "alpha": [0.3], "max_iter": [5]},
}


def test_pipeline_on_ml100k(spark, landed_ml100k):
    pytest.importorskip("recommenders")
    from movielens_als.evaluate import evaluate

    namespace, storage = landed_ml100k.namespace, landed_ml100k.storage
    result = split(spark, namespace, "benchmark")
    assert result.rows["splits"] == 100_000 and result.details["test"] == 24_934  # round(0.75 n) per movie
    run_id = train(spark, namespace, storage, grid=GRID).details["run_id"]
    evaluate(spark, namespace, storage, run_id=run_id, k=10)
    m = {
        (r["model"], r["metric"]): r["value"]
        for r in spark.table(namespace.table("model_metrics")).where(F.col("run_id") == run_id).collect()
    }
    # Even a 5-iteration model beats the quick-start baseline by far on ranking.
    assert m[("ranking", "ndcg_at_k")] > 0.3 > m[("baseline", "ndcg_at_k")]
    assert m[("rating", "rmse")] < 0.96
