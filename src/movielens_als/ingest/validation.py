"""Validate staged MovieLens rows in Spark: every row becomes a typed row or a quarantine row, nothing is lost.

The ``*_fn`` functions are pure: staged rows ``(file, line_number, raw_line, fields, problem)`` in,
(typed rows, quarantine rows with file, line number, raw text and reason) out.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from movielens_als.ingest.layouts import GENRES_100K, OCCUPATIONS_1M, FileFormat, Layout

QUARANTINE_COLUMNS = ["file", "line_number", "raw_line", "reason"]


def _field(i: int) -> Column:
    """Trimmed field i (0-based), null when the row is shorter (no ANSI index error)."""
    return F.trim(F.get(F.col("fields"), i))


def _id_checks(chain: Column, raw: Column, name: str) -> Column:
    value = raw.try_cast("int")
    return (
        chain.when(raw.isNull() | (raw == ""), F.lit(f"null {name}"))
        .when(value.isNull(), F.concat(F.lit(f"non-numeric {name} '"), raw, F.lit("'")))
        .when(value <= 0, F.concat(F.lit(f"{name} must be positive, got "), raw))
    )


def _start(fmt: FileFormat) -> Column:
    return F.when(F.col("problem").isNotNull(), F.col("problem")).when(
        F.size("fields") != fmt.fields,
        F.concat(F.lit(f"wrong field count: expected {fmt.fields}, got "), F.size("fields").cast("string")),
    )


def _year_from_title(title: Column) -> Column:
    year = F.regexp_extract(title, r"\((\d{4})\)\s*$", 1)
    return F.when(year != "", year.cast("int"))


def _split_valid(df: DataFrame, reason: Column, typed: list[Column]) -> tuple[DataFrame, DataFrame]:
    checked = df.withColumn("reason", reason)
    good = checked.where(F.col("reason").isNull()).select("file", "line_number", "raw_line", *typed)
    bad = checked.where(F.col("reason").isNotNull()).select(*QUARANTINE_COLUMNS)
    return good, bad


def _first_wins(good: DataFrame, key: str) -> tuple[DataFrame, DataFrame]:
    """Keep the first line of each key; later lines go to quarantine as duplicates."""
    w = Window.partitionBy(key).orderBy("line_number")
    ranked = good.withColumn("_n", F.row_number().over(w)).withColumn("_first", F.first("line_number").over(w))
    kept = ranked.where("_n = 1").drop("_n", "_first")
    dupes = ranked.where("_n > 1").select(
        "file",
        "line_number",
        "raw_line",
        F.concat(
            F.lit(f"duplicate {key} "),
            F.col(key).cast("string"),
            F.lit(" (first at line "),
            F.col("_first").cast("string"),
            F.lit(")"),
        ).alias("reason"),
    )
    return kept, dupes


def movies_fn(
    staged: DataFrame, layout: Layout, genre_names: tuple[str, ...] = GENRES_100K
) -> tuple[DataFrame, DataFrame]:
    """Staged movie rows -> (movies, quarantine). Duplicate ids keep their first line."""
    fmt = layout.movies
    movie_id, title = _field(0), _field(1)
    chain = _id_checks(_start(fmt), movie_id, "movie_id").when(title.isNull() | (title == ""), F.lit("null title"))
    if layout.name == "100k":
        flags = F.slice("fields", 6, len(genre_names))
        chain = chain.when(F.exists(flags, lambda x: ~F.trim(x).isin("0", "1")), F.lit("genre flags must be 0 or 1"))
        release = F.to_date(F.try_to_timestamp(_field(2), F.lit("dd-MMM-yyyy")))
        genres = F.array_compact(
            F.array(*[F.when(_field(5 + i) == "1", F.lit(name)) for i, name in enumerate(genre_names)])
        )
        imdb = F.when(_field(4) != "", _field(4))
    else:
        release = F.lit(None).cast("date")
        genre_text = _field(2)
        genres = F.when(genre_text.isin("", "(no genres listed)"), F.array().cast("array<string>")).otherwise(
            F.split(genre_text, r"\|")
        )
        imdb = F.lit(None).cast("string")
    year = F.coalesce(_year_from_title(title), F.year(release))
    good, bad = _split_valid(
        staged,
        chain,
        [
            movie_id.cast("int").alias("movie_id"),
            title.alias("title"),
            year.alias("year"),
            release.alias("release_date"),
            genres.alias("genres"),
            imdb.alias("imdb_url"),
        ],
    )
    good, dupes = _first_wins(good, "movie_id")
    return good.drop("file", "line_number", "raw_line"), bad.unionByName(dupes)


def users_fn(staged: DataFrame, layout: Layout) -> tuple[DataFrame, DataFrame]:
    """Staged user rows -> (users, quarantine)."""
    fmt = layout.users
    assert fmt is not None
    if layout.name == "100k":
        user_id, age, gender, occupation, zip_code = (_field(i) for i in range(5))
        occupation_name = occupation
    else:  # users.dat: UserID::Gender::Age::Occupation::Zip-code, occupation coded 0-20
        user_id, gender, age, occupation, zip_code = (_field(i) for i in range(5))
        names = F.array(*[F.lit(o) for o in OCCUPATIONS_1M])
        occupation_name = F.try_element_at(names, occupation.try_cast("int") + 1)
    chain = (
        _id_checks(_start(fmt), user_id, "user_id")
        .when(
            age.try_cast("int").isNull(), F.concat(F.lit("non-numeric age '"), F.coalesce(age, F.lit("")), F.lit("'"))
        )
        .when(~gender.isin("M", "F"), F.concat(F.lit("gender must be M or F, got '"), gender, F.lit("'")))
    )
    good, bad = _split_valid(
        staged,
        chain,
        [
            user_id.cast("int").alias("user_id"),
            age.cast("int").alias("age"),
            gender.alias("gender"),
            occupation_name.alias("occupation"),
            zip_code.alias("zip_code"),
        ],
    )
    good, dupes = _first_wins(good, "user_id")
    return good.drop("file", "line_number", "raw_line"), bad.unionByName(dupes)


def ratings_fn(
    staged: DataFrame, layout: Layout, movies: DataFrame, users: DataFrame | None
) -> tuple[DataFrame, DataFrame, DataFrame]:
    """Staged rating rows -> (ratings, quarantine, superseded duplicates).

    A rating must reference a landed movie (and user, where the release has users). Duplicate
    (user_id, movie_id) pairs keep the latest timestamp, then the later line.
    """
    fmt = layout.ratings
    user_id, movie_id, rating_raw, ts_raw = (_field(i) for i in range(4))
    rating, ts = rating_raw.try_cast("double"), ts_raw.try_cast("bigint")
    known = staged.join(
        movies.select(F.col("movie_id").alias("_movie")), movie_id.try_cast("int") == F.col("_movie"), "left"
    )
    if users is not None:
        known = known.join(
            users.select(F.col("user_id").alias("_user")), user_id.try_cast("int") == F.col("_user"), "left"
        )
    chain = _id_checks(_id_checks(_start(fmt), user_id, "user_id"), movie_id, "movie_id")
    scale = f"{layout.rating_min:g}-{layout.rating_max:g}"
    chain = (
        chain.when(rating_raw.isNull() | (rating_raw == ""), F.lit("null rating"))
        .when(rating.isNull(), F.concat(F.lit("non-numeric rating '"), rating_raw, F.lit("'")))
        .when(
            ~rating.between(layout.rating_min, layout.rating_max) | F.isnan(rating),
            F.concat(F.lit("rating "), rating_raw, F.lit(f" outside the {scale} scale")),
        )
        .when(
            F.pmod(rating, F.lit(layout.rating_step)) != 0,
            F.concat(F.lit("rating "), rating_raw, F.lit(f" not a multiple of {layout.rating_step:g}")),
        )
        .when(ts_raw.isNull() | (ts_raw == ""), F.lit("null timestamp"))
        .when(ts.isNull(), F.concat(F.lit("non-numeric timestamp '"), ts_raw, F.lit("'")))
        .when(F.col("_movie").isNull(), F.concat(F.lit("unknown movie_id "), movie_id))
    )
    if users is not None:
        chain = chain.when(F.col("_user").isNull(), F.concat(F.lit("unknown user_id "), user_id))
    good, bad = _split_valid(
        known,
        chain,
        [
            user_id.cast("int").alias("user_id"),
            movie_id.cast("int").alias("movie_id"),
            rating.alias("rating"),
            F.timestamp_seconds(ts).alias("rated_at"),
        ],
    )
    w = Window.partitionBy("user_id", "movie_id").orderBy(F.desc("rated_at"), F.desc("line_number"))
    ranked = good.withColumn("_n", F.row_number().over(w)).withColumn("_kept", F.first("line_number").over(w))
    kept = ranked.where("_n = 1").select("user_id", "movie_id", "rating", "rated_at")
    superseded = ranked.where("_n > 1").select(
        "file",
        "line_number",
        "raw_line",
        F.concat(
            F.lit("duplicate (user_id, movie_id) = ("),
            F.col("user_id").cast("string"),
            F.lit(", "),
            F.col("movie_id").cast("string"),
            F.lit("): superseded by line "),
            F.col("_kept").cast("string"),
        ).alias("reason"),
    )
    return kept, bad, superseded
