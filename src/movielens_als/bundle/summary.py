"""The summary ``movielens-als run`` prints: test metrics against the baseline and a few users' recommendations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from movielens_als.lakehouse.names import Namespace
from movielens_als.lakehouse.tables import table_exists

LOWER_IS_BETTER = {"rmse", "mae"}


REFERENCES = ("baseline", "popular")  # the models every run is compared with, shown after its own


def format_metrics(rows: Sequence[Mapping]) -> list[str]:
    """A table of metric x model, with the ALS model's change against the quick-start baseline."""
    if not rows:
        return []
    present = {r["model"] for r in rows}
    models = sorted(present - set(REFERENCES))
    references = [m for m in REFERENCES if m in present]
    has_baseline = "baseline" in present
    columns = models + references + (["vs baseline"] if has_baseline else [])
    table: dict[tuple, dict[str, float]] = {}
    for r in rows:
        table.setdefault((r["metric"], r["k"]), {})[r["model"]] = r["value"]
    widths = [max(10, len(c)) for c in models + references] + ([16] if has_baseline else [])

    def row(label: str, cells: list[str]) -> str:
        return f"  {label:<24}" + "".join(f"  {c:>{w}}" for c, w in zip(cells, widths, strict=True))

    lines = [row("metric", columns)]
    for (metric, k), values in sorted(table.items(), key=lambda item: (item[0][1] is not None, item[0][0])):
        cells = [_number(values.get(m)) for m in models + references]
        if has_baseline:
            cells.append(_versus(metric, values, models))
        lines.append(row(_label(metric, k), cells))
    return lines


def _label(metric: str, k) -> str:
    if k is None:
        return metric
    # map and map_at_k are different metrics: only the _at_k names become "@k".
    return f"{metric[:-5]}@{k}" if metric.endswith("_at_k") else f"{metric} (k={k})"


def _number(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _versus(metric: str, values: Mapping[str, float], models: Sequence[str]) -> str:
    base = values.get("baseline")
    ours = [values[m] for m in models if values.get(m) is not None]
    if base is None or len(ours) != 1:
        return "-"
    delta = ours[0] - base
    better = (delta < 0) if metric in LOWER_IS_BETTER else (delta > 0)
    return f"{delta:+.4f} {'better' if better else 'worse' if delta else 'same'}"


def format_recommendations(rows: Sequence[Mapping]) -> list[str]:
    """``user 1: 1. Title (score) ...`` lines, ranks in order."""
    by_user: dict[int, list[Mapping]] = {}
    for r in sorted(rows, key=lambda r: (r["user_id"], r["rank"])):
        by_user.setdefault(r["user_id"], []).append(r)
    lines = []
    for user, recs in by_user.items():
        lines.append(f"  user {user}:")
        for r in recs:
            title = r.get("title") or f"movie {r['movie_id']}"
            score = f" ({r['score']:.3f})" if r.get("score") is not None else ""
            lines.append(f"    {r['rank']:>2}. {title}{score}")
    return lines


def summary_lines(
    spark: SparkSession, namespace: Namespace, run_id: str, users: int = 3, per_user: int = 5
) -> list[str]:
    """Metrics against the baseline and a few users' recommendations, or why they are missing."""
    lines = ["", f"summary ({namespace}):"]
    for name, section in (("metrics", _metrics_section), ("recommendations", _recommendations_section)):
        try:
            lines += section(spark, namespace, run_id, users, per_user)
        except Exception as exc:  # noqa: BLE001 - a summary never fails the run
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            lines.append(f"  {name}: not available ({first})")
    return lines


def _metrics_section(spark, namespace, run_id, users, per_user) -> list[str]:
    if not table_exists(spark, namespace, "model_metrics"):
        return ["  metrics: model_metrics is not there yet (evaluate has not run)"]
    # A few rows per evaluated run: one collect beats several small Spark jobs.
    rows = [
        r.asDict()
        for r in spark.table(namespace.table("model_metrics"))
        .select("run_id", "model", "protocol", "metric", "k", "value", "evaluated_at")
        .collect()
    ]
    if not rows:
        return ["  metrics: model_metrics is empty"]
    chosen, note = run_id, ""
    if not any(r["run_id"] == run_id for r in rows):
        chosen = max(rows, key=lambda r: (r["evaluated_at"] is not None, r["evaluated_at"] or 0))["run_id"]
        note = " (this run has none: the latest evaluated run)"
    rows = [r for r in rows if r["run_id"] == chosen]
    protocols = ", ".join(sorted({r["protocol"] for r in rows if r["protocol"]}))
    return [f"  metrics of run {chosen}{note}, protocol {protocols or '-'}, test split:", *format_metrics(rows)]


def _recommendations_section(spark, namespace, run_id, users, per_user) -> list[str]:
    if not table_exists(spark, namespace, "user_recommendations"):
        return ["  recommendations: user_recommendations is not there yet (recommend has not run)"]
    recs = spark.table(namespace.table("user_recommendations"))
    mine = recs.where(F.col("model_run_id") == run_id)
    sample_users = [r[0] for r in mine.select("user_id").distinct().orderBy("user_id").limit(users).collect()]
    note = ""
    if not sample_users:  # recommend ran from another training run: show what is there
        mine = recs
        sample_users = [r[0] for r in recs.select("user_id").distinct().orderBy("user_id").limit(users).collect()]
        note = " (none from this run)"
    if not sample_users:
        return ["  recommendations: user_recommendations is empty"]
    picked = mine.where(F.col("user_id").isin(sample_users) & (F.col("rank") <= per_user))
    if table_exists(spark, namespace, "movies"):
        picked = picked.join(spark.table(namespace.table("movies")).select("movie_id", "title"), "movie_id", "left")
    else:
        picked = picked.withColumn("title", F.lit(None).cast("string"))
    rows = [r.asDict() for r in picked.select("user_id", "rank", "movie_id", "title", "score").collect()]
    return [f"  top {per_user} recommendations for {len(sample_users)} users{note}:", *format_recommendations(rows)]
