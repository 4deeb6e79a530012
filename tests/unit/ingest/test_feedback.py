"""Feedback from the inference table into ratings, through the land task: harvested once, checked as a release's
rows are, the later rating winning, merged in one commit or none, kept when a new release lands."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from pyspark.sql import functions as F

from movielens_als.faults import KILL_AT, InjectedFailureError
from movielens_als.lakehouse import tables
from movielens_als.lakehouse.catalog import delta_path
from movielens_als.lakehouse.names import payload_table
from movielens_als.serving.inference import InferenceLog
from movielens_als.tasks.land import land
from tests.fixtures import write_csv_release

ENDPOINT = "movielens-als"
NEW = 1_000_000_001
T0 = dt.datetime(2031, 1, 1, tzinfo=dt.UTC)


def log_requests(home, namespace, requests: list[tuple[int, dict]]) -> None:
    """``(seconds after T0, request body)`` into the inference table, as ``serve`` logs them."""
    log = InferenceLog(delta_path(home, namespace.schema, payload_table(ENDPOINT)), "recommender-1", 3600)
    for seconds, body in requests:
        log.record(T0 + dt.timedelta(seconds=seconds), 200, 3, json.dumps({"dataframe_records": [body]}), "{}")
    log.close()


def ratings_of(spark, namespace) -> dict[tuple[int, int], float]:
    return {(r.user_id, r.movie_id): r.rating for r in spark.table(namespace.table("ratings")).collect()}


def run_land(spark, namespace, storage, folder):
    return land(spark, namespace, storage, source=str(folder), max_quarantine_fraction=1.0, endpoint_name=ENDPOINT)


@pytest.fixture
def release(tmp_path):
    return write_csv_release(tmp_path / "ml-latest-small")  # half stars, movies 1-4, users 1-2


def test_feedback_lands_once_checked_and_the_later_rating_wins(spark, namespace, storage, lakehouse_home, release):
    log_requests(lakehouse_home, namespace, [
        (0, {"user_id": NEW, "movie_ids": [1, 2, 3], "ratings": [5, 4.5, 3], "n": 10}),
        (60, {"user_id": 1, "movie_ids": [1, 4], "ratings": [2, 7], "n": 5}),  # 1: later than the release's 4.0
        (61, {"user_id": 2, "n": 10}),  # no ratings: not feedback
        (62, {"movie_ids": [1], "ratings": [5]}),  # no user: a stranger's fold-in, not feedback
        (63, {"user_id": 1.5, "movie_ids": [2], "ratings": [4]}),
        (64, {"user_id": NEW + 1, "movie_ids": [99, 3], "ratings": [4, 4.25]}),
    ])  # fmt: skip

    result = run_land(spark, namespace, storage, release)

    assert ratings_of(spark, namespace) == {
        (1, 1): 2.0, (1, 2): 3.5, (2, 1): 0.5, (2, 3): 5.0, (NEW, 1): 5.0, (NEW, 2): 4.5, (NEW, 3): 3.0,
    }  # fmt: skip
    assert (result.rows["feedback_harvested"], result.rows["feedback_merged"]) == (4, 4)
    bad = spark.table(namespace.table("quarantine")).where(F.col("kind") == "feedback")
    reasons = sorted(r.reason for r in bad.collect())
    assert reasons == [
        "rating 4.25 not a multiple of 0.5",
        "rating 7 outside the 0.5-5 scale",
        "unknown movie_id 99",
        "user_id 1.5 is not a positive integer id",
    ]
    assert bad.where(F.col("request_id").isNull()).count() == 0 and result.rows["feedback_quarantined"] == 4
    feedback = spark.table(namespace.table("feedback"))
    assert feedback.count() == 4 and {r.source for r in feedback.collect()} == {"endpoint"}
    row = spark.table(namespace.table("ingestion_runs")).first()
    assert row.rows_written["feedback_merged"] == 4


def test_a_second_run_merges_nothing_and_new_feedback_is_one_merge(spark, namespace, storage, lakehouse_home, release):
    log_requests(lakehouse_home, namespace, [(0, {"user_id": NEW, "movie_ids": [1, 2], "ratings": [5, 4]})])
    run_land(spark, namespace, storage, release)
    names = ("ratings", "quarantine", "movies", "users", "feedback")
    versions = {t: tables.table_version(spark, namespace, t) for t in names}

    again = run_land(spark, namespace, storage, release)

    assert again.details["unchanged"] is True
    assert (again.rows["feedback_harvested"], again.rows["feedback_merged"]) == (0, 0)
    assert {t: tables.table_version(spark, namespace, t) for t in names if t != "feedback"} == {
        t: v for t, v in versions.items() if t != "feedback"
    }
    log_requests(lakehouse_home, namespace, [(120, {"user_id": NEW, "movie_ids": [1], "ratings": [1]})])

    newer = run_land(spark, namespace, storage, release)

    assert newer.details["unchanged"] is True and newer.rows["feedback_merged"] == 1
    assert tables.table_version(spark, namespace, "ratings") == versions["ratings"] + 1
    assert ratings_of(spark, namespace)[(NEW, 1)] == 1.0
    # The merge's commit still names the release: landing it again rewrites nothing.
    assert run_land(spark, namespace, storage, release).details["unchanged"] is True
    assert tables.table_version(spark, namespace, "ratings") == versions["ratings"] + 1


def test_a_new_release_keeps_the_feedback_and_its_quarantined_rows(spark, namespace, storage, lakehouse_home, release):
    log_requests(lakehouse_home, namespace, [(0, {"user_id": NEW, "movie_ids": [1, 4], "ratings": [5, 9]})])
    run_land(spark, namespace, storage, release)
    (release / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,1147880044\n")

    changed = run_land(spark, namespace, storage, release)

    assert changed.details["unchanged"] is False
    assert ratings_of(spark, namespace) == {(1, 1): 4.0, (NEW, 1): 5.0}
    assert spark.table(namespace.table("quarantine")).where(F.col("kind") == "feedback").count() == 1


def test_a_failure_between_harvest_and_ratings_leaves_ratings_before_and_a_rerun_lands_it_once(
    spark, namespace, storage, lakehouse_home, release, monkeypatch
):
    log_requests(lakehouse_home, namespace, [(0, {"user_id": NEW, "movie_ids": [1, 2], "ratings": [5, 4]})])
    monkeypatch.setenv(KILL_AT, "land.harvested:RAISE")
    with pytest.raises(InjectedFailureError):
        run_land(spark, namespace, storage, release)
    assert not tables.table_exists(spark, namespace, "ratings") or NEW not in {
        r.user_id for r in spark.table(namespace.table("ratings")).collect()
    }
    monkeypatch.delenv(KILL_AT)

    rerun = run_land(spark, namespace, storage, release)

    assert ratings_of(spark, namespace)[(NEW, 2)] == 4.0 and len(ratings_of(spark, namespace)) == 6
    assert spark.table(namespace.table("feedback")).count() == 2 and rerun.rows["feedback_merged"] == 2
