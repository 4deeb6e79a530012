"""`movielens-als serve` on the reference DAG's lakehouse, as a user starts it: MLflow's scoring server answers every
known user as `user_recommendations` holds them, folds fresh ratings in, falls back to popular, refuses bad
requests without a traceback, and stops cleanly on Ctrl-C; the ratings sent to it with a user id land in the next
run's `ratings` exactly once (the reference DAG shows a person landed that way is then served personally)."""

from __future__ import annotations

import itertools
import json
import shutil
import signal
import urllib.error
import urllib.request
import uuid

import pandas as pd
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from movielens_als.commands import build_parser, execute
from movielens_als.config import ENDPOINT_NAME
from movielens_als.lakehouse import tables
from movielens_als.lakehouse.catalog import delta_path
from movielens_als.lakehouse.names import Namespace, payload_table
from tests.fake_api import cli_server
from tests.reference import FEEDBACK_USER, REPO, SCHEMA, task_argv

pytestmark = pytest.mark.integration
CLIENT, SENT = "test-serve", itertools.count()  # the client request ids this file's requests carry
PERSON = 1_500_000_000  # someone new who rates movies through the endpoint (no app or reference user has the id)


@pytest.fixture(scope="module")
def served(reference):
    """(process, base URL) of `serve` on the reference's home."""
    with cli_server(["serve", "--home", str(reference.home)], "/ping", REPO) as started:
        yield started


