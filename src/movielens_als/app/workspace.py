"""The app's Databricks backend: the Model Serving endpoint and a SQL warehouse, through databricks-sdk.

The endpoint says what is served: its entity ``<catalog>.<schema>.movielens_als_recommender`` names the schema the
tables are in, and its version is the champion shown on *Health*. Every value in a statement is a bound parameter.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable

import requests
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import BadRequest, DatabricksError, InvalidParameterValue

from movielens_als.app.backend import NEW_USER_BASE, AppError, Health, Movie, Scale
from movielens_als.columns import ALL_GENRES
from movielens_als.config import RECOMMEND
from movielens_als.errors import MovieLensAlsError, first_line
from movielens_als.lakehouse.names import Namespace
from movielens_als.lakehouse.statements import check, execute, fetch

STATEMENT_TIMEOUT = 30.0  # seconds: a page waits for a statement at most this long (a cold warehouse takes longer)
_MOVIE_COLUMNS = "movie_id, title, year, genres"
_APP_USERS_DDL = (
    "CREATE TABLE IF NOT EXISTS app_users (user_id BIGINT GENERATED ALWAYS AS IDENTITY "
    f"(START WITH {NEW_USER_BASE}) COMMENT 'New person saved by the app', token STRING COMMENT 'The save call', "
    "created_at TIMESTAMP COMMENT 'UTC time of the save') COMMENT 'User ids the app gave new people'"
)


class WorkspaceBackend:
    def __init__(self, client: WorkspaceClient, endpoint: str, warehouse_id: str) -> None:
        self.client, self.endpoint, self.warehouse_id = client, endpoint, warehouse_id
        served = self._call(lambda: client.serving_endpoints.get(endpoint), f"serving endpoint {endpoint}")
        entities = (served.config.served_entities if served.config else None) or []
        if not entities or not entities[0].entity_name or entities[0].entity_name.count(".") != 2:
            raise AppError(f"serving endpoint {endpoint} serves no Unity Catalog model: run the job's deploy task")
        catalog, schema, self.model_name = entities[0].entity_name.split(".")
        self.namespace = Namespace(catalog, schema)
        self.version = int(entities[0].entity_version) if entities[0].entity_version else None
        self._scale: Scale | None = None

    def describe(self) -> str:
        return (
            f"serving endpoint {self.endpoint} ({self.namespace.catalog}.{self.namespace.schema}.{self.model_name} "
            f"version {self.version}); tables on SQL warehouse {self.warehouse_id}"
        )

    def scale(self) -> Scale:
        if self._scale is None:  # Delta answers min/max from the file statistics: no scan of the ratings
            row = self._rows("SELECT min(rating) AS low, max(rating) AS high FROM ratings")[0]
            self._scale = Scale(float(row["low"]), float(row["high"]))
        return self._scale

    def min_ratings(self) -> int:
        return RECOMMEND.min_ratings

    def query(self, records: list[dict]) -> list[dict]:
        api = self.client.serving_endpoints
        try:
            response = api.query(self.endpoint, dataframe_records=records)
        except (BadRequest, InvalidParameterValue) as exc:  # the model refused the request: the person's to fix
            raise AppError(first_line(str(exc).rsplit("Error: ", 1)[-1])) from None
        except (DatabricksError, TimeoutError, requests.RequestException) as exc:
            raise AppError(f"the serving endpoint {self.endpoint} is not answering ({first_line(exc)})") from None
        return list(response.predictions or [])

    def movies(self, ids: Iterable[int]) -> dict[int, Movie]:
        ids = sorted({int(i) for i in ids})
        if not ids:
            return {}
        rows = self._rows(
            f"SELECT {_MOVIE_COLUMNS} FROM movies WHERE array_contains(from_json(:ids, 'array<int>'), movie_id)",
            ids=json.dumps(ids),
        )
        return {movie.movie_id: movie for movie in map(_movie, rows)}

    def search(self, text: str, limit: int) -> list[Movie]:
        rows = self._rows(
            "SELECT m.movie_id, m.title, m.year, m.genres FROM movies AS m "
            "LEFT JOIN popular_movies AS p ON p.movie_id = m.movie_id AND p.genre = :all "
            "WHERE instr(lower(m.title), lower(:text)) > 0 ORDER BY coalesce(p.num_ratings, 0) DESC, m.title",
            limit,
            text=text,
            all=ALL_GENRES,
        )
        return [_movie(row) for row in rows]

    def similar(self, title: str, n: int) -> tuple[Movie, list[tuple[Movie, float]]] | None:
        found = self._rows(
            f"SELECT {_MOVIE_COLUMNS} FROM movies WHERE title = :title ORDER BY movie_id", 1, title=title
        )
        if not found:
            return None
        movie = _movie(found[0])
        rows = self._rows(
            "SELECT similar_movie_id AS movie_id, similar_title AS title, similar_year AS year, "
            "similar_genres AS genres, similarity FROM similar_movies_by_title WHERE movie_id = :id ORDER BY rank",
            n,
            id=movie.movie_id,
        )
        return movie, [(_movie(row), float(row["similarity"])) for row in rows]

    def health(self) -> Health:
        run = self._rows(
            "SELECT * FROM training_runs WHERE recommender_model_version = :version ORDER BY finished_at DESC",
            1,
            version=self.version or -1,
        )
        decision = self._rows("SELECT * FROM promotions ORDER BY decided_at DESC", 1)
        serving = self._rows("SELECT * FROM serving_health ORDER BY checked_at DESC", 1)
        return Health(self.version, *(rows[0] if rows else None for rows in (run, decision, serving)))

    def new_user_id(self) -> int:
        """An identity column numbers new people: unique under concurrent inserts, above every MovieLens id."""
        token = str(uuid.uuid4())
        self._rows(_APP_USERS_DDL)
        self._rows("INSERT INTO app_users (token, created_at) VALUES (:token, current_timestamp())", token=token)
        rows = self._rows("SELECT user_id FROM app_users WHERE token = :token", 1, token=token)
        if not rows:
            raise AppError("saving failed: the new user id was not found; try again")
        return int(rows[0]["user_id"])

    def _rows(self, statement: str, limit: int | None = None, **parameters) -> list[dict]:
        def run() -> list[dict]:
            response = execute(
                self.client, self.warehouse_id, self.namespace, statement,
                timeout=STATEMENT_TIMEOUT, row_limit=limit, parameters=parameters,
            )  # fmt: skip
            check(response, self.warehouse_id)
            columns, rows = fetch(self.client, response, limit)
            return [dict(zip(columns, row, strict=True)) for row in rows[:limit]]

        return self._call(run, f"SQL warehouse {self.warehouse_id}")

    @staticmethod
    def _call(call, what: str):
        try:
            return call()
        except MovieLensAlsError as exc:
            raise AppError(str(exc)) from None
        except (DatabricksError, TimeoutError, requests.RequestException) as exc:
            raise AppError(f"{what} is not answering ({first_line(exc)})") from None


def _movie(row: dict) -> Movie:
    genres = row.get("genres") or ()
    return Movie(int(row["movie_id"]), str(row["title"]), row.get("year"), tuple(genres))
