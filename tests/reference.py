"""The reference DAG: one small synthetic release through the bundle's whole job, once per test session.

The tests that run the DAG another way (through Spark Connect, on a standalone cluster, killed and re-run
task by task, behind the serving endpoint) compare with this one run instead of running a DAG of their
own beside it. It is ``movielens-als run``'s own code path (:func:`run_job`: the job read from the
bundle's YAML, every task, the summary and the report) on the session's classic Spark, into the building
worker's lakehouse home; the other xdist worker waits for it on a file lock and reads its Delta tables by
path (each process has its own catalog).

Before the run, the serving endpoint's inference table holds what people sent it (:func:`seed_feedback`, written
by ``serve``'s own logger): a new person's ratings, a known user re-rating a movie, and a rating off the scale. The
run's land harvests them, so every DAG compared with this one (seeded the same way) proves the feedback loop too.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import io
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from movielens_als.bundle.config import plan_job
from movielens_als.config import ENDPOINT_NAME
from movielens_als.ingest.synth import synthesize
from movielens_als.lakehouse.catalog import delta_path
from movielens_als.lakehouse.names import payload_table
from movielens_als.serving.inference import InferenceLog

REPO = Path(__file__).resolve().parents[1]
RELEASE_RATINGS, SEED = 5_000, 7  # 33 users, 921 rated movies
FEEDBACK_USER, FEEDBACK_MOVIES = 1_000_000_001, 8  # a new person who rated 8 movies through the endpoint
RATINGS = RELEASE_RATINGS + FEEDBACK_MOVIES  # what ratings holds after land: the release and the feedback
FEEDBACK_AT = dt.datetime(2031, 1, 1, tzinfo=dt.UTC)  # after every rating of the release
# The rating model's Spark ALS runs 20 iterations: more than a Spark Connect server's stack survives unless its
# ALS checkpoints (the ranking model's iALS checkpoints every half-step by itself, so a few iterations do).
GRID = {
    "rating": {"rank": [4], "reg_param": [0.1], "max_iter": [20], "passes": [1], "knn_k": [20]},
    "ranking": {"rank": [4], "reg_param": [0.1], "alpha": [0.6], "max_iter": [3]},
}
PARAMS = (f"grid={json.dumps(GRID)}", "diversity_users=100")
SPLIT_COLUMNS = ["user_id", "movie_id", "rating", "rated_at", "protocol", "split", "seed"]
SCHEMA = "movielens"  # the bundle's default schema


@dataclass(frozen=True)
class Reference:
    home: Path  # the lakehouse home: warehouse, volumes and the MLflow registry
    release: Path  # the synthetic release it landed
    run_id: str
    output: str  # what `run` printed

    def table(self, spark: SparkSession, name: str) -> DataFrame:
        return read_table(spark, self.home, name)


def read_table(spark: SparkSession, home: Path, name: str, schema: str = SCHEMA) -> DataFrame:
    """A table another process (or worker) wrote under ``home``, by its Delta path."""
    return spark.read.format("delta").load(str(delta_path(home, schema, name)))


def write_release(folder: Path) -> Path:
    synthesize(RELEASE_RATINGS, folder, seed=SEED)
    return folder


@dataclass(frozen=True)
class Feedback:
    movies: list[int]  # the new person's, rated 5, 4.5, 4, ... in this order
    user: int  # a user of the release, who re-rated ``rerated`` 0.5 stars
    rerated: int


def feedback_of(release: Path) -> Feedback:
    with open(release / "ratings.csv") as f:
        next(f)
        first = next(f).split(",")
    with open(release / "movies.csv") as f:
        next(f)
        movies = [int(line.split(",", 1)[0]) for _, line in zip(range(FEEDBACK_MOVIES), f, strict=False)]
    return Feedback(movies, int(first[0]), int(first[1]))


def seed_feedback(home: Path, schema: str, release: Path) -> Feedback:
    """The requests people sent the endpoint, in its inference table under ``home``, as ``serve`` logs them."""
    fb = feedback_of(release)
    log = InferenceLog(delta_path(home, schema, payload_table(ENDPOINT_NAME)), "movielens_als_recommender-0", 3600)
    requests = [
        {"user_id": FEEDBACK_USER, "movie_ids": fb.movies, "ratings": [5 - i / 2 for i in range(len(fb.movies))]},
        {"user_id": fb.user, "movie_ids": [fb.rerated], "ratings": [0.5]},
        {"user_id": FEEDBACK_USER + 1, "movie_ids": [fb.movies[0]], "ratings": [9]},  # off the scale: quarantined
        {"user_id": fb.user, "n": 10},  # no ratings: not feedback
    ]
    for i, request in enumerate(requests):
        body = json.dumps({"dataframe_records": [request]})
        log.record(FEEDBACK_AT + dt.timedelta(seconds=i), 200, 2, body, "{}", request_id=f"seeded-{i}")
    log.close()
    return fb


def task_argv(home: Path, release: Path, schema: str, run_id: str) -> dict[str, list[str]]:
    """Each task's command line as ``run`` builds it from the bundle, for ``schema`` and training run ``run_id``."""
    plan = plan_job(REPO, overrides=[*PARAMS, f"schema={schema}"], source=str(release), home=home, run_id=run_id)
    return {task.key: list(task.argv) for task in plan.tasks}


