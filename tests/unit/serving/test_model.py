"""The recommender model on a small release: its answers against the serving table's top-k, fold-in, the popular
fallback, and every kind of bad request over MLflow's scoring server, which keeps serving after each."""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid

import numpy as np
import pandas as pd
import pytest

from movielens_als.lakehouse.names import Namespace
from movielens_als.ml import registry
from movielens_als.ml.hyperparams import RankingParams
from movielens_als.ml.ranking_model import fit_ranking_model
from movielens_als.serving.artifacts import save_recommender
from movielens_als.serving.champion import load_version
from movielens_als.serving.foldin import fold_in
from movielens_als.serving.model import SIGNATURE, Recommender, RecommenderPyfunc, sample_requests
from movielens_als.serving.requests import Limits, RequestError, parse_requests
from movielens_als.serving.server import _error_fields, create_app
from movielens_als.tasks.recommend import top_n_fn

PARAMS = RankingParams(rank=4, alpha=0.5, reg_param=0.1, beta=0.2, implicit_value="rating", max_iter=6)
SERVING = {"run_id": "r1", "rank": 4, "alpha": 0.5, "reg_param": 0.1, "beta": 0.2, "implicit_value": "rating",
           "min_ratings": 3, "default_n": 10, "popular_min_count": 2, "popular_damping": 1.0}  # fmt: skip


@pytest.fixture(scope="module")
def built(spark, tmp_path_factory):
    """(ratings rows, factors, folder of the artifacts) of a 30-user, 25-movie release; user 30 has 2 ratings."""
    rng = np.random.default_rng(11)
    rows = [(u, m, float(rng.integers(1, 6))) for u in range(1, 30) for m in range(1, 26) if rng.random() < 0.4]
    rows += [(30, 1, 5.0), (30, 2, 4.0)]
    ratings = spark.createDataFrame(rows, "user_id INT, movie_id INT, rating DOUBLE")
    movies = spark.createDataFrame(
        [(m, f"Movie {m} (1990)", ["Drama"]) for m in range(1, 27)], "movie_id INT, title STRING, genres ARRAY<STRING>"
    )
    factors = fit_ranking_model(ratings, PARAMS, seed=1)
    folder = tmp_path_factory.mktemp("recommender") / "model"
    save_recommender(folder, factors, ratings, movies, SERVING, tmp_path_factory.mktemp("scratch"))
    return rows, ratings, factors, folder


@pytest.fixture(scope="module")
def recommender(built) -> Recommender:
    return Recommender.load(built[3])


def _beta_n(recommender) -> float:
    """beta times the mean user's ratings (all positive here), as the serving fit regularised its users."""
    return PARAMS.beta * len(recommender.seen_items) / len(recommender.user_ids)


def answer(recommender, *records) -> pd.DataFrame:
    return recommender.answer(parse_requests(pd.DataFrame(list(records)), recommender.limits))


def test_known_users_get_the_serving_tables_top_n_in_order(spark, built, recommender):
    rows, ratings, factors, _ = built
    expected = top_n_fn(factors.users, factors.items, ratings, 5).toPandas()
    users = sorted({u for u, _, _ in rows if sum(1 for uu, _, _ in rows if uu == u) >= 3})
    got = answer(recommender, *[{"user_id": u, "n": 5} for u in users])
    assert set(got["source"]) == {"personal"}
    for position, user in enumerate(users):
        mine = got[got["request"] == position]
        theirs = expected[expected["user_id"] == user].sort_values("rank")
        assert mine["movie_id"].tolist() == theirs["movie_id"].tolist(), user
        np.testing.assert_allclose(mine["score"], theirs["score"], atol=1e-6)
        assert mine["rank"].tolist() == list(range(1, len(mine) + 1))
    assert got.loc[0, "title"] == f"Movie {got.loc[0, 'movie_id']} (1990)"


def test_fresh_ratings_are_folded_in_and_excluded(recommender):
    got = answer(recommender, {"movie_ids": [3, 7, 11, 99], "ratings": [5, 4, 5, 5], "n": 4})
    assert set(got["source"]) == {"folded"} and len(got) == 4
    assert not {3, 7, 11, 99} & set(got["movie_id"])
    rows = np.searchsorted(recommender.item_ids, [3, 7, 11])  # 99 is unknown: ignored
    vector = fold_in(
        recommender.items, recommender.item_gram, rows, np.array([5.0, 4.0, 5.0]), 0.5, 0.1, _beta_n(recommender)
    )
    scores = recommender.items @ vector
    scores[rows] = -np.inf
    best = np.lexsort((recommender.item_ids, -scores))[:4]
    assert got["movie_id"].tolist() == recommender.item_ids[best].tolist()
    np.testing.assert_allclose(got["score"], scores[best], rtol=1e-12)


