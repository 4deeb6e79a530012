"""The land task on tiny releases the tests write: typed tables, quarantine, failures, idempotency. A crash between
two table writes and its re-run: tests/integration/test_crash.py (land.wrote_movies, raised and killed)."""

from __future__ import annotations

import datetime as dt
import uuid
import zipfile

import pytest
from chispa import assert_df_equality

from movielens_als.errors import LandingError, QuarantineThresholdError
from movielens_als.lakehouse import tables
from movielens_als.lakehouse.names import Namespace
from movielens_als.tasks.land import land
from tests.fixtures import RATINGS_100K, item_line, write_csv_release, write_ml100k, zip_folder

LANDED = ("ratings", "movies", "users", "quarantine", "ingestion_runs")


def ts(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).replace(tzinfo=None)


def versions(spark, ns: Namespace) -> dict[str, int | None]:
    return {t: tables.table_version(spark, ns, t) for t in LANDED}


def rows(spark, ns: Namespace, table: str, order: str):
    return spark.table(ns.table(table)).orderBy(*order.split(","))


def test_land_ml100k_folder_writes_typed_ratings_movies_users(spark, namespace, storage, tmp_path):
    result = land(spark, namespace, storage, source=str(write_ml100k(tmp_path / "ml-100k")))

    assert result.rows == {"ratings": 6, "movies": 4, "users": 3, "quarantine": 0, "feedback_merged": 0}
    expected_ratings = spark.createDataFrame(
        [
            (1, 1, 5.0, ts(874965758)),
            (1, 2, 3.0, ts(876893171)),
            (2, 1, 4.0, ts(888550871)),
            (2, 3, 2.0, ts(888551001)),
            (3, 2, 5.0, ts(889237460)),
            (3, 4, 1.0, ts(889237455)),
        ],
        "user_id INT, movie_id INT, rating DOUBLE, rated_at TIMESTAMP",
    )
    assert_df_equality(
        rows(spark, namespace, "ratings", "user_id,movie_id"),
        expected_ratings,
        ignore_nullable=True,
        ignore_metadata=True,
    )
    expected_movies = spark.createDataFrame(
        [
            (1, "Toy Story (1995)", 1995, dt.date(1995, 1, 1), ["Animation", "Children's", "Comedy"]),
            (2, "GoldenEye (1995)", 1995, dt.date(1995, 1, 1), ["Action", "Adventure", "Thriller"]),
            (3, "Misérables, Les (1995)", 1995, dt.date(1995, 1, 1), ["Drama", "Musical"]),
            (4, "Contempt (Mépris, Le) (1963)", 1963, dt.date(1997, 6, 27), ["Drama"]),
        ],
        "movie_id INT, title STRING, year INT, release_date DATE, genres ARRAY<STRING>",
    )
    assert_df_equality(
        rows(spark, namespace, "movies", "movie_id").drop("imdb_url"),
        expected_movies,
        ignore_nullable=True,
        ignore_metadata=True,
    )
    expected_users = spark.createDataFrame(
        [(1, 24, "M", "technician", "85711"), (2, 53, "F", "other", "94043"), (3, 23, "M", "writer", "32067")],
        "user_id INT, age INT, gender STRING, occupation STRING, zip_code STRING",
    )
    assert_df_equality(
        rows(spark, namespace, "users", "user_id"), expected_users, ignore_nullable=True, ignore_metadata=True
    )
    run = spark.table(namespace.table("ingestion_runs")).first()
    assert (run.status, run.dataset, run.rows_written["ratings"], run.rows_quarantined) == (
        "succeeded",
        "ml-100k",
        6,
        0,
    )


def test_land_csv_release_parses_quoted_titles_half_stars_and_no_genres(spark, namespace, storage, tmp_path):
    source = zip_folder(write_csv_release(tmp_path / "rel"), tmp_path / "ml-latest-small.zip", "ml-latest-small")

    result = land(spark, namespace, storage, source=str(source))

    assert result.rows["users"] == 0
    assert_df_equality(
        rows(spark, namespace, "ratings", "user_id,movie_id").drop("rated_at"),
        spark.createDataFrame(
            [(1, 1, 4.0), (1, 2, 3.5), (2, 1, 0.5), (2, 3, 5.0)], "user_id INT, movie_id INT, rating DOUBLE"
        ),
        ignore_nullable=True,
        ignore_metadata=True,
    )
    assert_df_equality(
        rows(spark, namespace, "movies", "movie_id").select("movie_id", "title", "year", "genres"),
        spark.createDataFrame(
            [
                (1, "Toy Story (1995)", 1995, ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]),
                (2, "American President, The (1995)", 1995, ["Comedy", "Drama", "Romance"]),
                (3, "Amélie (Fabuleux destin d'Amélie Poulain, Le) (2001)", 2001, ["Comedy", "Romance"]),
                (4, "Dilwale Dulhania Le Jayenge (1995)", 1995, []),
            ],
            "movie_id INT, title STRING, year INT, genres ARRAY<STRING>",
        ),
        ignore_nullable=True,
        ignore_metadata=True,
    )


