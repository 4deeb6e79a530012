"""The app on Databricks Apps (``app.yaml`` runs ``python -m movielens_als.app.databricks``).

The app's resources reach it as environment variables (``valueFrom``): the serving endpoint's name and the SQL
warehouse's id; the SDK authenticates as the app's service principal. The backend is built on the first page and
again after a failure, so an endpoint still deploying is a message in the page, not an app that fails to start.
"""

from __future__ import annotations

import os
import threading

from movielens_als.app.backend import AppError
from movielens_als.app.workspace import WorkspaceBackend

ENDPOINT_ENV, WAREHOUSE_ENV, PORT_ENV = (
    "MOVIELENS_ALS_SERVING_ENDPOINT",
    "DATABRICKS_WAREHOUSE_ID",
    "DATABRICKS_APP_PORT",
)
# The SDK retries a busy endpoint or warehouse (429, 503) for 300 s by default: a page says so after this long.
RETRY_SECONDS = 20


class Deferred:
    """A backend made on first use; a failed attempt is retried by the next call."""

    def __init__(self, make) -> None:
        self._make, self._backend, self._lock = make, None, threading.Lock()

    def __getattr__(self, name: str):
        with self._lock:
            if self._backend is None:
                self._backend = self._make()
        return getattr(self._backend, name)


def backend_from_env(environ=os.environ, retry_seconds: float = RETRY_SECONDS) -> Deferred:
    missing = [name for name in (ENDPOINT_ENV, WAREHOUSE_ENV) if not environ.get(name)]
    if missing:
        raise AppError(f"{' and '.join(missing)} not set: the app's resources (resources/app.yml) pass them")

    def make() -> WorkspaceBackend:
        from databricks.sdk import WorkspaceClient
        from databricks.sdk.config import Config

        client = WorkspaceClient(config=Config(retry_timeout_seconds=retry_seconds, product="movielens-als-app"))
        return WorkspaceBackend(client, environ[ENDPOINT_ENV], environ[WAREHOUSE_ENV])

    return Deferred(make)


def main() -> None:
    import uvicorn

    from movielens_als.app.web import create_app

    uvicorn.run(create_app(backend_from_env()), host="0.0.0.0", port=int(os.environ.get(PORT_ENV, "8000")))


if __name__ == "__main__":
    main()