def test_each_answer_says_which_rated_movie_is_closest_to_it_in_the_item_factors(recommender):
    rated = [3, 7, 11]
    got = answer(recommender, {"movie_ids": rated, "ratings": [5, 4, 5], "n": 4}, {"user_id": 10**6, "n": 2})
    folded = got[got["request"] == 0]
    unit = recommender.items / np.linalg.norm(recommender.items, axis=1, keepdims=True)
    rated_rows = np.searchsorted(recommender.item_ids, rated)
    for movie, because in zip(folded["movie_id"], folded["because"], strict=True):
        cosine = unit[rated_rows] @ unit[np.searchsorted(recommender.item_ids, movie)]
        assert because == rated[int(np.argmax(cosine))] and because in rated
    stranger = got[got["request"] == 1]  # nothing rated: nothing to explain with
    assert stranger["source"].tolist() == ["popular"] * 2 and stranger["because"].isna().all()


def test_a_known_user_with_fresh_ratings_folds_in_the_union_fresh_winning(built, recommender):
    rows = built[0]
    stored = {m: r for u, m, r in rows if u == 5}
    fresh = {next(iter(stored)): 1.0, 24: 5.0, 25: 5.0}  # one stored movie re-rated, two new
    merged = {**stored, **fresh}
    got = answer(recommender, {"user_id": 5, "movie_ids": list(fresh), "ratings": list(fresh.values()), "n": 3})
    item_rows = np.searchsorted(recommender.item_ids, list(merged))
    vector = fold_in(
        recommender.items,
        recommender.item_gram,
        item_rows,
        np.array(list(merged.values())),
        0.5,
        0.1,
        _beta_n(recommender),
    )
    scores = recommender.items @ vector
    scores[item_rows] = -np.inf
    best = np.lexsort((recommender.item_ids, -scores))[:3]
    assert got["source"].tolist() == ["folded"] * 3
    assert got["movie_id"].tolist() == recommender.item_ids[best].tolist()


@pytest.mark.parametrize(
    ("dropped", "beta_n"),
    [
        ({"beta", "beta_n"}, 0.0),  # before iALS: Spark's ALS
        ({"beta_n"}, PARAMS.beta * 25),  # iALS fitted with beta * N_items (25 movies)
    ],
)
def test_older_artifacts_fold_in_with_the_regulariser_they_were_fitted_with(recommender, dropped, beta_n):
    assert recommender.params["num_items"] == len(recommender.item_ids) == 25
    old = dataclasses.replace(recommender, params={k: v for k, v in recommender.params.items() if k not in dropped})
    got = answer(old, {"movie_ids": [3, 7, 11], "ratings": [5, 4, 5], "n": 4})
    rows = np.searchsorted(recommender.item_ids, [3, 7, 11])
    vector = fold_in(recommender.items, recommender.item_gram, rows, np.array([5.0, 4.0, 5.0]), 0.5, 0.1, beta_n)
    scores = recommender.items @ vector
    scores[rows] = -np.inf
    best = np.lexsort((recommender.item_ids, -scores))[:4]
    assert got["movie_id"].tolist() == recommender.item_ids[best].tolist()
    np.testing.assert_allclose(got["score"], scores[best], atol=1e-9)
    assert not np.isclose(beta_n, _beta_n(recommender))  # the current artifacts' term would give other scores


def test_too_few_known_ratings_get_the_popular_movies_not_rated(recommender):
    popular = recommender.item_ids[recommender.popular_rows].tolist()
    user_30 = answer(recommender, {"user_id": 30, "n": 3})  # 2 ratings < min_ratings 3
    assert user_30["source"].tolist() == ["popular"] * 3
    assert user_30["movie_id"].tolist() == [m for m in popular if m not in (1, 2)][:3]
    stranger = answer(recommender, {"user_id": 4242, "n": 2}, {"movie_ids": [popular[0], 999], "ratings": [5, 5]})
    assert stranger[stranger["request"] == 0]["movie_id"].tolist() == popular[:2]
    assert stranger[stranger["request"] == 1]["movie_id"].tolist() == popular[1:11]  # default n 10
    assert set(stranger["source"]) == {"popular"}


