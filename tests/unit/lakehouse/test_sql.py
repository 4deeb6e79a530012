"""sql: statement splitting, namespace substitution and the table / JSON / CSV output of run_sql."""

from __future__ import annotations

import csv
import io
import json

import pytest

from movielens_als.errors import InvalidIdentifierError, MovieLensAlsError
from movielens_als.lakehouse.names import Namespace
from movielens_als.lakehouse.sql import format_table, run_sql, split_statements, substitute


def test_split_statements_ignores_semicolons_in_strings_identifiers_and_comments():
    text = """
    -- leading comment; not a statement
    SELECT 'a;b' AS `x;y`, "c;d";  /* block; comment */
    SELECT 1 -- trailing; comment
    ;
    /* only a comment */ ;
    SELECT 'it\\'s; fine'
    """
    assert split_statements(text) == [
        "-- leading comment; not a statement\n    SELECT 'a;b' AS `x;y`, \"c;d\"",
        "/* block; comment */\n    SELECT 1 -- trailing; comment",
        "SELECT 'it\\'s; fine'",
    ]


def test_split_statements_rejects_unterminated_quotes():
    with pytest.raises(MovieLensAlsError, match="unterminated ' quote"):
        split_statements("SELECT 'oops")


def test_substitute_quotes_catalog_and_schema():
    ns = Namespace("spark_catalog", "movielens")
    assert substitute("SELECT * FROM {catalog}.{schema}.ratings", ns) == (
        "SELECT * FROM `spark_catalog`.`movielens`.ratings"
    )


def test_namespace_with_sql_in_it_is_rejected_before_any_sql_runs():
    with pytest.raises(InvalidIdentifierError):
        Namespace("spark_catalog", "x`; DROP TABLE y; --")


def test_format_table_aligns_columns_and_right_aligns_numbers():
    text = format_table(["id", "title", "score"], [(1, "Toy Story", 0.5), (12, None, 2.25)])
    assert text.splitlines() == [
        "id | title     |  score",
        "---+-----------+-------",
        " 1 | Toy Story | 0.5000",
        "12 | NULL      | 2.2500",
        "(2 rows)",
    ]


@pytest.fixture
def titles(spark, namespace):
    spark.createDataFrame(
        [(1, "Toy Story (1995)", ["Animation", "Comedy"], 4.25), (2, "GoldenEye, The (1995)", ["Action"], None)],
        "movie_id INT, title STRING, genres ARRAY<STRING>, score DOUBLE",
    ).writeTo(namespace.table("titles")).using("delta").create()
    return namespace


def test_run_sql_resolves_unqualified_names_in_the_namespace_as_a_table(spark, titles):
    out = run_sql(spark, titles, "SELECT movie_id, title, genres, score FROM titles ORDER BY movie_id").text
    assert out.splitlines() == [
        "movie_id | title                 | genres              |  score",
        "---------+-----------------------+---------------------+-------",
        "       1 | Toy Story (1995)      | [Animation, Comedy] | 4.2500",
        "       2 | GoldenEye, The (1995) | [Action]            |   NULL",
        "(2 rows)",
    ]


def test_run_sql_substitutes_placeholders_and_prints_json_lines(spark, titles):
    out = run_sql(
        spark, titles, "SELECT movie_id, genres, score FROM {catalog}.{schema}.titles ORDER BY movie_id", fmt="json"
    ).text
    assert [json.loads(line) for line in out.splitlines()] == [
        {"movie_id": 1, "genres": ["Animation", "Comedy"], "score": 4.25},
        {"movie_id": 2, "genres": ["Action"], "score": None},
    ]


def test_run_sql_prints_csv_with_quoting_and_limit(spark, titles):
    out = run_sql(spark, titles, "SELECT movie_id, title FROM titles ORDER BY movie_id DESC", fmt="csv", limit=1).text
    assert list(csv.reader(io.StringIO(out))) == [["movie_id", "title"], ["2", "GoldenEye, The (1995)"]]


def test_run_sql_reports_a_bad_query_as_one_line_error(spark, titles):
    with pytest.raises(MovieLensAlsError, match=r"^SQL failed: \[TABLE_OR_VIEW_NOT_FOUND\][^\n]*$"):
        run_sql(spark, titles, "SELECT * FROM no_such_table")


def test_run_sql_rejects_unknown_format_and_missing_schema(spark, titles):
    with pytest.raises(MovieLensAlsError, match="invalid format 'xml'"):
        run_sql(spark, titles, "SELECT 1", fmt="xml")
    with pytest.raises(MovieLensAlsError, match="does not exist"):
        run_sql(spark, Namespace("spark_catalog", "no_such_schema_here"), "SELECT 1")
