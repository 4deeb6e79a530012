"""The reference DAG on a real Spark cluster: a standalone master and two 1-core workers on this machine.

On the cluster the executors are other JVMs with other Python workers, as on a Databricks job cluster, so
whatever only worked because everything shared the driver's process fails here. The run is ``movielens-als
run`` as a subprocess on the reference release with the reference's parameters (:mod:`tests.reference`); it must
write the reference's splits, its metrics within 1e-3 and the same top-10 for at least 99% of users, and leave
no process behind.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from movielens_als.lakehouse.cluster import standalone_cluster
from movielens_als.lakehouse.spark import CORES_ENV, EXECUTOR_MEMORY_ENV, MASTER_ENV
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

WORKERS, CORES = 2, 1  # the cores of the reference's local[2]: ALS seeds its factors per block, and blocks per core
WORKER_MEMORY = "768m"  # each worker's executor: the release is small, and four JVMs share the machine
TASKS = ("land", "split", "train", "evaluate", "promote", "recommend", "publish")


@dataclass
class Run:
    home: Path
    output: str
    seconds: float
    daemons: dict[int, str] = field(default_factory=dict)  # pid -> command line, master and workers
    under: dict[int, str] = field(default_factory=dict)  # processes seen under the daemons: executors, Python


def processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, whole command line) of the live processes, from ps (-ww: COLUMNS, which pytest may set,
    would cut it). Zombies are left out: they run nothing, and whoever inherits them reaps them in its own time."""
    ps = ["ps", "-ww", "-e", "-o", "pid=,ppid=,stat=,args="]
    found = {}
    for line in subprocess.run(ps, capture_output=True, text=True, check=True).stdout.splitlines():
        pid, ppid, stat, *args = line.split(None, 3)
        if not stat.startswith("Z"):
            found[int(pid)] = (int(ppid), args[0] if args else "")
    return found


@pytest.fixture(scope="module")
def remote(reference, tmp_path_factory) -> Run:
    """`movielens-als run` on the cluster, watched about every second; the cluster stops in the context manager's
    finally, whatever happens."""
    home = tmp_path_factory.mktemp("cluster_home")
    seed_feedback(home, SCHEMA, reference.release)  # what the reference's endpoint received, before its run
    env = {k: v for k, v in os.environ.items() if k not in (MASTER_ENV, CORES_ENV, EXECUTOR_MEMORY_ENV, "SPARK_REMOTE")}
    cmd = [sys.executable, "-m", "movielens_als.cli", "run", "--source", str(reference.release), "--home", str(home)]
    cmd += [arg for param in PARAMS for arg in ("--param", param)]
    with standalone_cluster(home, workers=WORKERS, cores=CORES, memory=WORKER_MEMORY) as cluster:
        daemons = {p.pid: processes()[p.pid][1] for p in cluster.daemons}
        under: dict[int, str] = {}
        log, start = home / "run.out", time.monotonic()
        with open(log, "w") as out:  # a file, not a pipe: nothing reads it while the watcher polls
            process = subprocess.Popen(cmd, cwd=REPO, env={**env, **cluster.env()}, stdout=out,
                                       stderr=subprocess.STDOUT)  # fmt: skip
            try:
                while process.poll() is None:
                    table, todo = processes(), list(daemons)
                    while todo:
                        parent = todo.pop()
                        for pid, (ppid, args) in table.items():
                            if ppid == parent:
                                under[pid] = args
                                todo.append(pid)
                    time.sleep(1)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
    run = Run(home, log.read_text(), time.monotonic() - start, daemons, under)
    assert process.returncode == 0, run.output[-6000:]
    print(f"\nDAG wall time on the cluster: {run.seconds:.1f}s")
    return run


def test_the_dag_runs_with_executors_in_other_jvms_and_python_processes(remote):
    for task in TASKS:
        assert f"] {task} " in remote.output, remote.output[-3000:]
    assert "FAILED" not in remote.output, remote.output[-3000:]
    executors = [args for args in remote.under.values() if "CoarseGrainedExecutorBackend" in args]
    # By executor id, not pid: a child the executor forks shows the executor's command line until it execs.
    ids = {re.search(r"--executor-id (\S+)", args).group(1) for args in executors}
    assert len(ids) == WORKERS and all("-Xss16m" in args for args in executors)
    # The executors' Python workers run this interpreter, which imports the package the tasks' functions live in
    # (its worker daemon is the package's: lakehouse.pyworkers).
    daemon = f"{sys.executable} -m movielens_als.lakehouse.pyworkers pyspark.worker"
    assert any(args.startswith(daemon) for args in remote.under.values())
    # Delta's jars, resolved by the driver, reached each executor.
    assert len(list((remote.home / "cluster" / "work").glob("app-*/*/io.delta_delta-spark_*.jar"))) == WORKERS


def test_no_cluster_process_is_left(remote):
    watched = {**remote.daemons, **remote.under}
    assert len(remote.daemons) == 1 + WORKERS
    alive = {pid: args for pid, (_, args) in processes().items() if watched.get(pid) == args}
    assert not alive


def test_the_cluster_writes_the_reference_splits(spark, reference, remote):
    assert_same_splits(reference.table(spark, "splits"), read_table(spark, remote.home, "splits"))


def test_the_cluster_metrics_agree_with_the_reference_within_1e3(spark, reference, remote):
    assert_metrics_agree(reference.table(spark, "model_metrics"), read_table(spark, remote.home, "model_metrics"))


def test_the_cluster_serves_the_reference_top_10(spark, reference, remote):
    ours = reference.table(spark, "user_recommendations")
    assert_same_top_n(ours, read_table(spark, remote.home, "user_recommendations"))