def invoke(url: str, records) -> tuple[int, dict]:
    body = json.dumps({"dataframe_records": records}).encode() if not isinstance(records, bytes) else records
    headers = {"Content-Type": "application/json", "X-Request-Id": f"{CLIENT}-{next(SENT)}"}
    request = urllib.request.Request(f"{url}/invocations", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_endpoint_answers_every_known_user_as_user_recommendations_holds(spark, reference, served):
    _, url = served
    table = reference.table(spark, "user_recommendations").toPandas()
    users = sorted(table["user_id"].unique().tolist())
    assert len(users) == reference.table(spark, "ratings").select("user_id").distinct().count()
    assert FEEDBACK_USER in users  # the person whose ratings came back through the inference table
    status, payload = invoke(url, [{"user_id": u, "n": 10} for u in users])
    assert status == 200, payload
    got = pd.DataFrame(payload["predictions"])
    assert set(got["source"]) == {"personal"}
    for position, user in enumerate(users):
        mine = got[got["request"] == position].sort_values("rank")
        theirs = table[table["user_id"] == user].sort_values("rank")
        assert len(mine) == len(theirs) == 10, user
        for a, b, sa, sb in zip(mine["movie_id"], theirs["movie_id"], mine["score"], theirs["score"], strict=True):
            assert a == b or abs(sa - sb) <= 1e-6, (user, a, b, sa, sb)  # scores within 1e-6 may swap


def test_the_endpoint_folds_in_fresh_ratings_falls_back_to_popular_and_survives_bad_requests(spark, reference, served):
    _, url = served
    ratings = reference.table(spark, "ratings")
    user = ratings.groupBy("user_id").count().orderBy(F.desc("count"), "user_id").first()["user_id"]
    popular = [r["movie_id"] for r in ratings.groupBy("movie_id").count().orderBy(F.desc("count"), "movie_id")
               .limit(5).collect()]  # fmt: skip
    fresh = {"movie_ids": popular, "ratings": [5, 5, 4, 5, 4], "n": 10}
    status, payload = invoke(url, [{"user_id": user, "n": 10}, fresh, {**fresh, "user_id": user}, {"user_id": 99999}])
    assert status == 200, payload
    got = pd.DataFrame(payload["predictions"])
    sources = got.groupby("request")["source"].first().to_dict()
    assert sources == {0: "personal", 1: "folded", 2: "folded", 3: "popular"}
    assert got.groupby("request").size().tolist() == [10, 10, 10, 10]
    assert not set(got[got["request"] == 1]["movie_id"]) & set(popular)
    assert set(got.columns) == {"request", "rank", "movie_id", "title", "score", "source", "because"}
    for body in (b"{not json", [{"user_id": 1.5}], [{"user_id": user, "n": 0}], [{"movie_ids": [1], "ratings": [9]}]):
        status, payload = invoke(url, body)
        assert 400 <= status < 500 and "Traceback" not in json.dumps(payload), payload
    assert invoke(url, [{"user_id": user, "n": 3}])[0] == 200


def test_a_new_person_rates_five_movies_and_someone_sends_a_rating_off_the_scale(spark, reference, served):
    _, url = served
    movies = [r["movie_id"] for r in reference.table(spark, "movies").orderBy("movie_id").limit(6).collect()]
    status, payload = invoke(url, [{"user_id": PERSON, "movie_ids": movies[:5], "ratings": [5, 4.5, 4, 3.5, 3]}])
    assert status == 200 and {p["source"] for p in payload["predictions"]} == {"folded"}, payload
    status, payload = invoke(url, [{"user_id": PERSON + 1, "movie_ids": movies[5:], "ratings": [9]}])
    assert status == 400 and "Traceback" not in json.dumps(payload), payload


def test_serve_stops_cleanly_on_ctrl_c_and_logged_every_request_in_the_inference_table(reference, served):
    server, _ = served
    server.send_signal(signal.SIGINT)
    output, _ = server.communicate(timeout=60)
    assert server.returncode == 0, output
    assert "serving spark_catalog.movielens.movielens_als_recommender version 1 (champion)" in output
    assert "requests are logged to movielens.movielens_als_payload" in output
    assert "Traceback" not in output, output
    logged = DeltaTable(str(delta_path(reference.home, SCHEMA, "movielens_als_payload"))).to_pandas()
    mine = logged[logged["client_request_id"].fillna("").str.startswith(f"{CLIENT}-")]  # not the app's, beside
    # The tests above: two answered batches and four refused requests, one more answered, then the new person's
    # answered ratings and the refused rating off the scale.
    statuses = mine["status_code"].tolist()
    assert statuses.count(200) == 4 and len(statuses) == 9 and all(400 <= s < 500 for s in statuses if s != 200)
    assert mine["databricks_request_id"].is_unique and (mine["served_entity_id"] == "movielens_als_recommender-1").all()
    answered = mine[mine["status_code"] == 200]
    assert all(json.loads(r)["predictions"] for r in answered["response"])
    assert any('"movie_ids"' in r and '"user_id"' in r for r in answered["request"])


def test_the_next_land_takes_the_ratings_serve_logged_exactly_once_and_again_nothing(spark, lakehouse_home, reference):
    """Land, as the next run starts it, in a schema of its own whose inference table is the one serve wrote."""
    schema = Namespace("spark_catalog", f"fed_{uuid.uuid4().hex[:8]}")
    inference = payload_table(ENDPOINT_NAME)
    shutil.copytree(delta_path(reference.home, SCHEMA, inference), delta_path(lakehouse_home, schema.schema, inference))
    land = build_parser().parse_args(task_argv(lakehouse_home, reference.release, schema.schema, "fed-run")["land"])
    first = execute(land, spark).rows
    logged = spark.table(schema.table(inference)).where(F.col("client_request_id").startswith(CLIENT))
    mine = {r.databricks_request_id for r in logged.collect()}
    ratings = spark.table(schema.table("ratings"))
    person = ratings.where(F.col("user_id") == PERSON).orderBy(F.desc("rating")).collect()
    assert [r.rating for r in person] == [5, 4.5, 4, 3.5, 3]  # each once
    bad = spark.table(schema.table("quarantine")).where(F.col("kind") == "feedback").collect()
    off_scale = [(r.reason, r.request_id in mine) for r in bad if f'"user_id":"{PERSON + 1}"' in r.raw_line]
    assert off_scale == [("rating 9 outside the 0.5-5 scale", True)]
    assert first["feedback_harvested"] >= 5 and first["feedback_quarantined"] >= 1, first
    version = tables.table_version(spark, schema, "ratings")
    again = execute(land, spark).rows
    assert (again["feedback_harvested"], again["feedback_quarantined"], again["feedback_merged"]) == (0, 0, 0)
    assert tables.table_version(spark, schema, "ratings") == version
