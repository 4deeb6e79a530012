"""The local loop against the recommenders ALS quick-start notebook, on ml-100k, same machine, same invocation.

Usage: MOVIELENS_100K=/path/to/ml-100k python benchmarks/local_loop.py

Both run in fresh processes, JVM start included. The notebook pipeline is reproduced as the
recommenders quick start runs it on plain Spark: load u.data, random 75/25 split with seed 123,
explicit ALS rank 10 / maxIter 15 / regParam 0.05, top-10 by a users x items cross join minus
the seen items, recommenders' Spark rating and ranking evaluators. The DAG is ``movielens-als run``
with the default grid on a fresh lakehouse: landing with quarantine, splits, validation tuning of
two models, evaluation against two baselines, the champion gate, serving tables, Delta writes.

The first run lands the release without its newest 1% of ratings; the nightly run then lands the whole
release into the same lakehouse, as a schedule meets a grown release: ``--tune auto`` reuses the champion's
hyperparameters (1% changed, under the 5% threshold) and fits once.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROGRESS = re.compile(r"^\[\d+/\d+\] (\w+)\s+([\d.]+)s")


def notebook(source: Path) -> dict[str, float]:
    """The quick-start pipeline; seconds per step."""
    started = time.monotonic()
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import SparkSession
    from recommenders.evaluation.spark_evaluation import SparkRankingEvaluation, SparkRatingEvaluation

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # workers on this venv's Python, as the project does
    # Without a checkpoint dir, serialising the cross join over 15 ALS iterations' lineage overflows
    # the JVM's default 1 MB thread stack (StackOverflowError in javaToPython); the notebook's own
    # session helper runs with more.
    spark = (
        SparkSession.builder.master("local[*]")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.extraJavaOptions", "-Xss16m")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    steps = {"start": time.monotonic() - started}
    t = time.monotonic()
    data = spark.read.csv(str(source / "u.data"), sep="\t", schema="UserId INT, MovieId INT, Rating FLOAT, T LONG")
    train, test = data.randomSplit([0.75, 0.25], seed=123)
    train, test = train.cache(), test.cache()
    train.count(), test.count()
    steps["load+split"] = time.monotonic() - t
    t = time.monotonic()
    model = ALS(
        rank=10,
        maxIter=15,
        implicitPrefs=False,
        regParam=0.05,
        coldStartStrategy="drop",
        nonnegative=False,
        seed=42,
        userCol="UserId",
        itemCol="MovieId",
        ratingCol="Rating",
    ).fit(train)
    steps["train"] = time.monotonic() - t
    t = time.monotonic()
    users = train.select("UserId").distinct()
    items = train.select("MovieId").distinct()
    pairs = users.crossJoin(items).join(train, ["UserId", "MovieId"], "left_anti")
    top_all = model.transform(pairs).cache()
    rating = SparkRatingEvaluation(
        test,
        model.transform(test),
        col_user="UserId",
        col_item="MovieId",
        col_rating="Rating",
        col_prediction="prediction",
    )
    ranking = SparkRankingEvaluation(
        test,
        top_all,
        k=10,
        col_user="UserId",
        col_item="MovieId",
        col_rating="Rating",
        col_prediction="prediction",
        relevancy_method="top_k",
    )
    figures = {"rmse": rating.rmse(), "ndcg_at_k": ranking.ndcg_at_k(), "precision_at_k": ranking.precision_at_k()}
    steps["recommend+evaluate"] = time.monotonic() - t
    steps["total"] = time.monotonic() - started
    print({**{f"{k}_s": round(v, 1) for k, v in steps.items()}, **figures})
    return steps


def run(cmd: list[str], env: dict) -> tuple[float, str]:
    started = time.monotonic()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd[:4])} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.monotonic() - started, done.stdout


def without_newest(source: Path, folder: Path, fraction: float) -> Path:
    """A copy of the ml-100k folder whose u.data lacks its newest ``fraction`` of ratings."""
    shutil.copytree(source, folder)
    lines = (source / "u.data").read_text(encoding="latin-1").splitlines(keepends=True)
    keep = sorted(lines, key=lambda line: int(line.split("\t")[3]))[: round(len(lines) * (1 - fraction))]
    (folder / "u.data").write_text("".join(keep), encoding="latin-1")
    return folder


def dag(source: str, home: str, env: dict) -> tuple[float, dict[str, float], str]:
    seconds, out = run([sys.executable, "-m", "movielens_als.cli", "run", "--source", source, "--home", home], env)
    stages = {m.group(1): float(m.group(2)) for m in map(PROGRESS.match, out.splitlines()) if m}
    return seconds, stages, out


def main() -> int:
    source = os.environ.get("MOVIELENS_100K")
    if not source:
        print("set MOVIELENS_100K to the ml-100k folder (GroupLens forbids redistributing it)", file=sys.stderr)
        return 2
    if sys.argv[1:] == ["--notebook"]:
        notebook(Path(source))
        return 0
    env = {k: v for k, v in os.environ.items() if k != "SPARK_REMOTE"}
    nb_seconds, nb_out = run([sys.executable, __file__, "--notebook"], env)
    home = tempfile.mkdtemp(prefix="als-loop-")
    first_source = without_newest(Path(source), Path(home) / "ml-100k-99", 0.01)
    runs = {"first run (tunes)": dag(str(first_source), home, env), "nightly (+1% ratings)": dag(source, home, env)}
    print("| what | seconds |\n|---|---|")
    print(f"| quick-start notebook pipeline (process, JVM start included) | {nb_seconds:.0f} |")
    for name, (seconds, stages, _) in runs.items():
        print(f"| {name}: {' / '.join(stages)} | {' / '.join(f'{v:.1f}' for v in stages.values())} |")
        print(f"| {name}: DAG time (sum of stages) | {sum(stages.values()):.0f} |")
        print(f"| {name}: `movielens-als run` (process, JVM start and summary included) | {seconds:.0f} |")
    print()
    for name, (seconds, stages, out) in runs.items():
        dag_time = sum(stages.values())
        print(f"{name}: DAG time / notebook {dag_time / nb_seconds:.1f}x; whole commands {seconds / nb_seconds:.1f}x")
        tuning = [line.strip() for line in out.splitlines() if line.strip().startswith("tuning: ")]
        print("  " + (tuning[0] if tuning else "(no tuning line)"))
        summary = [line for line in out.splitlines() if "ndcg@10" in line or line.strip().startswith("rmse")]
        print("\n".join(summary))
    print(nb_out.strip().splitlines()[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
