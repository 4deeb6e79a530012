"""The split task: replaces only its protocol's rows, clear errors without ratings."""

from __future__ import annotations

import pytest

from movielens_als.errors import MovieLensAlsError
from movielens_als.ml.splitting import SPLITS
from movielens_als.tasks.split import split
from tests.fixtures import small_ratings


def test_split_task_replaces_only_its_protocol(spark, namespace):
    small_ratings(spark).writeTo(namespace.table("ratings")).using("delta").createOrReplace()
    first = split(spark, namespace, "benchmark")
    assert first.rows["splits"] == small_ratings(spark).count()
    split(spark, namespace, "quickstart")
    split(spark, namespace, "benchmark")
    table = spark.table(namespace.table(SPLITS.name))
    counts = {r["protocol"]: r["count"] for r in table.groupBy("protocol").count().collect()}
    assert counts == {"benchmark": first.rows["splits"], "quickstart": first.rows["splits"]}
    assert table.where("protocol = 'benchmark'").select("seed").distinct().collect()[0][0] == 42


def test_split_without_ratings_is_a_clear_error(spark, namespace):
    with pytest.raises(MovieLensAlsError, match="run `movielens-als land` first"):
        split(spark, namespace, "benchmark")
    with pytest.raises(MovieLensAlsError, match="unknown protocol"):
        split(spark, namespace, "nope")
