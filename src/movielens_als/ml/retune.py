"""Whether a training run searches the grid or fits once with the champion's hyperparameters.

A nightly run on a release that grew by a fraction of a percent would choose the hyperparameters it chose
yesterday: ``--tune auto`` searches again only when there is no champion to take them from, when the grid or
the protocol differ from those the champion's hyperparameters were tuned with, or when more than a fraction
of the ratings changed (added, removed or re-rated) since that tuning read them. Otherwise the run fits once
with them and records which run tuned them; the champion gate still decides whether it serves.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from movielens_als.columns import ITEM, RATING, USER
from movielens_als.config import TUNE_MODES
from movielens_als.errors import MovieLensAlsError
from movielens_als.lakehouse.names import Namespace
from movielens_als.lakehouse.tables import table_exists
from movielens_als.ml import registry
from movielens_als.ml.blend import Blend
from movielens_als.ml.hyperparams import RankingParams, RatingParams
from movielens_als.ml.models import TRAINING_RUNS
from movielens_als.ml.registry import CHAMPION, RANKING_MODEL

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Tuned:
    """Hyperparameters a run's tuning chose, with what that tuning searched and read."""

    run_id: str  # the run whose validation search chose them
    protocol: str
    grid: dict  # the parsed grid it searched
    ratings_version: int  # the ratings Delta version it read
    rating: RatingParams
    blend: Blend
    ranking: RankingParams


@dataclass(frozen=True)
class Plan:
    """What train does: search the grid (``reuse`` None) or fit ``reuse``'s hyperparameters; ``reason`` says why."""

    reason: str
    reuse: Tuned | None = None

    @property
    def tune(self) -> bool:
        return self.reuse is None


def decide(
    mode: str,
    tuned: Tuned | None,
    protocol: str,
    grid: dict,
    changed: Callable[[int], float | None],
    retune_fraction: float,
) -> Plan:
    """The rule, pure: ``changed(version)`` is the fraction of ratings changed since ``version`` (None: unknown),
    asked only when nothing else decides."""
    if mode not in TUNE_MODES:
        raise MovieLensAlsError(f"--tune must be one of {', '.join(TUNE_MODES)}, got {mode!r}")
    if mode == "always":
        return Plan("--tune always: the grid is searched")
    if tuned is None:
        if mode == "never":
            raise MovieLensAlsError("--tune never: no champion to take hyperparameters from; run with --tune auto")
        return Plan("no champion to take hyperparameters from: the grid is searched")
    reused = f"hyperparameters reused from run {tuned.run_id}"
    if mode == "never":
        return Plan(f"--tune never: {reused}", tuned)
    if tuned.protocol != protocol:
        return Plan(f"the champion was tuned on protocol {tuned.protocol!r}, not {protocol!r}: the grid is searched")
    if tuned.grid != grid:
        return Plan(f"the grid differs from the one run {tuned.run_id} searched: the grid is searched")
    fraction = changed(tuned.ratings_version)
    if fraction is None:
        gone = f"ratings version {tuned.ratings_version}, which run {tuned.run_id} tuned on, is gone"
        return Plan(f"{gone}: the grid is searched")
    since = f"{fraction:.2%} of ratings changed since run {tuned.run_id} tuned on version {tuned.ratings_version}"
    if fraction > retune_fraction:
        return Plan(f"{since}, more than {retune_fraction:.2%}: the grid is searched")
    return Plan(f"{reused} ({since})", tuned)


def champion_tuning(spark: SparkSession, namespace: Namespace) -> Tuned | None:
    """The champion's hyperparameters and the tuning that chose them; None without a champion or its records."""
    version = registry.version_by_alias(namespace, RANKING_MODEL, CHAMPION)
    if version is None or not table_exists(spark, namespace, TRAINING_RUNS.name):
        return None
    runs = spark.table(namespace.table(TRAINING_RUNS.name)).where(F.col("status") == "succeeded")
    champion = runs.where(F.col("run_id") == version.tags.get("movielens_als.run_id", "")).first()
    if champion is None or champion["rating_hyperparams"] is None:
        return None
    tuned_by = champion["tuned_by"] or champion["run_id"]  # rows written before runs could reuse tuned themselves
    tuning = champion if tuned_by == champion["run_id"] else runs.where(F.col("run_id") == tuned_by).first()
    if tuning is None:
        return None
    recorded = recorded_hyperparams(champion["rating_hyperparams"], champion["ranking_hyperparams"])
    if recorded is None:
        log.info("run %s recorded hyperparameters this version cannot fit with: not reused", champion["run_id"])
        return None
    rating, blend, ranking = recorded
    return Tuned(
        run_id=tuned_by,
        protocol=tuning["protocol"],
        grid=json.loads(tuning["params"]),
        ratings_version=tuning["ratings_version"],
        rating=rating,
        blend=blend,
        ranking=ranking,
    )


def recorded_hyperparams(rating: str, ranking: str) -> tuple[RatingParams, Blend, RankingParams] | None:
    """``training_runs``' JSON of a run's choice, typed; None when a run of an older version recorded less than a fit
    needs (no neighbour feature, no ``beta``)."""
    rating_values, ranking_values = json.loads(rating), json.loads(ranking)
    try:
        rating_params, ranking_params = RatingParams.from_dict(rating_values), RankingParams.from_dict(ranking_values)
    except (KeyError, TypeError):
        return None
    if rating_params.knn_k is None or rating_params.knn_power is None:
        return None
    return rating_params, Blend(**rating_values.get("blend", {})), ranking_params


def changed_fraction_fn(spark: SparkSession, namespace: Namespace, now: int) -> Callable[[int], float | None]:
    """``changed(version)``: ratings added, removed or re-rated between ``version`` and ``now`` of the ratings table,
    as a fraction of the rows at ``version``; None when that version can no longer be read."""
    name = namespace.table("ratings")

    def changed(version: int) -> float | None:
        if version == now:
            return 0.0
        try:
            before = spark.read.option("versionAsOf", version).table(name).select(USER, ITEM, F.col(RATING).alias("b"))
            total = before.count()
        except Exception as exc:  # noqa: BLE001 - vacuumed, or beyond the log's retention: unmeasurable, so re-tune
            log.info("ratings version %d unreadable: %s", version, str(exc).splitlines()[0][:200])
            return None
        after = spark.read.option("versionAsOf", now).table(name).select(USER, ITEM, F.col(RATING).alias("a"))
        diff = before.join(after, [USER, ITEM], "full_outer").where(~F.col("a").eqNullSafe(F.col("b"))).count()
        return diff / max(total, 1)

    return changed
