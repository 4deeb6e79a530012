"""A Spark standalone cluster on this machine: a master and workers started with pyspark's own ``spark-class``.

A Databricks job cluster runs executors in other JVMs and other Python processes than the driver;
``local[*]`` runs everything in one. This cluster does not: executors are JVMs the workers fork,
each with its own Python workers, as on a job cluster. Everything binds to 127.0.0.1 on ports
the OS picks; logs, work and scratch dirs live under ``<home>/cluster``. The cluster stops when
the ``with`` block ends, however it ends; processes a killed launcher left behind are stopped at
the next start (their pids are kept in ``<home>/cluster/pids``).

    python -m movielens_als.lakehouse.cluster [--home H] [--workers 2] [--cores 1] [--memory 1g] -- CMD ...

starts the cluster, runs CMD with $MOVIELENS_ALS_MASTER (and the cores and executor memory that
go with it, see :mod:`spark`) pointing at it, stops the cluster and exits with CMD's code.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pyspark

from movielens_als.errors import MovieLensAlsError
from movielens_als.lakehouse.java import ensure_java
from movielens_als.lakehouse.spark import (
    CORES_ENV,
    EXECUTOR_MEMORY_ENV,
    JAVA_OPTIONS_ENV,
    LOOPBACK,
    MASTER_ENV,
    lakehouse_home,
)

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
MARKER = "-Dmovielens_als.cluster="  # on each daemon's command line: a leftover is recognised by it, not by name
STARTED = re.compile(r"Starting Spark master at (spark://\S+)")
REGISTERED = "Successfully registered with master"
START_TIMEOUT = 120.0  # JVM start on a busy 2-core machine
STOP_TIMEOUT = 30.0


@dataclass
class Cluster:
    master_url: str
    cores: int  # all workers together: the task slots a session on this cluster has
    executor_memory: str
    root: Path
    daemons: list[subprocess.Popen] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        """What a ``movielens-als`` process needs to run on this cluster (see :mod:`spark`)."""
        return {MASTER_ENV: self.master_url, CORES_ENV: str(self.cores), EXECUTOR_MEMORY_ENV: self.executor_memory}


@contextmanager
def standalone_cluster(
    home: str | os.PathLike | None = None, workers: int = 2, cores: int = 1, memory: str = "1g"
) -> Iterator[Cluster]:
    """A master and ``workers`` workers of ``cores`` cores and ``memory`` each; stopped when the block exits."""
    root = lakehouse_home(home) / "cluster"
    ensure_java()  # the daemons and the executors they fork run the JAVA_HOME of this environment
    stop_leftovers(root)
    for sub in ("work", "tmp"):  # the last run's executors' files (Delta's jars, logs, shuffle): not kept
        shutil.rmtree(root / sub, ignore_errors=True)
    for sub in ("logs", "work", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    cluster = Cluster("", workers * cores, memory, root)
    try:
        master = _start(cluster, "master", MASTER_CLASS, ["--host", LOOPBACK, "--port", "0", "--webui-port", "0"])
        cluster.master_url = _wait_for_line(master, root / "logs" / "master.log", STARTED).group(1)
        for i in range(workers):
            args = ["--host", LOOPBACK, "--port", "0", "--webui-port", "0", "--cores", str(cores),
                    "--memory", memory, "--work-dir", str(root / "work"), cluster.master_url]  # fmt: skip
            _start(cluster, f"worker-{i}", WORKER_CLASS, args)
        for i, worker in enumerate(cluster.daemons[1:]):
            _wait_for_line(worker, root / "logs" / f"worker-{i}.log", re.compile(re.escape(REGISTERED)))
        yield cluster
    finally:
        _stop(cluster.daemons)
        (root / "pids").unlink(missing_ok=True)


def _start(cluster: Cluster, name: str, main_class: str, args: list[str]) -> subprocess.Popen:
    pyspark_home = Path(pyspark.__file__).parent
    env = {
        **os.environ,
        "SPARK_HOME": str(pyspark_home),
        "SPARK_LOCAL_IP": LOOPBACK,  # the web UIs bind here too, not to every interface
        "SPARK_LOCAL_DIRS": str(cluster.root / "tmp"),  # executors' shuffle and spill files
        "SPARK_DAEMON_MEMORY": "256m",  # the daemons only schedule; executors get their own memory
        "SPARK_DAEMON_JAVA_OPTS": f"{MARKER}{cluster.root} {os.environ.get(JAVA_OPTIONS_ENV, '')}".strip(),
    }
    env.pop("SPARK_REMOTE", None)
    with open(cluster.root / "logs" / f"{name}.log", "w") as log:
        # A session of its own: the terminal's Ctrl-C reaches the job, which needs its executors to stop cleanly;
        # the cluster is stopped after it.
        process = subprocess.Popen(
            [str(pyspark_home / "bin" / "spark-class"), main_class, *args],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    cluster.daemons.append(process)
    with open(cluster.root / "pids", "a") as pids:
        pids.write(f"{process.pid}\n")
    return process


def _wait_for_line(process: subprocess.Popen, log: Path, pattern: re.Pattern) -> re.Match:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        found = pattern.search(log.read_text(errors="replace"))
        if found:
            return found
        if process.poll() is not None:
            raise MovieLensAlsError(f"{log.stem} exited with code {process.returncode} at start: see {log}")
        time.sleep(0.2)
    raise MovieLensAlsError(f"{log.stem} did not start within {START_TIMEOUT:.0f}s: see {log}")


def _stop(daemons: Sequence[subprocess.Popen]) -> None:
    """Workers first (each kills its executors, whose Python workers follow), then the master; SIGKILL after a
    grace period, and to any executor that outlived its worker."""
    main = threading.current_thread() is threading.main_thread()
    if main:  # a second Ctrl-C must not leave half a cluster running
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _terminate(daemons)
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)


def _terminate(daemons: Sequence[subprocess.Popen]) -> None:
    children = [child for p in daemons for child in _descendants(p.pid)]
    for stage in (daemons[1:], daemons[:1]):
        for process in stage:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        for process in stage:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    for child in children:
        _kill(child)


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, start time) of every process, from /proc; the start time tells a reused pid apart."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            found[int(stat.parent.name)] = (int(fields[1]), fields[19])
    return found


def _descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, start time) of the processes under ``pid``, recursively: executor JVMs and their Python workers."""
    processes = _processes()
    children: dict[int, list[int]] = {}
    for child, (parent, _) in processes.items():
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append((child, processes[child][1]))
            todo.append(child)
    return found


