"""`movielens-als serve` on the reference DAG's lakehouse, as a user starts it: MLflow's scoring server answers every
known user as `user_recommendations` holds them, folds fresh ratings in, falls back to popular, refuses bad
requests without a traceback, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import itertools
import json
import signal
import urllib.error
import urllib.request

import pandas as pd
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from movielens_als.lakehouse.catalog import delta_path
from tests.fake_api import cli_server
from tests.reference import FEEDBACK_USER, REPO, SCHEMA

pytestmark = pytest.mark.integration
CLIENT, SENT = "test-serve", itertools.count()  # the client request ids this file's requests carry


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
    # The tests above: two answered batches and four refused requests, then one more answered.
    statuses = mine["status_code"].tolist()
    assert statuses.count(200) == 3 and len(statuses) == 7 and all(400 <= s < 500 for s in statuses if s != 200)
    assert mine["databricks_request_id"].is_unique and (mine["served_entity_id"] == "movielens_als_recommender-1").all()
    answered = mine[mine["status_code"] == 200]
    assert all(json.loads(r)["predictions"] for r in answered["response"])
    assert any('"movie_ids"' in r and '"user_id"' in r for r in answered["request"])
