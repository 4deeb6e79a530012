"""Land the real MovieLens 100k from MOVIELENS_100K (CI: ../shared/datasets/ml-100k)."""

from __future__ import annotations

import datetime as dt

import pytest

pytestmark = pytest.mark.integration


def test_land_real_ml100k_counts_and_known_rows(spark, landed_ml100k):
    result, namespace = landed_ml100k.result, landed_ml100k.namespace

    assert result.rows == {"ratings": 100000, "movies": 1682, "users": 943, "quarantine": 0}
    ratings = spark.table(namespace.table("ratings"))
    assert ratings.select("user_id").distinct().count() == 943
    row = ratings.where("user_id = 196 AND movie_id = 242").first()
    assert (row.rating, row.rated_at) == (3.0, dt.datetime(1997, 12, 4, 15, 55, 49))  # 881250949 in UTC
    movies = {r.movie_id: r for r in spark.table(namespace.table("movies")).where("movie_id IN (1, 1252)").collect()}
    assert movies[1].title == "Toy Story (1995)" and movies[1].genres == ["Animation", "Children's", "Comedy"]
    assert movies[1252].title == "Contempt (Mépris, Le) (1963)"  # Latin-1 decoded
