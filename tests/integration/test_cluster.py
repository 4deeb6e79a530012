"""The DAG on a real Spark cluster: a standalone master and two 1-core workers on this machine, against local[N].

On the cluster the executors are other JVMs with other Python workers, as on a Databricks job
cluster, so whatever only worked because everything shared the driver's process fails here. Both
runs are ``movielens-als run`` subprocesses on a small synthetic release with a tiny grid, one after
the other; the cluster one must write the same splits, metrics within 1e-3 and the same top-10 for
at least 99% of users, and leave no process behind.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from movielens_als.ingest.synth import synthesize
from movielens_als.lakehouse.cluster import standalone_cluster
from movielens_als.lakehouse.spark import CORES_ENV, EXECUTOR_MEMORY_ENV, MASTER_ENV

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
GRID = json.dumps(
    {
        "rating": {"rank": [4], "reg_param": [0.1], "max_iter": [5], "passes": [1]},
        "ranking": {"rank": [4], "reg_param": [0.1], "alpha": [0.3], "max_iter": [5]},
    }
)
WORKERS, CORES = 2, 1
SPLIT_COLUMNS = ["user_id", "movie_id", "rating", "rated_at", "protocol", "split", "seed"]
TASKS = ("land", "split", "train", "evaluate", "promote", "recommend", "publish")


@dataclass
class Run:
    home: Path
    output: str
    seconds: float
    daemons: dict[int, str] = field(default_factory=dict)  # pid -> command line, master and workers
    under: dict[int, str] = field(default_factory=dict)  # processes seen under the daemons: executors, Python


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cluster_release")
    synthesize(20_000, out, seed=3)
    return out


def dag(release: Path, home: Path, env: dict[str, str], watch=None) -> Run:
    """``movielens-als run`` as a subprocess; ``watch`` is called about every second while it runs."""
    cmd = [sys.executable, "-m", "movielens_als.cli", "run", "--source", str(release), "--home", str(home),
           "--param", f"grid={GRID}"]  # fmt: skip
    log = home / "run.out"
    start = time.monotonic()
    with open(log, "w") as out:  # a file, not a pipe: nothing reads it while the watcher polls
        process = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            while process.poll() is None:
                if watch is not None:
                    watch()
                time.sleep(1)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    run = Run(home, log.read_text(), time.monotonic() - start)
    assert process.returncode == 0, run.output[-6000:]
    return run


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (MASTER_ENV, CORES_ENV, EXECUTOR_MEMORY_ENV, "SPARK_REMOTE")}
    env.setdefault("MOVIELENS_ALS_DRIVER_MEMORY", "2g")
    return env


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
def runs(release, tmp_path_factory) -> tuple[Run, Run]:
    """The local run, then the cluster run; the cluster stops in the context manager's finally, whatever happens."""
    home = tmp_path_factory.mktemp("cluster_home")
    # Started first, so its daemons' JVM start overlaps the local run: they idle until an application registers.
    with standalone_cluster(home, workers=WORKERS, cores=CORES, memory="1g") as cluster:
        # ALS seeds its factors per block: the local run gets as many task slots as the cluster, so the same blocks.
        local_env = {**base_env(), CORES_ENV: str(cluster.cores)}
        local = dag(release, tmp_path_factory.mktemp("local_home"), local_env)
        daemons = {p.pid: processes()[p.pid][1] for p in cluster.daemons}
        under: dict[int, str] = {}

        def watch() -> None:
            table = processes()
            todo = list(daemons)
            while todo:
                parent = todo.pop()
                for pid, (ppid, args) in table.items():
                    if ppid == parent:
                        under[pid] = args
                        todo.append(pid)

        remote = dag(release, home, {**base_env(), **cluster.env()}, watch)
    remote.daemons, remote.under = daemons, under
    print(f"\nDAG wall time: local[{cluster.cores}] {local.seconds:.1f}s, cluster {remote.seconds:.1f}s")
    return local, remote


def table(spark, run: Run, name: str):
    """A table a run wrote, by its Delta path (each process has its own catalog)."""
    return spark.read.format("delta").load(str(run.home / "warehouse" / "movielens.db" / name))


def test_the_dag_runs_with_executors_in_other_jvms_and_python_processes(runs):
    local, remote = runs
    for run in runs:
        for task in TASKS:
            assert f"] {task} " in run.output, run.output[-3000:]
        assert "FAILED" not in run.output, run.output[-3000:]
    executors = [args for args in remote.under.values() if "CoarseGrainedExecutorBackend" in args]
    # By executor id, not pid: a child the executor forks shows the executor's command line until it execs.
    ids = {re.search(r"--executor-id (\S+)", args).group(1) for args in executors}
    assert len(ids) == WORKERS and all("-Xss16m" in args for args in executors)
    # The executors' Python workers run this interpreter, which imports the package the tasks' functions live in.
    assert any(args.startswith(f"{sys.executable} -m pyspark.daemon") for args in remote.under.values())
    # Delta's jars, resolved by the driver, reached each executor.
    assert len(list((remote.home / "cluster" / "work").glob("app-*/*/io.delta_delta-spark_*.jar"))) == WORKERS


def test_no_cluster_process_is_left(runs):
    _, remote = runs
    watched = {**remote.daemons, **remote.under}
    assert len(remote.daemons) == 1 + WORKERS
    alive = {pid: args for pid, (_, args) in processes().items() if watched.get(pid) == args}
    assert not alive


def test_the_cluster_writes_the_same_splits(runs, spark):
    local, remote = runs
    ours, theirs = (table(spark, run, "splits").select(SPLIT_COLUMNS) for run in (local, remote))
    assert ours.count() == theirs.count() == 20_000
    assert ours.exceptAll(theirs).count() == 0 and theirs.exceptAll(ours).count() == 0


def test_the_cluster_metrics_agree_within_1e3(runs, spark):
    def metrics(run: Run) -> dict:
        return {(r["model"], r["metric"], r["k"]): r["value"] for r in table(spark, run, "model_metrics").collect()}

    ours, theirs = (metrics(run) for run in runs)
    assert set(ours) == set(theirs) and len(ours) == 38
    far = {key: (ours[key], theirs[key]) for key in ours if abs(ours[key] - theirs[key]) > 1e-3}
    assert not far


def test_the_cluster_serves_the_same_top_10(runs, spark):
    def lists(run: Run):
        recommendations = table(spark, run, "user_recommendations")
        return recommendations.groupBy("user_id").agg(F.sort_array(F.collect_list("movie_id")).alias("movies"))

    ours, theirs = (lists(run) for run in runs)
    joined = ours.join(theirs.withColumnRenamed("movies", "other"), "user_id", "full")
    counts = joined.agg(F.count(F.lit(1)).alias("users"), F.count_if(F.col("movies") == F.col("other")).alias("same"))
    row = counts.first()
    assert row["users"] == ours.count() > 0
    assert row["same"] >= 0.99 * row["users"]
