"""Parse MovieLens files into typed rows and quarantined rows.

Two steps. ``stage_file`` streams one file in Python, decoding it with its documented encoding
(``u.item`` and the ``.dat`` files are Latin-1, the csv releases UTF-8), and writes
``(file, line_number, raw_line, fields, problem)`` to Parquet; archive-level faults (empty file,
wrong delimiter) stop here with one line naming the file. The ``*_fn`` functions then validate
the staged rows in Spark: each row either becomes a typed row or a quarantine row with its file,
line number, raw text and reason, so nothing is lost.
"""

from __future__ import annotations

import csv
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from movielens_als.errors import LandingError
from movielens_als.sources import Source

STAGED_SCHEMA = pa.schema(
    [
        ("file", pa.string()),
        ("line_number", pa.int64()),
        ("raw_line", pa.string()),
        ("fields", pa.list_(pa.string())),
        ("problem", pa.string()),
    ]
)
QUARANTINE_COLUMNS = ["file", "line_number", "raw_line", "reason"]

# ml-100k's u.genre order; used when an archive lacks u.genre.
GENRES_100K = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
# ml-1m users.dat codes occupations (its README).
OCCUPATIONS_1M = (
    "other",
    "academic/educator",
    "artist",
    "clerical/admin",
    "college/grad student",
    "customer service",
    "doctor/health care",
    "executive/managerial",
    "farmer",
    "homemaker",
    "K-12 student",
    "lawyer",
    "programmer",
    "retired",
    "sales/marketing",
    "scientist",
    "self-employed",
    "technician/engineer",
    "tradesman/craftsman",
    "unemployed",
    "writer",
)
_DELIMITER_NAMES = {"\t": "tab", "|": "pipe", "::": "'::'", ",": "comma"}
_CHUNK_ROWS = 500_000


@dataclass(frozen=True)
class FileFormat:
    name: str
    delimiter: str
    fields: int
    encoding: str
    header: tuple[str, ...] | None = None

    @property
    def is_csv(self) -> bool:
        return self.delimiter == ","

    @property
    def delimiter_name(self) -> str:
        return _DELIMITER_NAMES.get(self.delimiter, repr(self.delimiter))

    def split(self, line: str) -> list[str]:
        if self.is_csv and '"' in line:
            return next(csv.reader([line]))
        return line.split(self.delimiter)


@dataclass(frozen=True)
class Layout:
    """The files of one MovieLens release format and its rating scale."""

    name: str
    ratings: FileFormat
    movies: FileFormat
    users: FileFormat | None
    rating_min: float
    rating_max: float
    rating_step: float


LAYOUTS = (
    Layout(
        "100k",
        FileFormat("u.data", "\t", 4, "ascii"),
        FileFormat("u.item", "|", 24, "latin-1"),
        FileFormat("u.user", "|", 5, "ascii"),
        1.0,
        5.0,
        1.0,
    ),
    Layout(
        "dat",
        FileFormat("ratings.dat", "::", 4, "latin-1"),
        FileFormat("movies.dat", "::", 3, "latin-1"),
        FileFormat("users.dat", "::", 5, "latin-1"),
        0.5,
        5.0,
        0.5,
    ),
    Layout(
        "csv",
        FileFormat("ratings.csv", ",", 4, "utf-8", ("userId", "movieId", "rating", "timestamp")),
        FileFormat("movies.csv", ",", 3, "utf-8", ("movieId", "title", "genres")),
        None,
        0.5,
        5.0,
        0.5,
    ),
)


def detect_layout(members: dict[str, str], origin: str) -> Layout:
    """The layout whose ratings file the source holds."""
    for layout in LAYOUTS:
        if layout.ratings.name in members:
            if layout.movies.name not in members:
                raise LandingError(f"{origin}: has {layout.ratings.name} but no {layout.movies.name}")
            return layout
    expected = ", ".join(layout.ratings.name for layout in LAYOUTS)
    raise LandingError(f"{origin}: no ratings file found (expected one of {expected})")


def read_genre_names(source: Source, members: dict[str, str]) -> tuple[str, ...]:
    """Genre names in flag order from u.genre (``name|index`` lines)."""
    if "u.genre" not in members:
        return GENRES_100K
    with source.open(members["u.genre"]) as f:
        pairs = [line.decode("latin-1").strip().split("|") for line in f if line.strip()]
    try:
        return tuple(name for name, _ in sorted(pairs, key=lambda p: int(p[1])))
    except (ValueError, IndexError):
        raise LandingError(f"{members['u.genre']}: expected 'name|index' lines") from None


def stage_file(source: Source, member: str, fmt: FileFormat, out: Path) -> int:
    """Stream one file into Parquet staging rows; return its data line count.

    Raises LandingError for faults of the whole file: unreadable, empty, wrong header or delimiter.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list] = {name: [] for name in STAGED_SCHEMA.names}
    total = wrong_count = 0
    first_wrong: tuple[int, str] | None = None
    writer = pq.ParquetWriter(out, STAGED_SCHEMA)
    try:
        with source.open(member) as stream:
            for number, raw in enumerate(stream, start=1):
                line, problem = _decode(raw, fmt.encoding)
                if number == 1 and fmt.header is not None:
                    _check_header(member, line, fmt)
                    continue
                if not line.strip():
                    continue  # blank lines carry no data (a trailing newline, say)
                fields = fmt.split(line)
                if len(fields) != fmt.fields:
                    wrong_count += 1
                    first_wrong = first_wrong or (number, line)
                total += 1
                for key, value in zip(STAGED_SCHEMA.names, (member, number, line, fields, problem), strict=True):
                    rows[key].append(value)
                if len(rows["file"]) >= _CHUNK_ROWS:
                    writer.write_table(pa.table(rows, schema=STAGED_SCHEMA))
                    rows = {name: [] for name in STAGED_SCHEMA.names}
        if rows["file"]:
            writer.write_table(pa.table(rows, schema=STAGED_SCHEMA))
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as exc:  # truncated or corrupt members
        raise LandingError(f"{member}: cannot be read (truncated or corrupt archive): {exc}") from None
    finally:
        writer.close()
    if total == 0:
        raise LandingError(f"{member}: file is empty")
    if first_wrong and wrong_count * 2 > total:
        raise LandingError(_delimiter_message(member, fmt, first_wrong, wrong_count, total))
    return total


def _decode(raw: bytes, encoding: str) -> tuple[str, str | None]:
    text = raw.rstrip(b"\r\n")
    try:
        return text.decode(encoding), None
    except UnicodeDecodeError:
        return text.decode("latin-1"), f"not valid {encoding}"


def _check_header(member: str, line: str, fmt: FileFormat) -> None:
    found = tuple(field.strip() for field in fmt.split(line.lstrip("\ufeff")))
    if found != fmt.header:
        raise LandingError(f"{member} line 1: expected header {','.join(fmt.header)}, found {line[:80]!r}")


def _delimiter_message(member: str, fmt: FileFormat, first: tuple[int, str], wrong: int, total: int) -> str:
    number, line = first
    for other in ("\t", "|", "::", ",", ";", " "):
        if other != fmt.delimiter and len(line.split(other)) == fmt.fields:
            return (
                f"{member} line {number}: wrong delimiter: expected {fmt.fields} {fmt.delimiter_name}-separated "
                f"fields, the file uses {_DELIMITER_NAMES.get(other, repr(other))}"
            )
    return (
        f"{member}: {wrong} of {total} lines do not have {fmt.fields} {fmt.delimiter_name}-separated fields "
        "(wrong delimiter or not a MovieLens file)"
    )


# --- Spark validation: pure functions over staged rows -------------------------------------------


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
