"""--tune: each branch of the rule, and the fraction of ratings changed between two Delta versions."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from movielens_als.errors import MovieLensAlsError
from movielens_als.ml.blend import Blend
from movielens_als.ml.grid import parse_grid
from movielens_als.ml.hyperparams import RankingParams, RatingParams
from movielens_als.ml.retune import Tuned, changed_fraction_fn, decide, recorded_hyperparams

GRID = parse_grid({"ranking": {"reg_param": [0.1]}})
RATING = RatingParams(reg_user=3.0, reg_item=3.0, rank=50, reg_param=0.12, max_iter=20, passes=3, knn_k=100,
                      knn_power=3.0)  # fmt: skip
RANKING = RankingParams(rank=64, reg_param=0.1, alpha=0.6, beta=2.3, max_iter=10, implicit_value="rating")
TUNED = Tuned("night-1", "benchmark", GRID, 7, RATING, Blend(), RANKING)


def unchanged(_version: int) -> float:
    return 0.01


def never_asked(_version: int) -> float:
    raise AssertionError("the changed fraction is measured only when nothing else decides")


@pytest.mark.parametrize(
    ("mode", "tuned", "protocol", "grid", "changed", "reuse", "reason"),
    [
        ("always", TUNED, "benchmark", GRID, never_asked, False, "--tune always"),
        ("auto", None, "benchmark", GRID, never_asked, False, "no champion"),
        ("auto", TUNED, "chrono", GRID, never_asked, False, "tuned on protocol 'benchmark', not 'chrono'"),
        ("auto", TUNED, "benchmark", parse_grid(None), never_asked, False, "the grid differs from the one run night-1"),
        ("auto", TUNED, "benchmark", GRID, lambda v: 0.06, False, "6.00% of ratings changed since run night-1"),
        ("auto", TUNED, "benchmark", GRID, lambda v: None, False, "ratings version 7, which run night-1 tuned on, is"),
        ("auto", TUNED, "benchmark", GRID, unchanged, True, "hyperparameters reused from run night-1 (1.00% of"),
        ("auto", TUNED, "benchmark", GRID, lambda v: 0.05, True, "reused from run night-1 (5.00%"),  # at the threshold
        ("never", TUNED, "chrono", parse_grid(None), never_asked, True, "--tune never: hyperparameters reused"),
    ],
)
def test_tune_rule(mode, tuned, protocol, grid, changed, reuse, reason):
    plan = decide(mode, tuned, protocol, grid, changed, retune_fraction=0.05)
    assert (plan.reuse is not None, plan.tune) == (reuse, not reuse)
    assert plan.reuse is (tuned if reuse else None)
    assert reason in plan.reason, plan.reason


def test_recorded_hyperparameters_read_back_typed_or_not_at_all_when_an_older_run_recorded_less():
    rating = json.dumps(RATING.as_dict() | {"blend": {"intercept": 0.1, "explicit": 0.9, "implicit": 0.2, "knn": 0.3}})
    ranking = json.dumps(RANKING.as_dict())
    assert recorded_hyperparams(rating, ranking) == (RATING, Blend(0.1, 0.9, 0.2, 0.3), RANKING)
    no_knn = json.dumps({k: v for k, v in RATING.as_dict().items() if not k.startswith("knn")})
    no_beta = json.dumps({k: v for k, v in RANKING.as_dict().items() if k != "beta"})
    assert recorded_hyperparams(no_knn, ranking) is None and recorded_hyperparams(rating, no_beta) is None


def test_never_without_a_champion_and_an_unknown_mode_are_errors():
    with pytest.raises(MovieLensAlsError, match="--tune never: no champion"):
        decide("never", None, "benchmark", GRID, never_asked, 0.05)
    with pytest.raises(MovieLensAlsError, match="--tune must be one of auto, always, never, got 'sometimes'"):
        decide("sometimes", TUNED, "benchmark", GRID, never_asked, 0.05)


def test_changed_fraction_counts_added_removed_and_rerated_rows_against_the_earlier_version(spark, namespace):
    table = namespace.table("ratings")
    t0 = dt.datetime(2020, 1, 1)
    first = [(u, m, 3.0, t0) for u in range(1, 6) for m in range(1, 5)]  # 20 ratings
    schema = "user_id INT, movie_id INT, rating DOUBLE, rated_at TIMESTAMP"
    spark.createDataFrame(first, schema).writeTo(table).using("delta").createOrReplace()
    v0 = spark.sql(f"DESCRIBE HISTORY {table}").first()["version"]
    # One re-rated, one removed, two added: 4 of the first version's 20 rows.
    second = [r for r in first if (r[0], r[1]) != (1, 1)] + [(9, 1, 4.0, t0), (9, 2, 5.0, t0)]
    second = [(u, m, 5.0 if (u, m) == (2, 2) else r, t) for u, m, r, t in second]
    spark.createDataFrame(second, schema).writeTo(table).using("delta").createOrReplace()
    v1 = spark.sql(f"DESCRIBE HISTORY {table}").first()["version"]
    changed = changed_fraction_fn(spark, namespace, v1)
    assert changed(v0) == pytest.approx(4 / 20)
    assert changed(v1) == 0.0
    assert changed(v1 + 5) is None  # a version that cannot be read: unmeasurable, so auto tunes
