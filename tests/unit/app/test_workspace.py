"""The app's Databricks path: the real SDK against a local server speaking the Model Serving and Statement Execution
APIs, and the app's pages drawn over it. Every value reaches the warehouse as a bound parameter."""

from __future__ import annotations

import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.config import Config
from fastapi.testclient import TestClient

from movielens_als.app.backend import AppError
from movielens_als.app.databricks import Deferred, backend_from_env
from movielens_als.app.web import create_app
from movielens_als.app.workspace import WorkspaceBackend
from tests.fake_api import isolate_databricks_config, json_handler, running

ENDPOINT, WAREHOUSE = "movielens-als", "wh123"
MOVIES = {
    50: ("Star Wars (1977)", 1977, ["Action", "Sci-Fi"]),
    172: ("Empire Strikes Back, The (1980)", 1980, ["Action", "Sci-Fi"]),
    181: ("Return of the Jedi (1983)", 1983, ["Action", "Sci-Fi"]),
    1: ("Toy Story (1995)", 1995, ["Animation", "Comedy"]),
}
SIMILAR = {50: [(172, 0.91), (181, 0.88)]}
ANSWERS = {  # user -> (movie_id, score, because) as the endpoint ranks them
    196: [(172, 0.9, 50), (181, 0.8, 50), (1, 0.1, None)],
}
TYPES = {int: "INT", str: "STRING", float: "DOUBLE", list: "ARRAY"}


