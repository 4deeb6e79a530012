"""Errors the command line reports as one line and a non-zero exit."""


class MovieLensAlsError(Exception):
    """A failure caused by input or configuration, not a bug: reported without a traceback."""


class InvalidIdentifierError(MovieLensAlsError, ValueError):
    """A catalog, schema, volume or table name that is not a plain SQL identifier."""


class LandingError(MovieLensAlsError):
    """A source archive that cannot be landed: missing, truncated, empty, wrong format or checksum."""


class QuarantineThresholdError(MovieLensAlsError):
    """More rows were quarantined than the allowed fraction; good tables were left unchanged."""


class ConnectUnsupportedError(MovieLensAlsError):
    """Something this Spark Connect server (serverless, standard access, a remote sc://) cannot do."""


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (Spark's carry the query context below)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def user_error(exc: BaseException) -> str | None:
    """The one line to show for a failure a user can cause or meet, or None for a bug (show the traceback)."""
    if isinstance(exc, MovieLensAlsError):
        return str(exc)
    try:
        from pyspark.errors import AnalysisException, ParseException
    except ImportError:  # pragma: no cover - pyspark is always there when a task runs
        return None
    if isinstance(exc, (AnalysisException, ParseException)):
        return f"Spark: {first_line(exc)}"
    return None
