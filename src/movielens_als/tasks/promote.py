"""The champion gate: a run's models replace the served ones only if they are not worse on the same test split.

After ``evaluate``, the run's ``challenger`` versions and the current ``champion`` versions are both
scored on this run's protocol test split (the challenger's figures are the ones ``evaluate`` just
wrote; the champion is scored here, with the same top-k and metric code). The challenger is
promoted (alias ``champion`` moved to its versions) when its nDCG@k is at most ``ndcg_tolerance``
below the champion's and its RMSE at most ``rmse_tolerance`` above; the first run is promoted
directly, and ``force`` promotes whatever the figures. Every decision is a row of ``promotions``
and one printed line. A refused challenger fails nothing: ``recommend`` keeps serving the champion.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from movielens_als.columns import USER
from movielens_als.config import PROMOTE as DEFAULTS
from movielens_als.errors import MovieLensAlsError
from movielens_als.faults import failpoint
from movielens_als.ids import utc_now
from movielens_als.lakehouse import tables
from movielens_als.lakehouse.names import Namespace
from movielens_als.lakehouse.tables import Column, TableSpec
from movielens_als.ml import registry
from movielens_als.ml.metrics import ranking_metrics_fn, rating_metrics_fn
from movielens_als.ml.models import MODEL_METRICS, RunModels, load_champion, resolve_run_id, run_info
from movielens_als.ml.ranking_model import model_top_k
from movielens_als.ml.registry import CHAMPION, RANKING_MODEL, RATING_MODEL, RECOMMENDER_MODEL
from movielens_als.ml.splitting import split_fingerprint_fn, test_frames
from movielens_als.result import TaskResult

PROMOTIONS = TableSpec(
    "promotions",
    "One row per gate decision: the run's challenger against the champion on the run's test split.",
    (
        Column("run_id", "STRING", "Training run whose models were the challenger", nullable=False),
        Column("decided_at", "TIMESTAMP", "UTC time of the decision"),
        Column("decision", "STRING", "promoted, refused, first (no champion yet) or forced", nullable=False),
        Column("reason", "STRING", "Why, in one sentence"),
        Column("protocol", "STRING", "Split protocol whose test rows both models were scored on"),
        Column("k", "INT", "Cut-off of the nDCG compared"),
        Column("challenger_ranking_version", "BIGINT", "Ranking model version of the run"),
        Column("challenger_rating_version", "BIGINT", "Rating model version of the run"),
        Column("champion_ranking_version", "BIGINT", "Ranking model version that was champion before (NULL: none)"),
        Column("champion_rating_version", "BIGINT", "Rating model version that was champion before (NULL: none)"),
        Column("challenger_ndcg", "DOUBLE", "nDCG@k of the challenger"),
        Column("champion_ndcg", "DOUBLE", "nDCG@k of the champion on the same rows"),
        Column("challenger_rmse", "DOUBLE", "RMSE of the challenger"),
        Column("champion_rmse", "DOUBLE", "RMSE of the champion on the same rows"),
        Column("ndcg_tolerance", "DOUBLE", "Largest nDCG drop the gate accepts"),
        Column("rmse_tolerance", "DOUBLE", "Largest RMSE rise the gate accepts"),
        Column("champion_scored", "STRING", "How the champion's figures were had: recorded by its evaluate, or scored"),
    ),
)


@dataclass(frozen=True)
class Scores:
    ndcg: float
    rmse: float


def decide(
    challenger: Scores, champion: Scores | None, ndcg_tolerance: float, rmse_tolerance: float, force: bool = False
) -> tuple[str, str]:
    """(decision, reason): the gate's rule, pure so its table of cases is tested directly."""
    if champion is None:
        return "first", "no champion yet: the first challenger is promoted"
    drop, rise = champion.ndcg - challenger.ndcg, challenger.rmse - champion.rmse
    worse = [f"nDCG {drop:.4f} below the champion (tolerance {ndcg_tolerance})"] if drop > ndcg_tolerance else []
    worse += [f"RMSE {rise:.4f} above the champion (tolerance {rmse_tolerance})"] if rise > rmse_tolerance else []
    if force:
        return "forced", "forced by the operator" + (f" although {' and '.join(worse)}" if worse else "")
    if worse:
        return "refused", " and ".join(worse)
    return "promoted", f"nDCG {-drop:+.4f}, RMSE {rise:+.4f} against the champion, within the tolerances"


