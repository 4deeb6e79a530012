"""publish: the jobs/sql views and the recommendations_for lookup with its popular fallback."""

from __future__ import annotations

import datetime as dt

import pytest
from chispa import assert_df_equality

from movielens_als.errors import MovieLensAlsError
from movielens_als.lakehouse import tables
from movielens_als.lakehouse.sql import run_sql
from movielens_als.lakehouse.views import created_object, default_sql_dir, sql_files
from movielens_als.tasks import recommend as rec
from movielens_als.tasks.publish import publish

T0 = dt.datetime(2020, 1, 1)
MOVIES = "movie_id INT, title STRING, year INT, release_date DATE, genres ARRAY<STRING>, imdb_url STRING"
LOOKUP = "user_id INT, rank INT, movie_id INT, title STRING, score DOUBLE, source STRING"


@pytest.fixture
def served(spark, namespace):
    """Serving tables as recommend writes them, with small known rows."""
    movies = [(m, f"Movie {m}", 1990 + m, None, ["Drama"] if m % 2 else ["Comedy"], None) for m in range(1, 7)]
    spark.createDataFrame(movies, MOVIES).writeTo(namespace.table("movies")).using("delta").create()
    # User 1: personalised rows. User 2: one rating (below min_ratings), so only the fallback.
    ratings = [(1, 1, 5.0, T0), (1, 2, 4.0, T0), (2, 4, 3.0, T0)]
    spark.createDataFrame(ratings, "user_id INT, movie_id INT, rating DOUBLE, rated_at TIMESTAMP").writeTo(
        namespace.table("ratings")
    ).using("delta").create()
    stamp = ("run1", 1, T0)
    tables.overwrite(
        spark,
        namespace,
        rec.USER_RECOMMENDATIONS,
        spark.createDataFrame(
            [(1, 1, 5, 0.9) + stamp, (1, 2, 3, 0.8) + stamp, (1, 3, 6, 0.7) + stamp],
            "user_id INT, rank INT, movie_id INT, score DOUBLE, model_run_id STRING, model_version BIGINT, "
            "generated_at TIMESTAMP",
        ),
    )
    popular = [
        ("All", 1, 4, 3.9),
        ("All", 2, 1, 3.8),
        ("All", 3, 2, 3.7),
        ("All", 4, 6, 3.6),
        ("Comedy", 1, 4, 3.9),
        ("Drama", 1, 1, 3.8),
    ]
    tables.overwrite(
        spark,
        namespace,
        rec.POPULAR_MOVIES,
        spark.createDataFrame(
            [(g, r, m, 10, s, s) + stamp for g, r, m, s in popular],
            "genre STRING, rank INT, movie_id INT, num_ratings BIGINT, avg_rating DOUBLE, score DOUBLE, "
            "model_run_id STRING, model_version BIGINT, generated_at TIMESTAMP",
        ),
    )
    tables.overwrite(
        spark,
        namespace,
        rec.SIMILAR_MOVIES,
        spark.createDataFrame(
            [(1, 1, 3, 0.95) + stamp, (1, 2, 5, 0.5) + stamp, (2, 1, 4, 0.9) + stamp],
            "movie_id INT, rank INT, similar_movie_id INT, similarity DOUBLE, model_run_id STRING, "
            "model_version BIGINT, generated_at TIMESTAMP",
        ),
    )
    return namespace


def test_packaged_sql_files_each_select_the_namespace_from_parameters_first():
    files = sql_files(default_sql_dir())
    assert [f.name for f in files] == [
        "10_recommendations_with_titles.sql",
        "20_popular_movies_with_titles.sql",
        "30_recommendations_for.sql",
        "40_similar_movies_by_title.sql",
    ]
    from movielens_als.lakehouse.sql import split_statements

    for f in files:
        statements = split_statements(f.read_text())
        assert statements[0].splitlines()[-1] == "SET CATALOG IDENTIFIER(:catalog)", f.name
        assert statements[1] == "USE SCHEMA IDENTIFIER(:schema)", f.name
        assert created_object(statements[2]) is not None, f.name


def test_publish_creates_views_and_lookup_that_serve_personalised_rows_or_popular_fallback(spark, served):
    result = publish(spark, served)
    assert result.details["views"] == "recommendations_with_titles,popular_movies_with_titles,similar_movies_by_title"
    assert result.details["functions"] == "recommendations_for"
    assert result.rows == {
        "recommendations_with_titles": 3,
        "popular_movies_with_titles": 6,
        "similar_movies_by_title": 3,
    }
    spark.sql("USE default")
    # Views keep the namespace they were created in: readable by qualified name from elsewhere.
    assert spark.table(served.table("recommendations_with_titles")).count() == 3

    def lookup(user):
        # Spark 4.0 cannot call a table function by a qualified name: select the schema first.
        spark.sql(f"USE {served.qualified_schema}")
        return spark.sql(
            f"SELECT user_id, rank, movie_id, title, score, source FROM recommendations_for({user}, 2)"
        ).orderBy("rank")

    assert_df_equality(
        lookup(1),
        spark.createDataFrame(
            [(1, 1, 5, "Movie 5", 0.9, "personalised"), (1, 2, 3, "Movie 3", 0.8, "personalised")], LOOKUP
        ),
        ignore_nullable=True,
    )
    # Known user without personalised rows: popular movies minus the one they rated (4), re-ranked.
    assert_df_equality(
        lookup(2),
        spark.createDataFrame([(2, 1, 1, "Movie 1", 3.8, "popular"), (2, 2, 2, "Movie 2", 3.7, "popular")], LOOKUP),
        ignore_nullable=True,
    )
    # A user nobody has seen: the overall popular list.
    assert_df_equality(
        lookup(99999),
        spark.createDataFrame(
            [(99999, 1, 4, "Movie 4", 3.9, "popular"), (99999, 2, 1, "Movie 1", 3.8, "popular")], LOOKUP
        ),
        ignore_nullable=True,
    )

    similar = run_sql(
        spark,
        served,
        "SELECT rank, similar_title, similarity FROM similar_movies_by_title WHERE title = 'Movie 1' ORDER BY rank",
        fmt="csv",
    ).text
    assert similar.splitlines() == ["rank,similar_title,similarity", "1,Movie 3,0.95", "2,Movie 5,0.5"]
    titled = run_sql(
        spark,
        served,
        "SELECT title, year, genres FROM recommendations_with_titles WHERE user_id = 1 AND rank = 1",
        fmt="json",
    ).text
    assert titled == '{"title": "Movie 5", "year": 1995, "genres": ["Drama"]}'


def test_publish_without_recommend_tables_fails_with_one_clear_line(spark, namespace):
    with pytest.raises(MovieLensAlsError, match="missing table.*user_recommendations.*run land, train and recommend"):
        publish(spark, namespace)


def test_publish_reports_a_broken_sql_file_by_name(spark, served, tmp_path):
    (tmp_path / "10_broken.sql").write_text(
        "SET CATALOG IDENTIFIER(:catalog);\nUSE SCHEMA IDENTIFIER(:schema);\n"
        "CREATE OR REPLACE VIEW v AS SELECT nope FROM movies;\n"
    )
    with pytest.raises(MovieLensAlsError, match=r"^10_broken.sql: .*UNRESOLVED_COLUMN"):
        publish(spark, served, sql_dir=tmp_path)
    with pytest.raises(MovieLensAlsError, match="does not exist"):
        publish(spark, served, sql_dir=tmp_path / "missing")
