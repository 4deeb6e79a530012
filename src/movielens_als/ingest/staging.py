"""Stage MovieLens files as ``(file, line_number, raw_line, fields, problem)`` rows in Parquet.

Every line keeps its file and 1-based line number, so a quarantined row can be found in the
source. Catalogue files (movies, users: at most tens of thousands of lines) are streamed in
Python, which decodes any encoding exactly. The ratings file, which grows with the release
(25 million lines in ml-25m), is read by Spark's text source in parallel: a line's number is its
position within its file block (``_metadata.file_block_start``) plus the lines of the blocks
before it, which one small aggregation counts. Faults of a whole file (unreadable, empty, wrong
header or delimiter) stop the landing here, before any table is written.
"""

from __future__ import annotations

import shutil
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from movielens_als.errors import LandingError
from movielens_als.ingest.layouts import DELIMITER_NAMES, GENRES_100K, FileFormat
from movielens_als.ingest.sources import Source

STAGED_SCHEMA = pa.schema(
    [
        ("file", pa.string()),
        ("line_number", pa.int64()),
        ("raw_line", pa.string()),
        ("fields", pa.list_(pa.string())),
        ("problem", pa.string()),
    ]
)
BOM = "\ufeff"
_CHUNK_ROWS = 500_000
_COPY_BUFFER = 1 << 20


@dataclass(frozen=True)
class Staged:
    """A staged file: its Parquet rows and how many data lines it had."""

    path: Path
    lines: int


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


# --- small files, in Python ----------------------------------------------------------------------


def stage_file(source: Source, member: str, fmt: FileFormat, out: Path) -> Staged:
    """Stream one file into Parquet staging rows."""
    out.parent.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list] = {name: [] for name in STAGED_SCHEMA.names}
    total = wrong_count = 0
    first_wrong: tuple[int, str] | None = None
    writer = pq.ParquetWriter(out, STAGED_SCHEMA)
    try:
        with source.open(member) as stream:
            for number, raw in enumerate(stream, start=1):
                line, problem = _decode(raw, fmt.encoding)
                if number == 1:
                    line = line.removeprefix(BOM)  # a byte-order mark is not part of the first row
                    if fmt.header is not None:
                        check_header(member, line, fmt)
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
    check_counts(member, fmt, total, wrong_count, first_wrong)
    return Staged(out, total)


def _decode(raw: bytes, encoding: str) -> tuple[str, str | None]:
    text = raw.rstrip(b"\r\n")
    try:
        return text.decode(encoding), None
    except UnicodeDecodeError:
        return text.decode("latin-1"), f"not valid {encoding}"


def check_header(member: str, line: str, fmt: FileFormat) -> None:
    found = tuple(field.strip() for field in fmt.split(line.removeprefix(BOM)))
    if found != fmt.header:
        raise LandingError(f"{member} line 1: expected header {','.join(fmt.header)}, found {line[:80]!r}")


def check_counts(member: str, fmt: FileFormat, total: int, wrong: int, first_wrong: tuple[int, str] | None) -> None:
    """Whole-file faults: no data lines, or mostly lines that do not split into the format's fields."""
    if total == 0:
        raise LandingError(f"{member}: file is empty")
    if first_wrong and wrong * 2 > total:
        raise LandingError(_delimiter_message(member, fmt, first_wrong, wrong, total))


def _delimiter_message(member: str, fmt: FileFormat, first: tuple[int, str], wrong: int, total: int) -> str:
    number, line = first
    for other in ("\t", "|", "::", ",", ";", " "):
        if other != fmt.delimiter and len(line.split(other)) == fmt.fields:
            return (
                f"{member} line {number}: wrong delimiter: expected {fmt.fields} {fmt.delimiter_name}-separated "
                f"fields, the file uses {DELIMITER_NAMES.get(other, repr(other))}"
            )
    return (
        f"{member}: {wrong} of {total} lines do not have {fmt.fields} {fmt.delimiter_name}-separated fields "
        "(wrong delimiter or not a MovieLens file)"
    )


