"""ml-100k is landed once per run and shared: landing it costs more than any check made on it; the reference DAG
is built once per session and shared by every worker."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from movielens_als.lakehouse.names import Namespace
from movielens_als.result import TaskResult
from movielens_als.tasks.land import land
from tests.reference import Reference, build, shared, write_release


@dataclass(frozen=True)
class Landed:
    namespace: Namespace
    storage: Path
    result: TaskResult


@pytest.fixture(scope="session")
def landed_ml100k(spark, movielens_100k, tmp_path_factory) -> Landed:
    """The real ml-100k landed into a schema of its own; tests may add tables but not change these."""
    namespace = Namespace("spark_catalog", f"ml100k_{uuid.uuid4().hex[:8]}")
    spark.sql(f"CREATE SCHEMA {namespace.qualified_schema}")
    storage = tmp_path_factory.mktemp("ml100k_volume")
    result = land(spark, namespace, storage, source=str(movielens_100k), size="100k")
    return Landed(namespace, storage, result)


@pytest.fixture(scope="session")
def reference(spark, lakehouse_home, tmp_path_factory) -> Reference:
    """The session's reference DAG (:mod:`tests.reference`), built by the first worker that needs it."""
    # Under xdist each worker's base temp is a folder of the session's: its parent is what the workers share.
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base

    def make() -> Reference:
        return build(lakehouse_home, write_release(tmp_path_factory.mktemp("reference_release")))

    return shared(root, make)