class FakeWorkspace:
    """GET an endpoint, POST its invocations, and POST statements answered from the tables above."""

    def __init__(self) -> None:
        self.statements: list[dict] = []
        self.invocations: list[dict] = []
        self.app_users: list[str] = []
        self.host = ""
        self.down = False
        self._lock = threading.Lock()

    def answer(self, method: str, path: str, body: dict | None) -> tuple[int, dict]:
        with self._lock:
            if self.down and path.startswith(("/serving-endpoints", "/api/2.0/sql")):
                return 503, {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "the endpoint is scaling up"}
            if method == "GET" and path == f"/api/2.0/serving-endpoints/{ENDPOINT}":
                entity = {"entity_name": "main.movielens.movielens_als_recommender", "entity_version": "3"}
                return 200, {"name": ENDPOINT, "config": {"served_entities": [entity]}}
            if method == "POST" and path == f"/serving-endpoints/{ENDPOINT}/invocations":
                self.invocations.append(body)
                return self._invocation(body["dataframe_records"][0])
            if method == "POST" and path == "/api/2.0/sql/statements":
                self.statements.append(body)
                return 200, self._statement(body)
            return 404, {"error_code": "NOT_FOUND", "message": f"no {method} {path}"}

    def _invocation(self, record: dict) -> tuple[int, dict]:
        if record.get("ratings") and max(record["ratings"]) > 5:
            message = "Failed to predict data. \nError: row 0: ratings[0] = 9 is off the rating scale 1..5"
            return 400, {"error_code": "BAD_REQUEST", "message": message}
        user = record.get("user_id")
        rows = ANSWERS.get(user) or [(1, 3.9, None)]
        source = "personal" if user in ANSWERS else "folded" if record.get("movie_ids") else "popular"
        predictions = [
            {"request": 0, "rank": i + 1, "movie_id": m, "title": MOVIES[m][0], "score": s, "source": source,
             "because": b}
            for i, (m, s, b) in enumerate(rows)
        ]  # fmt: skip
        return 200, {"predictions": predictions}

    def _statement(self, body: dict) -> dict:
        assert (body["catalog"], body["schema"], body["warehouse_id"]) == ("main", "movielens", WAREHOUSE)
        params = {p["name"]: p.get("value") for p in body.get("parameters") or []}
        text = body["statement"]
        if text.startswith("CREATE TABLE IF NOT EXISTS app_users"):
            return {"statement_id": "s0", "status": {"state": "SUCCEEDED"}}
        assert not re.search(r"'[^']*'", text.replace("'array<int>'", "")), text  # no literal formatted in
        if text.startswith("INSERT INTO app_users"):
            self.app_users.append(params["token"])  # the identity column numbers rows in commit order
            return {"statement_id": "s0", "status": {"state": "SUCCEEDED"}}
        if text.startswith("SELECT user_id FROM app_users"):
            found = [[str(1_000_000_000 + i)] for i, token in enumerate(self.app_users) if token == params["token"]]
            return self._result(["user_id"], found, kinds=[int])
        if "FROM movies WHERE array_contains" in text:
            rows = [self._movie(m) for m in json.loads(params["ids"]) if m in MOVIES]
        elif "FROM movies WHERE title = :title" in text:
            rows = [self._movie(m) for m, (title, *_) in MOVIES.items() if title == params["title"]]
        elif "FROM similar_movies_by_title WHERE movie_id = :id" in text:
            rows = [[*self._movie(m), str(s)] for m, s in SIMILAR.get(int(params["id"]), [])]
            return self._result(["movie_id", "title", "year", "genres", "similarity"], rows)
        elif "instr(lower(m.title), lower(:text))" in text:
            rows = [self._movie(m) for m, (t, *_) in MOVIES.items() if params["text"].lower() in t.lower()]
        elif "min(rating)" in text:
            return self._result(["low", "high"], [["1.0", "5.0"]], kinds=[float, float])
        else:
            return {"status": {"state": "FAILED", "error": {"message": f"TABLE_OR_VIEW_NOT_FOUND in {text}"}}}
        return self._result(["movie_id", "title", "year", "genres"], rows)

    @staticmethod
    def _movie(movie_id: int) -> list:
        title, year, genres = MOVIES[movie_id]
        return [str(movie_id), title, str(year), json.dumps(genres)]

    @staticmethod
    def _result(names: list[str], rows: list[list], kinds=None) -> dict:
        kinds = kinds or [int, str, int, list, float][: len(names)]
        columns = [{"name": n, "position": i, "type_name": TYPES[k], "type_text": TYPES[k]}
                   for i, (n, k) in enumerate(zip(names, kinds, strict=True))]  # fmt: skip
        manifest = {"format": "JSON_ARRAY", "schema": {"column_count": len(names), "columns": columns},
                    "total_chunk_count": 1, "total_row_count": len(rows)}  # fmt: skip
        return {"statement_id": "s1", "status": {"state": "SUCCEEDED"}, "manifest": manifest,
                "result": {"chunk_index": 0, "row_offset": 0, "row_count": len(rows), "data_array": rows}}  # fmt: skip

    def handler(self):
        return json_handler(self)


@pytest.fixture
def fake(monkeypatch, tmp_path):
    isolate_databricks_config(monkeypatch, tmp_path)
    with running(FakeWorkspace()) as workspace:
        monkeypatch.setenv("DATABRICKS_HOST", workspace.host)
        monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-test")
        yield workspace


@pytest.fixture
def backend(fake) -> WorkspaceBackend:
    return WorkspaceBackend(WorkspaceClient(config=Config(retry_timeout_seconds=1)), ENDPOINT, WAREHOUSE)


def test_the_endpoint_names_the_schema_and_the_champion_version(backend):
    assert (backend.namespace.catalog, backend.namespace.schema, backend.version) == ("main", "movielens", 3)
    assert backend.scale().values == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_for_you_draws_the_endpoints_answer_with_titles_and_years_from_the_warehouse(fake, backend):
    page = TestClient(create_app(backend)).get("/?user=196").text
    assert re.findall(r'class="title">([^<]*)', page) == [MOVIES[m][0] for m, _, _ in ANSWERS[196]]
    assert "1980 · Action, Sci-Fi" in page and 'data-source="personal"' in page
    assert fake.invocations == [{"dataframe_records": [{"user_id": 196, "n": 10}]}]
    ids = next(s for s in fake.statements if "array_contains" in s["statement"])["parameters"]
    assert ids == [{"name": "ids", "value": "[1, 50, 172, 181]"}]  # the answers and their because movies


