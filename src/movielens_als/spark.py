"""The one SparkSession factory, and where files live (landing area, model store, reports).

On Databricks the active session is used as it is. Locally a ``local[*]`` session with Delta,
a Derby metastore and a warehouse under the lakehouse home, so tables persist across processes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from movielens_als.names import Namespace, validate_identifier

HOME_ENV = "MOVIELENS_ALS_HOME"
DEFAULT_HOME = ".lakehouse"


def on_databricks() -> bool:
    """True inside a Databricks Runtime (job cluster, serverless, notebook)."""
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


def lakehouse_home(home: str | os.PathLike | None = None) -> Path:
    """Local lakehouse home: ``home``, else $MOVIELENS_ALS_HOME, else ./.lakehouse (absolute)."""
    return Path(home or os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser().resolve()


def get_spark(home: str | os.PathLike | None = None, app_name: str = "movielens-als") -> SparkSession:
    """The active session on Databricks; locally an embedded Spark + Delta session under ``home``."""
    if on_databricks():
        return SparkSession.builder.getOrCreate()
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    return _local_session(lakehouse_home(home), app_name)


def _local_session(home: Path, app_name: str) -> SparkSession:
    from delta import configure_spark_with_delta_pip

    home.mkdir(parents=True, exist_ok=True)
    # Workers must run the driver's interpreter, not whatever python3 is first on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # no network needed, no hostname warning
    cores = os.cpu_count() or 2
    builder = (
        SparkSession.builder.master(f"local[{cores}]")
        .appName(app_name)
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.sql.warehouse.dir", str(home / "warehouse"))
        # Derby keeps table definitions in the home, so a later process sees earlier tables.
        .config("spark.hadoop.javax.jdo.option.ConnectionURL", f"jdbc:derby:;databaseName={home / 'metastore_db'};create=true")
        .config("spark.driver.extraJavaOptions",
                f"-Dderby.system.home={home} -Xss16m -Dlog4j.configurationFile={Path(__file__).with_name('log4j2.properties')}")
        .config("spark.sql.shuffle.partitions", str(max(2, 2 * cores)))
        .config("spark.default.parallelism", str(max(2, 2 * cores)))
        .config("spark.driver.memory", os.environ.get("MOVIELENS_ALS_DRIVER_MEMORY", "4g"))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.databricks.delta.snapshotPartitions", "2")
        .config("spark.local.dir", str(home / "tmp"))
        .enableHiveSupport()
    )
    spark = configure_spark_with_delta_pip(builder).getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    spark.sparkContext.setCheckpointDir(str(home / "checkpoints"))
    return spark


def ensure_checkpoint_dir(spark: SparkSession, storage: Path) -> None:
    """ALS lineage grows with each iteration; without a checkpoint dir ~15+ iterations overflow the stack."""
    try:
        sc = spark.sparkContext
    except Exception:  # noqa: BLE001 - serverless and Spark Connect have no SparkContext
        return
    if sc.getCheckpointDir() is None:
        sc.setCheckpointDir(str(storage / "checkpoints"))


def storage_root(namespace: Namespace, volume: str, home: str | os.PathLike | None = None) -> Path:
    """Files area for a namespace: the UC volume on Databricks, a mirror of it under the home locally."""
    validate_identifier(volume, "volume")
    if on_databricks():
        return Path("/Volumes") / namespace.catalog / namespace.schema / volume
    return lakehouse_home(home) / "volumes" / namespace.catalog / namespace.schema / volume