def build(home: Path, release: Path) -> Reference:
    """``movielens-als run`` on ``release`` in this process (its SparkSession is the active one, on ``home``)."""
    from movielens_als.bundle.runner import run_job

    seed_feedback(home, SCHEMA, release)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = run_job(source=str(release), home=str(home), overrides=PARAMS, bundle_root=str(REPO))
    output = out.getvalue()
    assert code == 0, output[-6000:]
    run_id = re.search(r" run (\S+): ", output).group(1)
    return Reference(home, release, run_id, output)


def shared(root: Path, make: Callable[[], Reference]) -> Reference:
    """The session's one reference: made by the first worker that asks (``make``), read back by the others."""
    done = root / "reference.json"
    with open(root / "reference.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.is_file():
            reference = make()
            done.write_text(json.dumps({k: str(v) for k, v in asdict(reference).items()}))
        fields = json.loads(done.read_text())
    return Reference(Path(fields["home"]), Path(fields["release"]), fields["run_id"], fields["output"])


# ---------------------------------------------------------------- what "the same run" means


def assert_same_splits(ours: DataFrame, theirs: DataFrame) -> None:
    ours, theirs = ours.select(SPLIT_COLUMNS), theirs.select(SPLIT_COLUMNS)
    assert ours.count() == theirs.count() == RATINGS
    assert ours.exceptAll(theirs).count() == 0 and theirs.exceptAll(ours).count() == 0


def metrics_of(df: DataFrame) -> dict[tuple, float]:
    return {(r["model"], r["metric"], r["k"]): r["value"] for r in df.collect()}


def assert_metrics_agree(ours: DataFrame, theirs: DataFrame, tolerance: float = 1e-3) -> None:
    a, b = metrics_of(ours), metrics_of(theirs)
    assert set(a) == set(b) and len(a) == 38
    far = {key: (a[key], b[key]) for key in a if abs(a[key] - b[key]) > tolerance}
    assert not far


def assert_same_top_n(ours: DataFrame, theirs: DataFrame, share: float = 0.99) -> None:
    """The same set of recommended movies for at least ``share`` of the users, and the same users."""

    def lists(df: DataFrame) -> DataFrame:
        return df.groupBy("user_id").agg(F.sort_array(F.collect_list("movie_id")).alias("movies"))

    joined = lists(ours).join(lists(theirs).withColumnRenamed("movies", "other"), "user_id", "full")
    row = joined.agg(
        F.count(F.lit(1)).alias("users"),
        F.count_if(F.col("movies") == F.col("other")).alias("same"),
        F.count_if(F.col("movies").isNull() | F.col("other").isNull()).alias("unmatched"),
    ).first()
    assert row["users"] > 0 and row["unmatched"] == 0
    assert row["same"] >= share * row["users"]
