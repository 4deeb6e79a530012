"""The app's local backend: the registry's champion recommender in this process, the lakehouse read by delta-rs.

No JVM: the pyfunc answers with numpy, and the tables (catalogue-sized: movies, similar movies, the run logs) are
read with ``deltalake`` and kept until their Delta version moves, so a page costs a log listing, not a table scan.
It stands in for the serving endpoint, so it logs every request in the endpoint's inference table as ``serve``
does; new people's ids come from a counter file under a lock in the lakehouse home, shared by every process.
"""

from __future__ import annotations

import fcntl
import json
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError
from mlflow.exceptions import MlflowException

from movielens_als.app.backend import NEW_USER_BASE, AppError, Health, Movie, Scale
from movielens_als.columns import ALL_GENRES
from movielens_als.config import ENDPOINT_NAME
from movielens_als.lakehouse.catalog import delta_path
from movielens_als.lakehouse.names import Namespace, payload_table
from movielens_als.lakehouse.spark import lakehouse_home
from movielens_als.ml import registry
from movielens_als.serving.champion import champion_version, load_version
from movielens_als.serving.inference import InferenceLog, now
from movielens_als.serving.server import check_free


class LocalBackend:
    def __init__(
        self, namespace: Namespace, home: str | Path | None = None, endpoint_name: str = ENDPOINT_NAME
    ) -> None:
        registry.configure(home)
        self.namespace = namespace
        self.home = lakehouse_home(home)
        self.version = champion_version(namespace)
        self.model = load_version(namespace, self.version)
        self.recommender = self.model.unwrap_python_model().recommender
        self._tables: dict[str, tuple[int, pd.DataFrame]] = {}
        self._lock = threading.Lock()
        name = registry.model_name(namespace, registry.RECOMMENDER_MODEL).rsplit(".", 1)[-1]
        self.log = InferenceLog(
            delta_path(self.home, namespace.schema, payload_table(endpoint_name)), f"{name}-{self.version}"
        )

    def close(self) -> None:
        self.log.close()

    def describe(self) -> str:
        name = registry.model_name(self.namespace, registry.RECOMMENDER_MODEL)
        return f"{name} version {self.version} (champion) in process; tables in {self.home}"

    def scale(self) -> Scale:
        return Scale(self.recommender.params["rating_min"], self.recommender.params["rating_max"])

    def min_ratings(self) -> int:
        return int(self.recommender.params["min_ratings"])

    def query(self, records: list[dict]) -> list[dict]:
        received, began = now(), time.perf_counter()
        request = json.dumps({"dataframe_records": records})
        try:
            answer = self.model.predict(pd.DataFrame(records))
        except MlflowException as exc:  # the request checks' message: the person's to fix
            self.log.record(received, 400, _ms(began), request, json.dumps({"message": exc.message}))
            raise AppError(exc.message) from None
        rows = answer.to_dict("records")
        self.log.record(received, 200, _ms(began), request, json.dumps({"predictions": rows}, default=_plain))
        return rows

    def new_user_id(self) -> int:
        counter = self.home / "app" / "new_users.json"
        counter.parent.mkdir(parents=True, exist_ok=True)
        with open(counter.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # every process on this home takes ids from the one counter
            state = json.loads(counter.read_text()) if counter.is_file() else {}
            taken = [state.get("next", NEW_USER_BASE) - 1, int(self.recommender.user_ids.max(initial=0))]
            feedback = self._table("feedback", missing_ok=True)
            if feedback is not None and len(feedback):
                taken.append(int(feedback["user_id"].max()))
            user_id = max(NEW_USER_BASE, max(taken) + 1)
            counter.write_text(json.dumps({"next": user_id + 1}))
        return user_id

    def movies(self, ids: Iterable[int]) -> dict[int, Movie]:
        table = self._table("movies")
        found = table[table["movie_id"].isin(list(ids))]
        return {movie.movie_id: movie for movie in map(_movie, found.itertuples(index=False))}

    def search(self, text: str, limit: int) -> list[Movie]:
        movies = self._table("movies")
        found = movies[movies["title"].str.contains(text, case=False, regex=False, na=False)]
        popular = self._table("popular_movies")
        counts = popular[popular["genre"] == ALL_GENRES].set_index("movie_id")["num_ratings"]
        found = found.assign(_n=found["movie_id"].map(counts).fillna(0)).sort_values(
            ["_n", "title"], ascending=[False, True]
        )
        return [_movie(row) for row in found.head(limit).drop(columns="_n").itertuples(index=False)]

    def similar(self, title: str, n: int) -> tuple[Movie, list[tuple[Movie, float]]] | None:
        movies = self._table("movies")
        match = movies[movies["title"] == title]
        if match.empty:
            return None
        movie = _movie(next(match.head(1).itertuples(index=False)))
        rows = self._table("similar_movies")
        rows = rows[rows["movie_id"] == movie.movie_id].sort_values("rank").head(n)
        others = self.movies(rows["similar_movie_id"].tolist())
        pairs = zip(rows["similar_movie_id"], rows["similarity"], strict=True)
        return movie, [(others[int(m)], float(s)) for m, s in pairs if int(m) in others]

    def health(self) -> Health:
        runs = self._table("training_runs")
        run = runs[runs["recommender_model_version"] == self.version]
        return Health(self.version, _last(run, "finished_at"), _last(self._table("promotions"), "decided_at"),
                      _last(self._table("serving_health"), "checked_at"))  # fmt: skip

    def _table(self, name: str, missing_ok: bool = False) -> pd.DataFrame | None:
        """The table as of its latest Delta version, read again only when that version moved."""
        path = delta_path(self.home, self.namespace.schema, name)
        try:
            table = DeltaTable(str(path))
        except TableNotFoundError:
            if missing_ok:
                return None
            raise AppError(f"table {self.namespace.schema}.{name} is missing: run `movielens-als run` first") from None
        version = table.version()
        with self._lock:
            cached = self._tables.get(name)
            if cached is None or cached[0] != version:
                cached = (version, table.to_pandas())
                self._tables[name] = cached
        return cached[1]


def _ms(began: float) -> int:
    return round((time.perf_counter() - began) * 1000)


def _plain(value):
    """JSON for numpy scalars and missing values in an answer row."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    return value.item() if hasattr(value, "item") else str(value)


def _movie(row) -> Movie:
    year = None if row.year is None or pd.isna(row.year) else int(row.year)
    return Movie(int(row.movie_id), str(row.title), year, tuple(row.genres) if row.genres is not None else ())


def _last(frame: pd.DataFrame, by: str) -> dict | None:
    if frame.empty:
        return None
    return frame.sort_values(by).iloc[-1].to_dict()


def serve(
    namespace: Namespace, home: str | Path | None, host: str, port: int, endpoint_name: str = ENDPOINT_NAME
) -> int:
    """``movielens-als app``: the app on ``http://host:port/`` over the local champion and lakehouse until Ctrl-C."""
    import uvicorn

    from movielens_als.app.web import create_app

    check_free(host, port)
    backend = LocalBackend(namespace, home, endpoint_name)
    print(f"app at http://{host}:{port}/ ({backend.describe()}); Ctrl-C stops", flush=True)
    try:
        uvicorn.run(create_app(backend), host=host, port=port, log_level="warning")
    finally:
        backend.close()
    print("stopped", flush=True)
    return 0
