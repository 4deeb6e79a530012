"""Fit benchmark: one implicit ALS fit on the same ratings by this project's iALS, Spark ML's ALS and ``implicit``.

Usage: python benchmarks/fit.py [--size 5m] [--rank 64] [--iterations 2,5] [--work DIR]

The ratings are a synthetic release (``movielens-als synth``, seed 0, ml-25m's shape scaled to the size; made once
into WORK), every rating a positive with confidence ``1 + alpha * rating``. Each library fits at rank 64 with
regulariser 0.1 and alpha 0.6 on the same two cores: Spark on ``local[2]`` (this project's iALS with the default
``beta`` and its own block count, Spark ML's ``ALS(implicitPrefs=True)`` with its default blocks), ``implicit``'s
CPU solver with ``num_threads=2`` (conjugate gradient, its default). Each fits once untimed (JIT, Python workers
and caches warm), then twice at each of two iteration counts in the same process; seconds per iteration is the
slope between the faster fit of each count, and set-up what the fewer iterations cost beyond it, so building
blocks does not count as iterations. A measurement, not a gate.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIZES = {"1m": 1_000_000, "5m": 5_000_000, "25m": 25_000_000}
REG, ALPHA, SEED = 0.1, 0.6, 0


def release(work: Path, size: str) -> Path:
    from movielens_als.ingest.synth import synthesize

    folder = work / f"synth-{size}"
    if not (folder / "ratings.csv").is_file():
        synthesize(SIZES[size], folder, seed=0)
    return folder


def ratings_frame(folder: Path):
    import pandas as pd

    return pd.read_csv(folder / "ratings.csv", usecols=["userId", "movieId", "rating"],
                       dtype={"userId": "int32", "movieId": "int32", "rating": "float32"})  # fmt: skip


def timed(fit, iterations: list[int], repeats: int = 2) -> dict[int, float]:
    """The fewest seconds of ``fit(n)`` over ``repeats`` for each count, after one untimed fit (JIT, Python
    workers and caches warm)."""
    fit(1)
    out = {n: float("inf") for n in iterations}
    for _ in range(repeats):
        for n in iterations:
            started = time.perf_counter()
            fit(n)
            out[n] = min(out[n], time.perf_counter() - started)
    return out


def spark_fits(ratings, rank: int, iterations: list[int], home: Path) -> dict[str, dict[int, float]]:
    from pyspark.ml.recommendation import ALS

    from movielens_als.columns import ITEM, USER
    from movielens_als.lakehouse.spark import ensure_checkpoint_dir, get_spark
    from movielens_als.ml.grid import DEFAULT_GRID
    from movielens_als.ml.ials import fit_ials

    spark = get_spark(home)
    ensure_checkpoint_dir(spark, home / "files")
    df = spark.createDataFrame(ratings.rename(columns={"userId": USER, "movieId": ITEM, "rating": "value"}))
    df = df.repartition(spark.sparkContext.defaultParallelism).cache()
    df.count()
    beta = DEFAULT_GRID["ranking"]["beta"][0]

    def ours(n: int) -> None:
        factors = fit_ials(df, rank=rank, reg_param=REG, alpha=ALPHA, beta=beta, max_iter=n, seed=SEED)
        factors.users.count(), factors.items.count()

    def spark_ml(n: int) -> None:
        als = ALS(rank=rank, maxIter=n, regParam=REG, alpha=ALPHA, implicitPrefs=True, userCol=USER, itemCol=ITEM,
                  ratingCol="value", seed=SEED, checkpointInterval=10)  # fmt: skip
        model = als.fit(df)
        model.userFactors.count(), model.itemFactors.count()

    try:
        return {"movielens-als iALS": timed(ours, iterations), "Spark ML ALS": timed(spark_ml, iterations)}
    finally:
        spark.stop()


def implicit_fits(ratings, rank: int, iterations: list[int]) -> dict[str, dict[int, float]]:
    import numpy as np
    from implicit.cpu.als import AlternatingLeastSquares
    from scipy.sparse import csr_matrix
    from threadpoolctl import threadpool_limits

    users, user_index = np.unique(ratings["userId"].to_numpy(), return_inverse=True)
    items, item_index = np.unique(ratings["movieId"].to_numpy(), return_inverse=True)
    confidence = (1.0 + ALPHA * ratings["rating"].to_numpy()).astype(np.float32)
    matrix = csr_matrix((confidence, (user_index, item_index)), shape=(len(users), len(items)))

    def fit(n: int) -> None:
        # alpha=1: the confidences above already hold 1 + alpha * rating. implicit runs its own threads and asks
        # for single-threaded BLAS beneath them.
        model = AlternatingLeastSquares(factors=rank, regularization=REG, alpha=1.0, iterations=n, num_threads=2,
                                        random_state=SEED, calculate_training_loss=False)  # fmt: skip
        with threadpool_limits(1, "blas"):
            model.fit(matrix, show_progress=False)

    return {"implicit (CPU, CG)": timed(fit, iterations)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="5m")
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--iterations", default="2,5", help="two iteration counts, fewest first")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "movielens-als-bench-fit")
    parser.add_argument("--only", choices=("spark", "implicit"), help="one side only")
    args = parser.parse_args(argv)
    iterations = [int(n) for n in args.iterations.split(",")]
    if len(iterations) != 2 or not 0 < iterations[0] < iterations[1]:
        parser.error("--iterations takes two counts, fewest first: 2,5")
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MOVIELENS_ALS_DRIVER_MEMORY", "8g")
    started = time.perf_counter()
    ratings = ratings_frame(release(args.work, args.size))
    print(f"{len(ratings):,} ratings, {ratings['userId'].nunique():,} users, {ratings['movieId'].nunique():,} movies "
          f"({time.perf_counter() - started:.0f} s to make and read)", flush=True)  # fmt: skip
    results: dict[str, dict[int, float]] = {}
    if args.only != "spark":
        results |= implicit_fits(ratings, args.rank, iterations)
    if args.only != "implicit":
        results |= spark_fits(ratings, args.rank, iterations, args.work / "lakehouse")
    low, high = iterations
    print(f"\n{time.strftime('%Y-%m-%d')}, {platform.platform()}, {os.cpu_count()} cores; {args.size} synthetic, "
          f"rank {args.rank}, reg {REG}, alpha {ALPHA}, 2 threads; fits of {low} and {high} iterations")  # fmt: skip
    print(f"| fit | {low} it (s) | {high} it (s) | s / iteration | set-up (s) | x implicit |")
    print("|---|---|---|---|---|---|")
    per = {name: (t[high] - t[low]) / (high - low) for name, t in results.items()}
    base = per.get("implicit (CPU, CG)")
    for name, t in results.items():
        ratio = f"{per[name] / base:.1f}" if base else "-"
        print(f"| {name} | {t[low]:.1f} | {t[high]:.1f} | {per[name]:.2f} | {t[low] - low * per[name]:.1f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "src"))
    sys.exit(main())