# --- the ratings file, in Spark -----------------------------------------------------------------


def local_copy(source: Source, member: str, folder: Path) -> Path:
    """A path Spark can read: the file itself in a folder source, else the member extracted from the zip."""
    if not source.is_zip:
        return source.path / member
    target = folder / Path(member).name
    if not target.is_file():
        partial = target.with_name(target.name + ".part")
        folder.mkdir(parents=True, exist_ok=True)
        try:
            with source.open(member) as stream, open(partial, "wb") as out:
                shutil.copyfileobj(stream, out, _COPY_BUFFER)
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            partial.unlink(missing_ok=True)
            raise LandingError(f"{member}: cannot be read (truncated or corrupt archive): {exc}") from None
        partial.replace(target)  # complete or absent: a re-run never trusts half a file
    return target


def _decoded(value, encoding: str):
    """The line as text in the file's encoding, and the problem when its bytes do not fit it."""
    if encoding == "latin-1":  # every byte is a Latin-1 character: decode the raw bytes exactly
        return F.decode(value.cast("binary"), "ISO-8859-1"), F.lit(None).cast("string")
    valid = F.is_valid_utf8(value)
    if encoding == "ascii":
        valid = valid & ~value.rlike(r"[^\x00-\x7F]")
    text = F.when(F.is_valid_utf8(value), value).otherwise(F.make_valid_utf8(value))
    return text, F.when(~valid, F.lit(f"not valid {encoding}"))


def stage_lines(spark: SparkSession, path: Path, member: str, fmt: FileFormat, out: Path) -> Staged:
    """Stage a large file with Spark's text source: same rows as :func:`stage_file`, read in parallel."""
    with open(path, "rb") as f:
        first = _decode(f.readline(), fmt.encoding)[0]
    if fmt.header is not None:
        check_header(member, first, fmt)
    lines = spark.read.text(str(path)).select(
        "value",
        F.col("_metadata.file_block_start").alias("_block"),
        F.monotonically_increasing_id().alias("_row"),
    )
    # A block's rows are consecutive within its task: its first row id and its length place it.
    blocks = lines.groupBy("_block").agg(F.min("_row").alias("first"), F.count(F.lit(1)).alias("n")).collect()
    line_number = F.lit(None).cast("bigint")
    before = 0
    for block in sorted(blocks, key=lambda b: b["_block"]):
        line_number = F.when(F.col("_block") == block["_block"], F.col("_row") - block["first"] + before + 1).otherwise(
            line_number
        )
        before += block["n"]
    text, problem = _decoded(F.col("value"), fmt.encoding)
    text = F.when(line_number == 1, F.regexp_replace(text, f"^{BOM}", "")).otherwise(text)
    staged = (
        lines.select(line_number.alias("line_number"), text.alias("raw_line"), problem.alias("problem"))
        .where((F.col("line_number") > (1 if fmt.header else 0)) & (F.trim("raw_line") != ""))
        .select(
            F.lit(member).alias("file"),
            "line_number",
            "raw_line",
            F.split("raw_line", _split_pattern(fmt.delimiter)).alias("fields"),
            "problem",
        )
    )
    staged.write.mode("overwrite").parquet(str(out))
    written = spark.read.parquet(str(out))
    wrong = F.size("fields") != fmt.fields
    stats = written.agg(
        F.count(F.lit(1)).alias("total"),
        F.count_if(wrong).alias("wrong"),
        F.min_by(F.struct("line_number", "raw_line"), F.when(wrong, F.col("line_number"))).alias("first"),
    ).first()
    first_wrong = (stats["first"]["line_number"], stats["first"]["raw_line"]) if stats["wrong"] else None
    check_counts(member, fmt, stats["total"], stats["wrong"], first_wrong)
    return Staged(out, stats["total"])


def _split_pattern(delimiter: str) -> str:
    return "".join(f"\\{c}" if not c.isalnum() else c for c in delimiter)