def test_rate_and_see_folds_in_through_the_endpoint_and_says_because(fake, backend):
    client = TestClient(create_app(backend))
    answer = client.post("/api/rate", json={"ratings": {"50": 5, "172": 4}}).json()
    assert 'data-source="folded"' in answer["html"] and "because" not in answer["html"]
    assert fake.invocations[-1] == {"dataframe_records": [{"movie_ids": [50, 172], "ratings": [5.0, 4.0], "n": 10}]}
    page = client.get("/?user=196").text
    assert page.count("because you rated Star Wars (1977)") == 2


def test_similar_movies_and_search_bind_the_title_as_a_parameter(fake, backend):
    client = TestClient(create_app(backend))
    title = "Star Wars (1977)'; DROP TABLE movies; --"
    assert "no movie is titled" in client.get("/", params={"movie": title}).text
    assert any(p == {"name": "title", "value": title} for s in fake.statements for p in s.get("parameters") or [])
    page = client.get("/", params={"movie": "Star Wars (1977)"}).text
    assert re.findall(r'class="title">([^<]*)', page) == [MOVIES[172][0], MOVIES[181][0]]
    assert client.get("/api/search", params={"q": "star"}).json()["movies"][0]["title"] == "Star Wars (1977)"


def test_a_refused_request_and_a_backend_down_are_one_line_in_the_page(fake, backend):
    client = TestClient(create_app(backend))
    assert client.post("/api/rate", json={"ratings": {"50": 9}}).json() == {
        "error": "the rating of movie 50 must be 1 to 5 in steps of 1, got 9"
    }
    fake.down = True
    page = client.get("/?user=196").text
    message = re.search(r'id="message" role="alert">([^<]*)', page).group(1)
    assert message.startswith(f"the serving endpoint {ENDPOINT} is not answering") and "Traceback" not in page
    fake.down = False
    assert 'data-source="personal"' in client.get("/?user=196").text  # and it keeps serving


def test_the_endpoints_own_refusal_reaches_the_page_as_its_message(fake, backend):
    with pytest.raises(AppError, match=r"^row 0: ratings\[0\] = 9 is off the rating scale 1..5$"):
        backend.query([{"movie_ids": [50], "ratings": [9], "n": 10}])


def test_the_app_starts_before_the_endpoint_answers_and_connects_on_a_later_page(fake, monkeypatch):
    monkeypatch.setenv("MOVIELENS_ALS_SERVING_ENDPOINT", ENDPOINT)
    monkeypatch.setenv("DATABRICKS_WAREHOUSE_ID", WAREHOUSE)
    fake.down = True
    backend = backend_from_env(retry_seconds=1)
    assert isinstance(backend, Deferred)
    client = TestClient(create_app(backend))
    fake.down = False
    page = client.get("/?user=196").text
    assert 'data-source="personal"' in page
    with pytest.raises(AppError, match="DATABRICKS_WAREHOUSE_ID not set"):
        backend_from_env({"MOVIELENS_ALS_SERVING_ENDPOINT": ENDPOINT})


def test_saving_ratings_gives_a_new_user_id_and_sends_the_ratings_with_it(fake, backend):
    client = TestClient(create_app(backend))
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: client.post("/api/save", json={"ratings": {"50": 5, "1": 3}}).json(), [0, 1]))
    ids = sorted(answer["user_id"] for answer in answers)
    assert ids == [1_000_000_000, 1_000_000_001] and all("Saved as user" in a["html"] for a in answers)
    sent = [i["dataframe_records"][0] for i in fake.invocations]
    assert sorted(r["user_id"] for r in sent) == ids and all(r["movie_ids"] == [50, 1] for r in sent)
    tokens = [p["value"] for s in fake.statements for p in s.get("parameters") or [] if p["name"] == "token"]
    assert len(set(tokens)) == 2 and len(tokens) == 4  # each save inserts its own token and reads its own id back