def _kill(process: tuple[int, str]) -> None:
    """SIGKILL to ``(pid, start time)`` if that very process still runs."""
    pid, started = process
    if _processes().get(pid, (0, None))[1] == started:
        with suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def stop_leftovers(root: Path) -> None:
    """Stop the daemons (and their executors) of an earlier launcher that was killed before it could."""
    pids_file = root / "pids"
    if not pids_file.exists():
        return
    marker = f"{MARKER}{root}".encode()
    processes = _processes()
    for pid in map(int, pids_file.read_text().split()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue  # gone, or no /proc here
        if pid in processes and marker in cmdline.split(b"\0"):
            for child in [*_descendants(pid), (pid, processes[pid][1])]:
                _kill(child)
    pids_file.unlink()


def run(command: Sequence[str], cluster: Cluster) -> int:
    """``command`` with the cluster's environment; its exit code (130 after Ctrl-C)."""
    child = subprocess.Popen(list(command), env={**os.environ, **cluster.env()})
    try:
        return child.wait()
    except KeyboardInterrupt:
        # The job got the same Ctrl-C and is cancelling its Spark jobs: give it time before pulling the cluster.
        try:
            return child.wait(timeout=60) or 130
        except (KeyboardInterrupt, subprocess.TimeoutExpired):
            child.kill()
            child.wait()
            return 130


def main(argv: Sequence[str] | None = None) -> int:
    prog = "python -m movielens_als.lakehouse.cluster"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--home", help="lakehouse home (default $MOVIELENS_ALS_HOME or ./.lakehouse)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cores", type=int, default=1, help="cores per worker")
    parser.add_argument("--memory", default="1g", help="memory per worker, and so per executor")
    parser.add_argument("command", nargs="+", help="what to run on the cluster, after --")
    args = parser.parse_args(argv)
    try:
        with standalone_cluster(args.home, args.workers, args.cores, args.memory) as cluster:
            print(f"cluster: {cluster.master_url}, {args.workers} workers x {args.cores} core(s), {args.memory} each, "
                  f"logs in {cluster.root / 'logs'}", flush=True)  # fmt: skip
            code = run(args.command, cluster)
    except MovieLensAlsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    print("cluster: stopped", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
