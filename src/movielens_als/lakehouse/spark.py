"""The one SparkSession factory, classic or Spark Connect, and where files live (landing area, models, reports).

On Databricks the runtime's session is used as it is: classic on a dedicated cluster, Spark
Connect on serverless and standard access. Elsewhere a local ``local[*]`` Spark with Delta and a
warehouse under the lakehouse home; its catalog is the session's own (see :mod:`lakehouse`).

PySpark's convention picks the mode: with ``SPARK_REMOTE`` (or ``--remote``) set, the session is
a Spark Connect client. ``sc://host:port`` connects to a running server; ``local`` or
``local[N]`` starts pyspark's Connect server inside this process on a free port, configured
exactly like the classic session (Delta's extensions and catalog, the warehouse and the
checkpoint directory are static: they reach the server when it starts), so both modes read and
write the same tables.

A classic session runs on ``local[N]`` (N = $MOVIELENS_ALS_CORES, else this machine's cores) unless
$MOVIELENS_ALS_MASTER names a cluster, e.g. ``spark://127.0.0.1:7077`` (``make run-cluster`` starts
one: :mod:`cluster`). There, as on a Databricks job cluster, executors are other JVMs with other
Python processes: they run this interpreter ($PYSPARK_PYTHON, which imports this package), fetch
Delta's jars from the driver (``spark.jars.packages``), get the driver's thread stack and
$MOVIELENS_ALS_EXECUTOR_MEMORY (default 1g); the session takes $MOVIELENS_ALS_CORES cores, the
cluster's total, which ALS blocks and shuffle partitions follow, and its first job waits until
all of them have registered. The home is absolute, so the warehouse, checkpoint and volume paths
mean the same to every process on this machine. Spark Connect's server always runs locally.

$MOVIELENS_ALS_JAVA_OPTIONS adds JVM flags to the driver and executors. The test suite sets
``-XX:TieredStopAtLevel=1``: its many short runs on tiny data spend more CPU compiling than
computing, and C1 alone cuts the JVMs' CPU by about a quarter; long runs want C2 (the default).
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
import urllib.parse
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

from pyspark.sql import SparkSession

from movielens_als import interrupt
from movielens_als.errors import MovieLensAlsError
from movielens_als.lakehouse.java import ensure_java
from movielens_als.lakehouse.names import Namespace, validate_identifier

HOME_ENV = "MOVIELENS_ALS_HOME"
REMOTE_ENV = "SPARK_REMOTE"
MASTER_ENV = "MOVIELENS_ALS_MASTER"
CORES_ENV = "MOVIELENS_ALS_CORES"
EXECUTOR_MEMORY_ENV = "MOVIELENS_ALS_EXECUTOR_MEMORY"
JAVA_OPTIONS_ENV = "MOVIELENS_ALS_JAVA_OPTIONS"  # extra JVM flags for driver and executors (the tests set C1-only)
DRIVER_MEMORY_ENV = "MOVIELENS_ALS_DRIVER_MEMORY"
DRIVER_MEMORY = "4g"  # a local run's driver JVM: the 25M DAG peaks at 5.8 GB with it (README, Results: Scale)
LOOPBACK = "127.0.0.1"
DEFAULT_HOME = ".lakehouse"
CHECKPOINT_CONF = "spark.checkpoint.dir"  # Spark 4.0: the Spark context's checkpoint dir, set at start
CONNECT_PLUGIN = "org.apache.spark.sql.connect.SparkConnectPlugin"


def on_databricks() -> bool:
    """True inside a Databricks Runtime (job cluster, serverless, notebook)."""
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


def is_connect(spark: SparkSession) -> bool:
    """True for a Spark Connect session (no Spark context, no RDDs)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def lakehouse_home(home: str | os.PathLike | None = None) -> Path:
    """Local lakehouse home: ``home``, else $MOVIELENS_ALS_HOME, else ./.lakehouse (absolute)."""
    return Path(home or os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser().resolve()


def get_spark(
    home: str | os.PathLike | None = None, app_name: str = "movielens-als", remote: str | None = None
) -> SparkSession:
    """The runtime's session on Databricks; elsewhere a classic or Spark Connect session (``remote``,
    else $SPARK_REMOTE) on the lakehouse under ``home``."""
    if on_databricks():
        return SparkSession.builder.getOrCreate()
    remote = remote or os.environ.get(REMOTE_ENV)
    if remote:
        return _connect_session(remote, lakehouse_home(home), app_name)
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    master = os.environ.get(MASTER_ENV) or None
    with _first_start():
        session = _builder(lakehouse_home(home), _cores(), app_name, master).getOrCreate()
        _remember_jars(session)
    interrupt.install(session)
    return session


IVY = Path.home() / ".ivy2.5.2"  # Spark 4.0's default spark.jars.ivy


def _resolved_jars_record() -> Path:
    return IVY / f"movielens-als-delta-{version('delta-spark')}.jars"


def resolved_delta_jars() -> list[str] | None:
    """Delta's jars (delta-spark and what it depends on) as an earlier start resolved them into Ivy's cache, or None.

    Given as ``spark.jars``, a start needs no Ivy resolution (a second of every start), and the jars do not become
    Python includes: spark-submit adds what ``spark.jars.packages`` resolves to ``spark.submit.pyFiles``, which puts
    delta-spark's jar on every Python worker's path, whose importer then re-reads its directory before each task.
    """
    record = _resolved_jars_record()
    jars = record.read_text().split() if record.is_file() else []
    return jars if jars and all(Path(j).is_file() for j in jars) else None


def _remember_jars(session: SparkSession) -> None:
    """After a start that resolved ``spark.jars.packages``: keep the local jars it resolved for the next starts."""
    jars = [urllib.parse.urlsplit(j).path for j in (conf_value(session, "spark.jars") or "").split(",") if j]
    jars = [j for j in jars if Path(j).is_file() and Path(j).is_relative_to(IVY)]
    if jars and resolved_delta_jars() is None:
        staged = _resolved_jars_record().with_suffix(f".{os.getpid()}.tmp")
        staged.write_text("\n".join(jars) + "\n")
        staged.replace(_resolved_jars_record())


@contextmanager
def _first_start() -> Iterator[None]:
    """Held while a JVM starts, until Delta's jars are resolved: two processes resolving them at once (two test
    workers on a new machine) write the same jar file, and one of them starts with a truncated jar."""
    if resolved_delta_jars() is not None:
        yield
        return
    IVY.mkdir(parents=True, exist_ok=True)
    with open(IVY / ".movielens-als.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _cores() -> int:
    value = os.environ.get(CORES_ENV, "")
    if value:
        if not value.isdigit() or int(value) < 1:
            raise MovieLensAlsError(f"{CORES_ENV}={value!r}: expected a positive number of cores")
        return int(value)
    return os.cpu_count() or 2


def _builder(home: Path, cores: int, app_name: str, master: str | None = None) -> SparkSession.Builder:
    """``master``: a cluster URL; None runs ``local[cores]`` in this process."""
    from delta import configure_spark_with_delta_pip

    ensure_java()
    home.mkdir(parents=True, exist_ok=True)
    # Python workers (threads' processes locally, executors' on a cluster) run the driver's interpreter, not
    # whatever python3 is first on PATH: the one that imports this package.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", LOOPBACK)  # no network needed, no hostname warning
    log4j = Path(__file__).with_name("log4j2.properties")
    # Deep ALS lineage is deserialised where tasks run: in the driver's JVM locally, in the executors' on a cluster.
    java_options = f"-Xss16m -Dlog4j.configurationFile={log4j} {os.environ.get(JAVA_OPTIONS_ENV, '')}".strip()
    builder = (
        SparkSession.builder.master(master or f"local[{cores}]")
        .appName(app_name)
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        # No shared metastore: several processes use one home, and each finds the tables on disk.
        .config("spark.sql.catalogImplementation", "in-memory")
        .config("spark.sql.warehouse.dir", str(home / "warehouse"))
        # ALS checkpoints its factors every few iterations only where a checkpoint dir is set; the
        # larger stack is a second guard for lineage a checkpoint does not cut.
        .config(CHECKPOINT_CONF, str(home / "checkpoints"))
        .config("spark.driver.extraJavaOptions", java_options)
        # Executors on a cluster connect back to the driver (tasks, jars, shuffle): on this machine only.
        .config("spark.driver.host", LOOPBACK)
        .config("spark.driver.bindAddress", LOOPBACK)
        .config("spark.sql.shuffle.partitions", str(max(2, 2 * cores)))
        .config("spark.default.parallelism", str(cores))
        .config("spark.driver.memory", os.environ.get(DRIVER_MEMORY_ENV, DRIVER_MEMORY))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.databricks.delta.snapshotPartitions", "2")
        .config("spark.local.dir", str(home / "tmp"))
        .config("spark.python.daemon.module", "movielens_als.lakehouse.pyworkers")  # ~100 ms less per UDF task
    )
    if master and not master.startswith("local"):
        builder = (
            builder.config("spark.executor.extraJavaOptions", java_options)
            .config("spark.executor.memory", os.environ.get(EXECUTOR_MEMORY_ENV, "1g"))
            .config("spark.cores.max", str(cores))
            # Blocks and partitions are sized for all the cores: wait for every executor before the first job.
            .config("spark.scheduler.minRegisteredResourcesRatio", "1.0")
            .config("spark.scheduler.maxRegisteredResourcesWaitingTime", "120s")
        )
    # A cluster's executors fetch Delta's jars from the driver, which resolves them (spark.jars.packages) once.
    jars = resolved_delta_jars()
    return builder.config("spark.jars", ",".join(jars)) if jars else configure_spark_with_delta_pip(builder)


def _connect_session(remote: str, home: Path, app_name: str) -> SparkSession:
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    # The top-k numbers catalogue-sized tables with one ordered window on purpose; the Connect client
    # repeats the server's warning about it as a Python warning on every plan.
    warnings.filterwarnings("ignore", message=".*No Partition Defined for Window operation.*")

    if remote.startswith("sc://"):
        _check_reachable(remote)
        return ConnectSession.builder.remote(remote).getOrCreate()
    if remote != "local" and not remote.startswith("local["):
        raise MovieLensAlsError(f"--remote {remote!r}: expected sc://host:port, local or local[N]")
    active = ConnectSession.getActiveSession()
    if active is not None:
        return active
    cores = int(remote[6:-1]) if remote.startswith("local[") and remote[6:-1].isdigit() else _cores()
    port = _free_port()
    # pyspark's own local server (builder.remote("local")) always listens on 15002: two processes
    # on one machine would share it, and the second would write into the first one's lakehouse.
    os.environ.setdefault("SPARK_CONNECT_AUTHENTICATE_TOKEN", uuid.uuid4().hex)
    # The classic builder refuses to start while SPARK_REMOTE is set; pyspark's own launcher hides it too.
    saved = os.environ.pop(REMOTE_ENV, None)
    try:
        with _first_start():
            server = (
                _builder(home, cores, app_name)  # always local: a cluster is for classic sessions
                .config("spark.plugins", CONNECT_PLUGIN)
                .config("spark.connect.grpc.binding.port", str(port))
                .config("spark.sql.artifact.isolation.enabled", "true")
                .config("spark.sql.artifact.isolation.alwaysApplyClassloader", "true")
                .getOrCreate()
            )
            _remember_jars(server)
    finally:
        if saved is not None:
            os.environ[REMOTE_ENV] = saved
    # pyspark.ml and delta dispatch to their Connect implementations on this flag.
    os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"
    return ConnectSession.builder.remote(f"sc://localhost:{port}").getOrCreate()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def conf_value(spark: SparkSession, key: str) -> str | None:
    """A Spark setting, or None where it is unset or the compute will not tell (serverless refuses some keys)."""
    try:
        return spark.conf.get(key, None)
    except Exception:  # noqa: BLE001 - an unreadable setting is an unset one here
        return None


def ensure_checkpoint_dir(spark: SparkSession, storage: Path) -> None:
    """ALS lineage grows with each iteration; without a checkpoint dir ~15+ iterations overflow the stack.

    Sessions made here set ``spark.checkpoint.dir`` at start. A Databricks classic cluster's session
    may lack it and can still set it; a Spark Connect client cannot (see :mod:`als`).
    """
    if conf_value(spark, CHECKPOINT_CONF) or is_connect(spark):
        return
    sc = spark.sparkContext  # classic-only: guarded by is_connect above, Connect has no Spark context
    if sc.getCheckpointDir() is None:
        sc.setCheckpointDir(str(storage / "checkpoints"))


def storage_root(namespace: Namespace, volume: str, home: str | os.PathLike | None = None) -> Path:
    """Files area for a namespace: the UC volume on Databricks, a mirror of it under the home locally."""
    validate_identifier(volume, "volume")
    if on_databricks():
        return Path("/Volumes") / namespace.catalog / namespace.schema / volume
    return lakehouse_home(home) / "volumes" / namespace.catalog / namespace.schema / volume


def _check_reachable(remote: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not after the Connect client's minutes of retries, when nothing listens at ``remote``."""
    try:
        url = urllib.parse.urlsplit(remote.split(";", 1)[0].rstrip("/"))
        address = (url.hostname or "", url.port or 15002)
        socket.create_connection(address, timeout=timeout).close()
    except (OSError, ValueError) as exc:
        raise MovieLensAlsError(
            f"cannot reach the Spark Connect server at {remote} ({exc}): check --remote / SPARK_REMOTE "
            "and that the server is running"
        ) from None
