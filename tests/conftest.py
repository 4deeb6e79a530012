"""One local Spark + Delta session for the whole run; a fresh schema and files area per test."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from movielens_als.lakehouse.names import Namespace
from movielens_als.lakehouse.spark import DRIVER_MEMORY_ENV, JAVA_OPTIONS_ENV, get_spark
from movielens_als.ml import registry
from tests.jvm_archive import ARCHIVE_ENV, archive_options
from tests.optional import unavailable

# Timestamps collected to Python are local times: pin UTC, as on Databricks.
os.environ["TZ"] = "UTC"
time.tzset()
# Every JVM the tests start, here and in subprocesses, runs briefly on tiny data: C1 only (see lakehouse.spark),
# and Spark evaluates its plans without generating Java code for them. On rows counted in tens, compiling each new
# plan's code costs more than running it: a tiny train 40 s -> 31 s, a tiny land 11 s -> 7.7 s. Interpreted
# evaluation is the fallback Spark keeps equivalent to generated code (its own suites run both).
os.environ.setdefault(JAVA_OPTIONS_ENV, "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=256m")
TEST_SPARK_CONF = {"spark.sql.codegen.wholeStage": "false", "spark.sql.codegen.factoryMode": "NO_CODEGEN"}
os.environ.setdefault(
    "PYSPARK_SUBMIT_ARGS", " ".join(f"--conf {k}={v}" for k, v in TEST_SPARK_CONF.items()) + " pyspark-shell"
)
# Every JVM maps the classes Spark and Delta load from one archive (tests/jvm_archive.py): the controller finds it
# (or starts making it) before the xdist workers start, and they and their subprocesses inherit the flags.
if ARCHIVE_ENV not in os.environ:
    os.environ[ARCHIVE_ENV] = archive_options()
    os.environ[JAVA_OPTIONS_ENV] = f"{os.environ[JAVA_OPTIONS_ENV]} {os.environ[ARCHIVE_ENV]}".rstrip()


@pytest.fixture(scope="session")
def lakehouse_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("lakehouse")


@pytest.fixture(scope="session")
def spark(lakehouse_home):
    os.environ.setdefault(DRIVER_MEMORY_ENV, "2g")
    session = get_spark(lakehouse_home)
    # Tiny test data: a couple of partitions beats the default split into many empty tasks.
    session.conf.set("spark.sql.shuffle.partitions", "2")
    registry.configure(lakehouse_home)  # MLflow's SQLite store in the test lakehouse, as tasks.execute does
    yield session
    session.stop()


@pytest.fixture
def namespace(spark) -> Iterator[Namespace]:
    """A schema of its own for each test, so tests never see each other's tables."""
    ns = Namespace("spark_catalog", f"t_{uuid.uuid4().hex[:12]}")
    spark.sql(f"CREATE SCHEMA {ns.qualified_schema}")
    yield ns
    # The session is shared: a test that selected its schema must not leave it current for the next one.
    spark.sql("USE spark_catalog.default")


@pytest.fixture
def storage(tmp_path) -> Path:
    path = tmp_path / "volume"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def movielens_100k() -> Path:
    """The real ml-100k folder from MOVIELENS_100K (never committed: GroupLens forbids redistribution)."""
    value = os.environ.get("MOVIELENS_100K")
    if not value or not (Path(value) / "u.data").is_file():
        unavailable("MOVIELENS_100K is not set to an ml-100k folder; CI sets ../shared/datasets/ml-100k")
    return Path(value)


# The files that run a DAG of their own (or build the shared reference DAG) are queued first, so that the two xdist
# workers each start with one and neither gets two back to back: with `--dist loadfile --no-loadscope-reorder`
# (make test) a file is one unit of work, worker 0 takes the 1st and 3rd, worker 1 the 2nd and 4th, then whichever
# is free takes the next. (xdist 3.8's loadgroup names groups in a node id field pytest 9 no longer reads.)
HEAVY_FIRST = (
    "tests/integration/test_reference.py",  # builds the reference DAG the next ones compare with
    "tests/integration/test_ml100k.py",  # the real ml-100k, needs no reference
    "tests/integration/test_crash.py",
    "tests/integration/test_connect.py",
    "tests/integration/test_cluster.py",
)


def pytest_collection_modifyitems(config, items):
    """The heavy files first, in ``HEAVY_FIRST``'s order; every other file keeps its place after them."""
    rank = {path: i for i, path in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
