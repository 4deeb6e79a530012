"""Seaborn reports of an evaluated run: tuning heatmaps, rating distribution, metrics against the baseline."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # jobs have no display

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def tuning_frame(validation_metrics: str | None) -> pd.DataFrame:
    """One row per grid point of a run's ``validation_metrics`` JSON, parameters as columns."""
    scores = json.loads(validation_metrics or "[]")
    return pd.DataFrame([{**s["params"], **{k: v for k, v in s.items() if k != "params"}} for s in scores])


def _heatmap(df: pd.DataFrame, value: str, title: str, path: Path, best: str) -> bool:
    if df.empty or not {"rank", "reg_param", value} <= set(df.columns):
        return False
    # Other parameters are maximised (nDCG) or minimised (RMSE) away: the cell shows the best of them.
    table = df.pivot_table(index="rank", columns="reg_param", values=value, aggfunc=best)
    fig, ax = plt.subplots(figsize=(1.2 * table.shape[1] + 3, 0.7 * table.shape[0] + 2))
    sns.heatmap(table, annot=True, fmt=".4f", cmap="viridis" if best == "max" else "viridis_r", ax=ax)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write_reports(
    report_dir: Path, info: dict, results: dict, test: DataFrame, rating_pred: DataFrame, k: int
) -> list[str]:
    """Write the PNG reports of one run; return their paths."""
    report_dir.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    tuning = tuning_frame(info.get("validation_metrics"))
    if not tuning.empty:
        ranking = tuning[tuning["model"] == "ranking"]
        rating = tuning[(tuning["model"] == "rating") & (tuning.get("stage") == "als")]
        path = report_dir / "tuning_ranking_heatmap.png"
        if _heatmap(ranking, "ndcg_at_k", f"validation nDCG@{k}: rank x regParam (implicit ALS)", path, "max"):
            written.append(str(path))
        path = report_dir / "tuning_rating_heatmap.png"
        if _heatmap(rating, "rmse", "validation RMSE: rank x regParam (residual ALS)", path, "min"):
            written.append(str(path))

    # ml-100k test split is ~25k rows; larger releases are sampled to keep the plot cheap.
    n = rating_pred.count()
    sample = rating_pred if n <= 200_000 else rating_pred.sample(200_000 / n, seed=42)
    pdf = sample.select(F.col("rating").alias("true"), F.col("prediction").alias("predicted")).toPandas()
    long = pdf.melt(var_name="series", value_name="rating")
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.histplot(long, x="rating", hue="series", bins=40, stat="density", common_norm=False, element="step", ax=ax)
    ax.set_title("test ratings: true vs rating-model prediction")
    fig.tight_layout()
    path = report_dir / "rating_distribution.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(str(path))

    rows = []
    for model, groups in results.items():
        for group in ("rating", "ranking"):
            for metric, value in groups.get(group, {}).items():
                rows.append({"model": model, "metric": metric, "value": value})
    metrics = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    sns.barplot(metrics, x="metric", y="value", hue="model", ax=ax)
    ax.set_title(f"test metrics (k={k}) against the quick-start baseline")
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    path = report_dir / "metrics_vs_baseline.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(str(path))
    return written