BAD = [
    ({"user_id": 1.5}, "row 0: user_id must be an integer"),
    ({"user_id": "abc"}, "row 0: user_id must be a number"),
    ({"user_id": 1, "n": 0}, "n must be an integer from 1 to 1000"),
    ({"user_id": 1, "n": 1001}, "n must be an integer from 1 to 1000"),
    ({"user_id": 1, "n": "ten"}, "n must be a number"),
    ({"user_id": True}, "user_id must be a number"),
    ({"n": 5}, "missing fields"),
    ({"movie_ids": [1, 2]}, "movie_ids and ratings go together"),
    ({"movie_ids": [1, 2], "ratings": [5]}, "2 movie_ids but 1 ratings"),
    ({"movie_ids": [1, "x"], "ratings": [5, 4]}, r"movie_ids\[1\] must be a number"),
    ({"movie_ids": [1], "ratings": [6]}, "off the rating scale 1..5"),
    ({"movie_ids": [1, 1], "ratings": [5, 4]}, "movie 1 is rated twice"),
    ({"movie_ids": "1,2", "ratings": [5, 4]}, "movie_ids must be a list"),
    ({"movie_ids": list(range(5001)), "ratings": [3] * 5001}, "at most 5000"),
]
# MLflow drops fields the signature does not name (with a warning) before the model sees them.
UNKNOWN_FIELD = ({"user_id": 1, "colour": "red"}, "unknown field 'colour'")


@pytest.mark.parametrize(("record", "message"), [*BAD, UNKNOWN_FIELD])
def test_bad_requests_are_one_line_naming_the_field(record, message):
    with pytest.raises(RequestError, match=message):
        parse_requests(pd.DataFrame([record]), Limits(1.0, 5.0, 10))


def test_more_than_1000_rows_is_refused():
    with pytest.raises(RequestError, match="1001 rows in one call: at most 1000"):
        parse_requests(pd.DataFrame([{"user_id": 1}] * 1001), Limits(1.0, 5.0, 10))


@pytest.fixture(scope="module")
def served(built, tmp_path_factory):
    """The model registered in the test registry, loaded back, behind MLflow's scoring server on a free port."""
    import uvicorn

    namespace = Namespace("spark_catalog", f"serve_{uuid.uuid4().hex[:8]}")
    folder = built[3]

    def save(target):
        import shutil

        shutil.copytree(folder, target)

    with registry.tracked_run("serving-test", {}):
        version = registry.log_model(
            namespace, registry.RECOMMENDER_MODEL, save, pd.DataFrame({"user_id": [1], "n": [3]}),
            RecommenderPyfunc(), SIGNATURE,
        )  # fmt: skip
    model = load_version(namespace, version)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(model), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield model, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def post(url: str, body: bytes | str, content_type: str = "application/json") -> tuple[int, dict]:
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(f"{url}/invocations", data=data, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_pyfunc_answers_its_own_sample_requests(served):
    model, _ = served
    got = model.predict(sample_requests(model))
    assert sorted(got.groupby("request")["source"].first().tolist()) == ["folded", "personal"]
    assert list(got.columns) == ["request", "rank", "movie_id", "title", "score", "source", "because"]


def test_bad_requests_over_http_are_4xx_one_line_no_traceback_and_the_server_keeps_serving(served):
    _, url = served
    cases = [("{not json", "Invalid input")] + [
        (json.dumps({"dataframe_records": [record]}), message) for record, message in BAD
    ]
    cases.append((json.dumps({"dataframe_records": [{"user_id": 1}] * 1001}), "at most 1000"))
    cases.append((json.dumps({"instances_of": 1}), "dataframe_records"))
    for body, message in cases:
        status, payload = post(url, body)
        assert 400 <= status < 500, (body[:80], status, payload)
        assert set(payload) == {"error_code", "message"}, payload
        assert "\n" not in payload["message"] and "Traceback" not in payload["message"], payload
        assert re.search(message, payload["message"]), (message, payload)
    status, payload = post(url, json.dumps({"dataframe_records": [{"user_id": 3, "n": 2}]}))
    assert status == 200 and [p["rank"] for p in payload["predictions"]] == [1, 2]


def test_error_fields_strip_the_echoed_input_and_stack_trace():
    body = json.dumps(
        {"error_code": "INVALID_PARAMETER_VALUE", "stack_trace": "Traceback ...",
         "message": "Failed to predict data '   user_id\n0  1.5'. \nError: row 0: user_id must be an integer"}
    ).encode()  # fmt: skip
    assert _error_fields(body) == ("INVALID_PARAMETER_VALUE", "row 0: user_id must be an integer")
    assert _error_fields(b"The scoring server only supports UTF-8") == (
        "BAD_REQUEST",
        "The scoring server only supports UTF-8",
    )