def _challenger_scores(spark: SparkSession, namespace: Namespace, run_id: str, k: int) -> Scores:
    metrics = spark.table(namespace.table(MODEL_METRICS.name)).where(F.col("run_id") == run_id)
    found = {(r["model"], r["metric"], r["k"]): r["value"]
             for r in metrics.where(F.col("model").isin("ranking", "rating")).collect()}  # fmt: skip
    ndcg, rmse = found.get(("ranking", "ndcg_at_k", k)), found.get(("rating", "rmse", None))
    if ndcg is None or rmse is None:
        raise MovieLensAlsError(f"run {run_id!r} has no nDCG@{k} and RMSE in model_metrics: run evaluate first")
    return Scores(ndcg, rmse)


def _champion_scores(spark: SparkSession, namespace: Namespace, champion: RunModels, protocol: str, k: int
                     ) -> tuple[Scores, str]:  # fmt: skip
    """The champion's nDCG@k and RMSE on this protocol's test split, and how they were had: the figures its own
    evaluate recorded when it scored the same rows (same split fingerprint), else scored here."""
    train_df, test = test_frames(spark, namespace, protocol)
    fingerprint = split_fingerprint_fn(train_df, test)
    recorded = {}
    if tables.table_exists(spark, namespace, MODEL_METRICS.name):
        metrics = spark.table(namespace.table(MODEL_METRICS.name))
        if "split_fingerprint" in metrics.columns:  # older tables gain the column at their next evaluate
            mine = (F.col("run_id") == champion.run_id) & (F.col("protocol") == protocol)
            mine &= F.col("split_fingerprint") == fingerprint
            wanted = ((F.col("model") == "ranking") & (F.col("metric") == "ndcg_at_k") & (F.col("k") == k)) | (
                (F.col("model") == "rating") & (F.col("metric") == "rmse")
            )
            recorded = {r["metric"]: r["value"] for r in metrics.where(mine & wanted).collect()}
    if {"ndcg_at_k", "rmse"} <= set(recorded):
        scores, how = Scores(recorded["ndcg_at_k"], recorded["rmse"]), f"recorded by run {champion.run_id}'s evaluate"
    else:
        top = model_top_k(champion.ranking, test.select(USER).distinct(), train_df, k)
        scores = Scores(
            ranking_metrics_fn(top, test, k)["ndcg_at_k"], rating_metrics_fn(champion.rating.predict(test))["rmse"]
        )
        how = "scored on the current test split"
    train_df.unpersist()
    test.unpersist()
    return scores, how


