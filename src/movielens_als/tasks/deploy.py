"""The deploy task: the champion recommender behind a Model Serving endpoint, or, locally, answering in process.

An endpoint serves a model version, not an alias, so ``@champion`` is resolved here, at run time: declared as a
static bundle resource the endpoint would need a version before the first run has registered one. On Databricks
the endpoint is created or moved to that version (:mod:`movielens_als.serving.endpoint`). Locally there is no
Model Serving: the champion is loaded and must answer a known-user and a fold-in request, and no endpoint is
created (``movielens-als serve`` serves it over HTTP).
"""

from __future__ import annotations

import time
from datetime import timedelta

import pandas as pd
from databricks.sdk import WorkspaceClient

from movielens_als import __version__
from movielens_als.config import DEPLOY as DEFAULTS
from movielens_als.errors import MovieLensAlsError
from movielens_als.lakehouse.names import Namespace
from movielens_als.lakehouse.spark import on_databricks
from movielens_als.ml import registry
from movielens_als.result import TaskResult
from movielens_als.serving.champion import champion_version, load_version
from movielens_als.serving.endpoint import EndpointSpec, deploy_endpoint, validate_endpoint_name
from movielens_als.serving.model import sample_requests


def deploy(
    namespace: Namespace,
    *,
    endpoint_name: str = DEFAULTS.endpoint_name,
    workload_size: str = DEFAULTS.workload_size,
    scale_to_zero: bool = DEFAULTS.scale_to_zero,
    readers_group: str = DEFAULTS.readers_group,
    timeout: float = DEFAULTS.timeout,
) -> TaskResult:
    """Serve the champion on ``endpoint_name`` (Databricks), or check that it loads and answers (locally)."""
    validate_endpoint_name(endpoint_name)
    if timeout <= 0:
        raise MovieLensAlsError(f"invalid timeout {timeout!r}: expected a positive number of seconds")
    model, version = registry.model_name(namespace, registry.RECOMMENDER_MODEL), champion_version(namespace)
    if not on_databricks():
        return answer_locally(namespace, model, version, endpoint_name)
    spec = EndpointSpec(
        name=endpoint_name,
        entity_name=model,
        entity_version=version,
        workload_size=workload_size,
        scale_to_zero=scale_to_zero,
        catalog=namespace.catalog,
        schema=namespace.schema,
        readers_group=readers_group,
    )
    client = WorkspaceClient(product="movielens-als", product_version=__version__)
    done = deploy_endpoint(client, spec, timedelta(seconds=timeout))
    details = {"endpoint": endpoint_name, "version": version, "action": done.action}
    return TaskResult("deploy", details=details, headline=done.summary())


def answer_locally(namespace: Namespace, model: str, version: int, endpoint_name: str) -> TaskResult:
    """Load the champion in this process and have it answer its own sample requests."""
    start = time.perf_counter()
    loaded = load_version(namespace, version)
    requests = sample_requests(loaded)
    answer = loaded.predict(requests)
    check_answers(requests, answer, f"champion {model} version {version}")
    details = {
        "version": version,
        "requests": len(requests),
        "rows": len(answer),
        "sources": ",".join(sorted(set(answer["source"]))),
        "seconds": round(time.perf_counter() - start, 2),
    }
    headline = (
        f"champion {model} version {version} loaded and answered {len(requests)} requests in "
        f"process; no endpoint created locally (on Databricks this task deploys serving endpoint {endpoint_name})"
    )
    return TaskResult("deploy", details=details, headline=headline)


def check_answers(requests: pd.DataFrame, answer: pd.DataFrame, champion: str) -> None:
    """Every request (by position) must have at least one recommendation row from ``champion``."""
    missing = sorted(set(range(len(requests))) - set(answer["request"].tolist()))
    if missing:
        shown = "; ".join(f"{i}: {requests.iloc[i].to_dict()}" for i in missing)
        raise MovieLensAlsError(
            f"{champion} returned no recommendations for request {shown}: it would answer the same on an endpoint"
        )
