"""The Python worker daemon of local and standalone sessions: pyspark's own, minus archives on its path.

Spark puts pyspark's ``python/lib/pyspark.zip``, its py4j zip and the spark-core jar on every Python worker's
``sys.path``, and each task's set-up calls ``importlib.invalidate_caches()``, which on Python 3.12 makes each of
those archives' importer read its whole directory again (5,264 entries in the jar): about 100 ms before every
pandas UDF task, measured with py-spy, more than most tasks of a small table take. A pip-installed pyspark imports
from site-packages anyway, so they are dropped from the path before the daemon forks its workers; a Spark whose
pyspark lives only in those archives keeps them. Set as ``spark.python.daemon.module`` by :mod:`spark`.
"""

from __future__ import annotations

import importlib.util
import os
import sys


def without_spark_archives(path: list[str]) -> list[str]:
    """``path`` without pyspark's own zips and jars, or ``path`` itself when pyspark is found only in them."""
    home = os.environ.get("SPARK_HOME", "")
    return [p for p in path if not (p.endswith((".zip", ".jar")) and (not home or p.startswith(home)))]


def main() -> None:
    original = sys.path[:]
    sys.path[:] = without_spark_archives(original)
    if importlib.util.find_spec("pyspark") is None:
        sys.path[:] = original
    # invalidate_caches() visits every cached importer, on the path or not: the ones of the dropped archives go too.
    for entry in set(original) - set(sys.path):
        sys.path_importer_cache.pop(entry, None)
    from pyspark import daemon

    daemon.manager()


if __name__ == "__main__":
    main()
