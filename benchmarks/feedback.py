"""Feedback benchmark: what harvesting the inference table and merging it into ratings adds to a run's land.

Usage: python benchmarks/feedback.py [--sizes 100k,5m] [--requests 1000] [--work DIR]

For each release (100k: the real ml-100k at $MOVIELENS_100K; 5m: a ``movielens-als synth`` release of 5,000,000
ratings, cached in the work folder) a fresh lakehouse lands it, then ``movielens-als land`` runs three more times
on the unchanged release, each a process of its own as the job's task is: with no inference table; after
``--requests`` fold-in requests of 10 ratings each were logged by ``serve``'s own logger (half by new people, half
re-ratings by known users, a few off the scale); and once more with nothing new. The table shows each land's
seconds and what it harvested and merged; the difference to the first unchanged land is what feedback adds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from deltalake import DeltaTable

from movielens_als.lakehouse.catalog import delta_path
from movielens_als.lakehouse.names import payload_table
from movielens_als.serving.inference import InferenceLog

REPO = Path(__file__).resolve().parents[1]
ENDPOINT, SCHEMA = "movielens-als", "movielens"


def cli(*args: str, home: Path | None = None) -> tuple[float, str]:
    began = time.monotonic()
    where = ["--home", str(home)] if home else []
    done = subprocess.run([sys.executable, "-m", "movielens_als.cli", *args, *where], cwd=REPO,
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode:
        raise SystemExit(f"error: movielens-als {' '.join(args)} failed: {done.stderr[-2000:]}")
    return time.monotonic() - began, done.stdout


def release(size: str, work: Path) -> Path:
    if size == "100k":
        source = os.environ.get("MOVIELENS_100K") or str(REPO.parent / "shared/datasets/ml-100k")
        return Path(source)
    folder = work / f"synth-{size}"
    if not (folder / "ratings.csv").is_file():
        cli("synth", "--ratings", str({"1m": 1_000_000, "5m": 5_000_000}[size]), "--out", str(folder))
    return folder


def log_feedback(home: Path, requests: int, rng: np.random.Generator) -> None:
    movies = DeltaTable(str(delta_path(home, SCHEMA, "movies"))).to_pandas()["movie_id"].to_numpy()
    ratings = DeltaTable(str(delta_path(home, SCHEMA, "ratings"))).to_pandas(columns=["user_id"])["user_id"]
    users = ratings.unique()
    scale = np.arange(1, 11) / 2 if ratings.size > 200_000 else np.arange(1, 6)  # the synthetic release: half stars
    log = InferenceLog(delta_path(home, SCHEMA, payload_table(ENDPOINT)), "movielens_als_recommender-1", 3600)
    now = dt.datetime.now(dt.UTC)
    for i in range(requests):
        user = 1_000_000_000 + i if i % 2 else int(rng.choice(users))
        picked = rng.choice(movies, 10, replace=False)
        values = rng.choice(scale, 10).tolist()
        if i % 100 == 0:
            values[0] = 9.0  # off the scale: quarantined
        body = {"dataframe_records": [{"user_id": user, "movie_ids": picked.tolist(), "ratings": values, "n": 10}]}
        log.record(now + dt.timedelta(milliseconds=i), 200, 4, json.dumps(body), "{}")
    log.close()


def counts(output: str) -> str:
    found = dict(re.findall(r"(feedback_\w+)=(\d+)", output))
    return ", ".join(f"{k.removeprefix('feedback_')} {v}" for k, v in found.items()) or "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100k,5m")
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--work", default=None)
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-feedback-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    rows = []
    for size in args.sizes.split(","):
        source = release(size, work)
        home = Path(tempfile.mkdtemp(prefix=f"home-{size}-", dir=work))
        land = ("land", "--source", str(source), "--endpoint-name", ENDPOINT, "--max-quarantine-fraction", "0.05")
        first, _ = cli(*land, home=home)
        plain, out = cli(*land, home=home)
        rows.append((size, "unchanged release, no inference table", plain, counts(out)))
        log_feedback(home, args.requests, rng)
        merged, out = cli(*land, home=home)
        rows.append((size, f"unchanged release + {args.requests:,} requests", merged, counts(out)))
        again, out = cli(*land, home=home)
        rows.append((size, "unchanged release, nothing new", again, counts(out)))
        print(f"{size}: first land {first:.1f} s", flush=True)
    print(f"\nfeedback merge ({platform.machine()}, {os.cpu_count()} cores), {time.strftime('%Y-%m-%d')}")
    print(f"{'release':8} {'land':42} {'seconds':>8}  feedback")
    for size, what, seconds, found in rows:
        print(f"{size:8} {what:42} {seconds:8.1f}  {found}")


if __name__ == "__main__":
    main()
