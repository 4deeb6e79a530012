"""The reference DAG itself (:mod:`tests.reference`): ``movielens-als run``'s code path on the session's classic
Spark, which the Connect, cluster, crash and serving tests compare with. Built here first (the file is queued
first), so what it costs is this file's, and the run's own output is checked once."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import functions as F

from tests.reference import FEEDBACK_MOVIES, FEEDBACK_USER, RATINGS, feedback_of

pytestmark = pytest.mark.integration

TASKS = ("land", "split", "train", "evaluate", "promote", "recommend", "publish", "deploy")


def test_the_reference_run_ran_every_task_of_the_bundle_in_order(reference):
    lines = reference.output.splitlines()
    ran = [line.split()[1] for line in lines if line.startswith("[") and "/8] " in line]
    assert ran == list(TASKS), reference.output[-3000:]
    assert "FAILED" not in reference.output and f"ratings={RATINGS}" in reference.output
    assert "gate: first, no champion yet" in reference.output


def test_the_run_prints_the_summary_then_the_reports_path(reference):
    from tests.unit.report.test_page import parse

    lines = reference.output.splitlines()
    summary = next(i for i, line in enumerate(lines) if line.startswith("summary ("))
    (report,) = [i for i, line in enumerate(lines) if line.startswith("report: ")]
    assert report > summary, reference.output[-3000:]
    path = Path(lines[report].removeprefix("report: "))
    assert path.is_file() and path.is_relative_to(reference.home) and path.parts[-3] == "reports", lines[report]
    assert not any("error" in f["shows"] for f in parse(path.read_text(encoding="utf-8")).figures)


def test_the_endpoints_feedback_landed_once_and_its_new_person_is_served(spark, reference):
    fb = feedback_of(reference.release)
    ratings = reference.table(spark, "ratings")
    mine = {r.movie_id: r.rating for r in ratings.where(F.col("user_id") == FEEDBACK_USER).collect()}
    assert mine == {m: 5 - i / 2 for i, m in enumerate(fb.movies)}
    rerated = ratings.where((F.col("user_id") == fb.user) & (F.col("movie_id") == fb.rerated)).collect()
    assert [(r.rating, r.rated_at.year) for r in rerated] == [(0.5, 2031)]  # the later rating won, once
    bad = reference.table(spark, "quarantine").where(F.col("kind") == "feedback").collect()
    assert [(r.request_id, r.reason) for r in bad] == [("seeded-2", "rating 9 outside the 0.5-5 scale")]
    run = reference.table(spark, "ingestion_runs").first()
    assert (run.rows_written["feedback_harvested"], run.rows_written["feedback_merged"]) == (FEEDBACK_MOVIES + 1, 9)
    served = reference.table(spark, "user_recommendations").where(F.col("user_id") == FEEDBACK_USER)
    assert served.count() == 10 and not {r.movie_id for r in served.collect()} & set(fb.movies)