def promote(
    spark: SparkSession,
    namespace: Namespace,
    run_id: str | None = None,
    k: int = DEFAULTS.k,
    ndcg_tolerance: float = DEFAULTS.ndcg_tolerance,
    rmse_tolerance: float = DEFAULTS.rmse_tolerance,
    force: bool = DEFAULTS.force_promote,
) -> TaskResult:
    """Score the champion beside the run's challenger, record the decision, move ``champion`` if the gate allows.

    A run already decided with the same ``k`` and tolerances is not scored again: its recorded decision
    is applied again (a job retry after a crash; or a rollback, ``promote --run-id`` of an earlier
    promoted run). Other ``k`` or tolerances, or ``force`` on a refused run, decide anew.
    """
    for name, value in (("ndcg_tolerance", ndcg_tolerance), ("rmse_tolerance", rmse_tolerance)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise MovieLensAlsError(f"--{name.replace('_', '-')} must be a non-negative number, got {value!r}")
    run_id = resolve_run_id(spark, namespace, run_id)
    row = _recorded_decision(spark, namespace, run_id)
    asked = {"k": k, "ndcg_tolerance": float(ndcg_tolerance), "rmse_tolerance": float(rmse_tolerance)}
    reapplied = row is not None and not (force and row["decision"] == "refused")
    reapplied = reapplied and all(row[name] == value for name, value in asked.items())
    if not reapplied:
        row = _decide_row(spark, namespace, run_id, k, ndcg_tolerance, rmse_tolerance, force)
        # Recorded before it is applied: a run killed in between is finished by its re-run, which applies
        # the recorded decision instead of scoring a champion that may already be this run's models.
        tables.append(spark, namespace, PROMOTIONS, spark.createDataFrame([row], PROMOTIONS.schema_ddl))
        failpoint("promote.recorded")
    if row["decision"] != "refused":
        registry.set_alias(namespace, RANKING_MODEL, CHAMPION, row["challenger_ranking_version"])
        registry.set_alias(namespace, RATING_MODEL, CHAMPION, row["challenger_rating_version"])
        # The endpoint's model moves with the ranking model it was built from; a run older than the
        # recommender model has none, and no recommender of another run may stay champion beside it.
        recommender = run_info(spark, namespace, run_id).get("recommender_model_version")
        if recommender is None:
            registry.delete_alias(namespace, RECOMMENDER_MODEL, CHAMPION)
        else:
            registry.set_alias(namespace, RECOMMENDER_MODEL, CHAMPION, recommender)
    decision, reason = row["decision"], row["reason"]
    return TaskResult(
        "promote",
        rows={PROMOTIONS.name: 0 if reapplied else 1},
        details={
            "run_id": run_id,
            "decision": decision,
            "reason": reason,
            "reapplied": reapplied,
            "champion_scored": row.get("champion_scored"),
        },  # fmt: skip
        headline=f"gate: {decision}, {reason}" + (" (recorded decision applied again)" if reapplied else ""),
    )


def _recorded_decision(spark: SparkSession, namespace: Namespace, run_id: str) -> dict | None:
    """The gate's latest recorded decision on ``run_id``, or None."""
    if not tables.table_exists(spark, namespace, PROMOTIONS.name):
        return None
    rows = spark.table(namespace.table(PROMOTIONS.name)).where(F.col("run_id") == run_id)
    last = rows.orderBy(F.col("decided_at").desc()).limit(1).collect()
    return last[0].asDict() if last else None


def _decide_row(
    spark: SparkSession,
    namespace: Namespace,
    run_id: str,
    k: int,
    ndcg_tolerance: float,
    rmse_tolerance: float,
    force: bool,
) -> dict:
    """Score the champion beside the run's challenger and decide: the ``promotions`` row."""
    info = run_info(spark, namespace, run_id)
    challenger = _challenger_scores(spark, namespace, run_id, k)
    champion_models = load_champion(spark, namespace)
    champion, scored = None, None
    if champion_models is not None:
        champion, scored = _champion_scores(spark, namespace, champion_models, info["protocol"], k)
    decision, reason = decide(challenger, champion, ndcg_tolerance, rmse_tolerance, force)
    return {
        "run_id": run_id, "decided_at": utc_now(), "decision": decision, "reason": reason, "champion_scored": scored,
        "protocol": info["protocol"], "k": k, "challenger_ranking_version": info["ranking_model_version"],
        "challenger_rating_version": info["rating_model_version"],
        "champion_ranking_version": champion_models.ranking_version if champion_models else None,
        "champion_rating_version": champion_models.rating_version if champion_models else None,
        "challenger_ndcg": challenger.ndcg, "champion_ndcg": champion.ndcg if champion else None,
        "challenger_rmse": challenger.rmse, "champion_rmse": champion.rmse if champion else None,
        "ndcg_tolerance": float(ndcg_tolerance), "rmse_tolerance": float(rmse_tolerance),
    }  # fmt: skip
