"""Warm-refit benchmark: would train's ranking refits need fewer iterations started from an earlier fit?

Usage: MOVIELENS_100K=/path/to/ml-100k python benchmarks/warm.py [--seeds 42,1] [--fractions 0.9,0.75] [--work DIR]

train refits the ranking model twice from scratch: on train + validation (the tuning fit saw nine tenths of those
rows) and on every rating (train + validation are three quarters of them). The same step, measured on validation
only: per seed, a benchmark split; a start fitted with the default grid's middle ranking point on a random
``fraction`` of the fit split; then warm fits on the whole fit split for 1, 2, 3 and 5 iterations against the cold
fit of ``max_iter``, each scored by validation nDCG@10 and catalogue coverage through the top-k that is served.
It prints the fewest warm iterations within tuning's ``NDCG_TIE`` of the cold nDCG and no lower in coverage, if
any. A measurement, not a gate.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WARM = (1, 2, 3, 5)
K = 10


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="42,1", help="comma-separated split/training seeds")
    parser.add_argument("--fractions", default="0.9,0.75", help="fractions of the fit split the start sees")
    parser.add_argument("--work", default=None, help="lakehouse home (default: a fresh temporary folder)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    fractions = [float(f) for f in args.fractions.split(",")]
    source = Path(os.environ.get("MOVIELENS_100K") or REPO.parent / "shared" / "datasets" / "ml-100k")
    if not source.exists():
        parser.error(f"no ml-100k at {source}: set MOVIELENS_100K to its folder or zip")
    home = Path(args.work or tempfile.mkdtemp(prefix="als-warm-")).resolve()

    from movielens_als.columns import USER
    from movielens_als.lakehouse.names import Namespace
    from movielens_als.lakehouse.spark import ensure_checkpoint_dir, get_spark, storage_root
    from movielens_als.ml.grid import DEFAULT_GRID, grid_points
    from movielens_als.ml.hyperparams import RankingParams
    from movielens_als.ml.metrics import coverage_novelty_fn, ranking_metrics_fn
    from movielens_als.ml.ranking_model import fit_ranking_model, model_top_k
    from movielens_als.ml.splitting import read_splits, tuning_frames
    from movielens_als.ml.tuning import NDCG_TIE
    from movielens_als.tasks.land import land
    from movielens_als.tasks.split import split

    spark = get_spark(home)
    ns = Namespace("spark_catalog", "warm")
    storage = storage_root(ns, "files", home)
    ensure_checkpoint_dir(spark, storage)
    land(spark, ns, storage, source=str(source), size="100k")
    points = grid_points(DEFAULT_GRID["ranking"], RankingParams.names())
    params = RankingParams.from_dict(points[len(points) // 2])
    print(f"ranking point: {params.as_dict()}", flush=True)
    rows = []
    for seed in seeds:
        split(spark, ns, "benchmark", seed=seed)
        splits = read_splits(spark, ns, "benchmark").cache()
        fit, validation, _ = tuning_frames(splits)
        fit, validation = fit.cache(), validation.cache()
        users = validation.select(USER).distinct().cache()

        def scored(model, fit=fit, validation=validation, users=users) -> tuple[float, float]:
            """(validation nDCG@K, catalogue coverage) of the model's served top-k."""
            top = model_top_k(model, users, fit, K).cache()
            values = ranking_metrics_fn(top, validation, K)["ndcg_at_k"], coverage_novelty_fn(fit, top)
            top.unpersist()
            return values[0], values[1]["catalog_coverage"]

        started = time.monotonic()
        cold = scored(fit_ranking_model(fit, params, seed))
        for fraction in fractions:
            start = fit_ranking_model(fit.sample(fraction=fraction, seed=seed), params, seed)
            curve = {n: scored(fit_ranking_model(fit, params, seed, start=start, max_iter=n)) for n in WARM}
            rows.append({"seed": seed, "fraction": fraction, "start": scored(start), "cold": cold, **curve})
            print(f"seed {seed} fraction {fraction}: {rows[-1]} ({time.monotonic() - started:.0f} s)", flush=True)
        splits.unpersist()
    spark.stop()

    print(f"\n{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores; ml-100k, benchmark split per seed, validation "
          f"nDCG@{K}; cold = {params.max_iter} iterations from scratch on the fit split")  # fmt: skip
    print("| seed | start sees | start | cold | " + " | ".join(f"warm {n}" for n in WARM) + " |")
    print("|---" * (4 + len(WARM)) + "|")
    for r in rows:
        cells = [f"{r[c][0]:.4f} / {r[c][1]:.4f}" for c in ("start", "cold", *WARM)]
        print(f"| {r['seed']} | {r['fraction']:.0%} | " + " | ".join(cells) + " |")
    enough = [n for n in WARM if all(r[n][0] >= r["cold"][0] - NDCG_TIE and r[n][1] >= r["cold"][1] for r in rows)]
    chosen = min(enough) if enough else None
    print(
        f"\ncells: validation nDCG@{K} / catalogue coverage. Fewest warm iterations within NDCG_TIE ({NDCG_TIE}) "
        f"of cold in nDCG and no lower in coverage, every row: {chosen or 'none'}"
    )
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "src"))
    sys.exit(main())