def test_malformed_rows_go_to_quarantine_with_file_line_raw_text_and_reason(spark, namespace, storage, tmp_path):
    bad_ratings = RATINGS_100K + [
        "1\t3",  # line 7
        "x\t1\t4\t881250949",  # line 8
        "2\t2\t9\t881250949",  # line 9
        "\t2\t4\t881250949",  # line 10
        "2\t99\t4\t881250949",  # line 11
        "77\t1\t4\t881250949",  # line 12
        "3\t3\t4\tyesterday",  # line 13
        "3\t1\t4.5\t881250949",  # line 14
    ]
    movies = [
        item_line(1, "Toy Story (1995)", "01-Jan-1995", ("Comedy",)),
        item_line(2, "GoldenEye (1995)", "01-Jan-1995", ("Action",)),
        item_line(3, "Misérables, Les (1995)", "01-Jan-1995", ("Drama",)),
        item_line(4, "Contempt (Mépris, Le) (1963)", "27-Jun-1997", ("Drama",)),
        "5|Broken (1999)|01-Jan-1999",
    ]  # line 5: too few fields
    source = write_ml100k(tmp_path / "ml-100k", ratings=bad_ratings, movies=movies)

    result = land(spark, namespace, storage, source=str(source), max_quarantine_fraction=1.0)

    expected = spark.createDataFrame(
        [
            ("u.data", 7, "1\t3", "wrong field count: expected 4, got 2", "rejected"),
            ("u.data", 8, "x\t1\t4\t881250949", "non-numeric user_id 'x'", "rejected"),
            ("u.data", 9, "2\t2\t9\t881250949", "rating 9 outside the 1-5 scale", "rejected"),
            ("u.data", 10, "\t2\t4\t881250949", "null user_id", "rejected"),
            ("u.data", 11, "2\t99\t4\t881250949", "unknown movie_id 99", "rejected"),
            ("u.data", 12, "77\t1\t4\t881250949", "unknown user_id 77", "rejected"),
            ("u.data", 13, "3\t3\t4\tyesterday", "non-numeric timestamp 'yesterday'", "rejected"),
            ("u.data", 14, "3\t1\t4.5\t881250949", "rating 4.5 not a multiple of 1", "rejected"),
            ("u.item", 5, "5|Broken (1999)|01-Jan-1999", "wrong field count: expected 24, got 3", "rejected"),
        ],
        "file STRING, line_number BIGINT, raw_line STRING, reason STRING, kind STRING",
    )
    actual = rows(spark, namespace, "quarantine", "file,line_number").drop("source_checksum", "request_id")
    assert_df_equality(actual, expected, ignore_nullable=True, ignore_metadata=True)
    assert result.rows["ratings"] == 6 and result.details["quarantined"] == 9


def test_duplicate_ratings_keep_the_latest_timestamp_and_are_counted(spark, namespace, storage, tmp_path):
    ratings = RATINGS_100K + ["1\t1\t2\t874965759", "1\t1\t4\t874965000"]  # lines 7 (latest) and 8
    source = write_ml100k(tmp_path / "ml-100k", ratings=ratings)

    result = land(spark, namespace, storage, source=str(source))

    kept = spark.table(namespace.table("ratings")).where("user_id = 1 AND movie_id = 1").collect()
    assert [(r.rating, r.rated_at) for r in kept] == [(2.0, ts(874965759))]
    superseded = rows(spark, namespace, "quarantine", "line_number").select("line_number", "reason", "kind")
    assert [tuple(r) for r in superseded.collect()] == [
        (1, "duplicate (user_id, movie_id) = (1, 1): superseded by line 7", "superseded"),
        (8, "duplicate (user_id, movie_id) = (1, 1): superseded by line 7", "superseded"),
    ]
    assert result.details["duplicates_resolved"] == 2 and result.details["quarantined"] == 0
    assert spark.table(namespace.table("ingestion_runs")).first().duplicates_resolved == 2


def test_too_many_quarantined_rows_fail_after_writing_quarantine_and_keep_good_tables(
    spark, namespace, storage, tmp_path
):
    land(spark, namespace, storage, source=str(write_ml100k(tmp_path / "good")))
    before = versions(spark, namespace)
    bad = write_ml100k(tmp_path / "bad", ratings=RATINGS_100K + ["1\t1\t7\t874965758"])

    with pytest.raises(QuarantineThresholdError, match=r"1 of 14 rows quarantined .* above the 1.00% limit"):
        land(spark, namespace, storage, source=str(bad))

    after = versions(spark, namespace)
    assert {t: after[t] for t in ("ratings", "movies", "users")} == {
        t: before[t] for t in ("ratings", "movies", "users")
    }
    assert after["quarantine"] == before["quarantine"] + 1
    assert spark.table(namespace.table("quarantine")).count() == 1
    statuses = [r.status for r in spark.table(namespace.table("ingestion_runs")).orderBy("started_at").collect()]
    assert statuses == ["succeeded", "failed"]


def _truncated_zip(tmp_path):
    whole = zip_folder(write_ml100k(tmp_path / "src"), tmp_path / "whole.zip")
    data = whole.read_bytes()
    cut = tmp_path / "ml-100k.zip"
    cut.write_bytes(data[: len(data) // 2])
    return cut, "ml-100k.zip: not a readable zip archive (truncated or corrupt)"


def _missing_ratings(tmp_path):
    folder = write_ml100k(tmp_path / "ml-100k")
    (folder / "u.data").unlink()
    return folder, "no ratings file found (expected one of u.data, ratings.dat, ratings.csv)"


def _empty_ratings(tmp_path):
    return write_ml100k(tmp_path / "ml-100k", ratings=[]), "u.data: file is empty"


def _checksum_mismatch(tmp_path):
    archive = zip_folder(write_ml100k(tmp_path / "src"), tmp_path / "ml-100k.zip")
    (tmp_path / "ml-100k.zip.md5").write_text("MD5 (ml-100k.zip) = 0123456789abcdef0123456789abcdef\n")
    return archive, "ml-100k.zip: checksum mismatch: md5 "


def _wrong_delimiter(tmp_path):
    ratings = [line.replace("\t", ",") for line in RATINGS_100K]
    return (
        write_ml100k(tmp_path / "ml-100k", ratings=ratings),
        "u.data line 1: wrong delimiter: expected 4 tab-separated fields, the file uses comma",
    )


def _corrupt_member(tmp_path):
    archive = zip_folder(write_ml100k(tmp_path / "src", ratings=RATINGS_100K * 50), tmp_path / "ml-100k.zip")
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo("ml-100k/u.data")
    data[info.header_offset + 60] ^= 0xFF  # flip a byte inside u.data's compressed stream
    archive.write_bytes(bytes(data))
    return archive, "u.data: cannot be read (truncated or corrupt archive)"


@pytest.fixture(scope="module")
def landed(spark, tmp_path_factory) -> Namespace:
    """A good release landed once for the bad archives that follow: each must leave its tables as they are."""
    namespace = Namespace("spark_catalog", f"t_{uuid.uuid4().hex[:12]}")
    spark.sql(f"CREATE SCHEMA {namespace.qualified_schema}")
    good = write_ml100k(tmp_path_factory.mktemp("good") / "ml-100k")
    land(spark, namespace, tmp_path_factory.mktemp("volume"), source=str(good))
    return namespace


@pytest.mark.parametrize(
    "make_source",
    [_truncated_zip, _missing_ratings, _empty_ratings, _checksum_mismatch, _wrong_delimiter, _corrupt_member],
)
def test_bad_archive_fails_with_one_line_and_leaves_every_table_at_its_version(
    spark, landed, storage, tmp_path, make_source
):
    namespace = landed
    before = versions(spark, namespace)
    assert None not in before.values()
    source, message = make_source(tmp_path / "case")  # type: ignore[operator]

    with pytest.raises(LandingError) as error:
        land(spark, namespace, storage, source=str(source))

    assert message in str(error.value) and "\n" not in str(error.value)
    assert versions(spark, namespace) == before


def test_landing_the_same_release_twice_rewrites_nothing_and_a_changed_one_rewrites_all(
    spark, namespace, storage, tmp_path
):
    landed = ("ratings", "movies", "users", "quarantine")
    folder = write_ml100k(tmp_path / "ml-100k", ratings=RATINGS_100K + ["1\t1\t2\t874965759", "1\t9\t2\t1"])
    assert (
        land(spark, namespace, storage, source=str(folder), max_quarantine_fraction=1.0).details["unchanged"] is False
    )
    first = {t: spark.table(namespace.table(t)).collect() for t in landed}
    versions = {t: tables.table_version(spark, namespace, t) for t in landed}

    again = land(spark, namespace, storage, source=str(folder), max_quarantine_fraction=1.0)

    assert again.details["unchanged"] is True
    assert again.rows["ratings"] == len(first["ratings"])
    assert {t: tables.table_version(spark, namespace, t) for t in landed} == versions
    runs = spark.table(namespace.table("ingestion_runs")).orderBy("started_at").select("status").collect()
    assert [r.status for r in runs] == ["succeeded", "unchanged"]

    (folder / "u.data").write_text("\n".join(RATINGS_100K[:-1]) + "\n")  # one rating fewer: a new release
    changed = land(spark, namespace, storage, source=str(folder), max_quarantine_fraction=1.0)

    assert changed.details["unchanged"] is False
    assert all(tables.table_version(spark, namespace, t) == versions[t] + 1 for t in landed)
    assert spark.table(namespace.table("ratings")).count() == len(RATINGS_100K) - 1
    # A clean release leaves quarantine empty, and Delta commits nothing for an empty overwrite of an empty table.
    assert spark.table(namespace.table("quarantine")).count() == 0
    assert land(spark, namespace, storage, source=str(folder), max_quarantine_fraction=1.0).details["unchanged"] is True
