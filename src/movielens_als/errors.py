"""Errors the command line reports as one line and a non-zero exit."""


class MovieLensAlsError(Exception):
    """A failure caused by input or configuration, not a bug: reported without a traceback."""


class InvalidIdentifierError(MovieLensAlsError, ValueError):
    """A catalog, schema, volume or table name that is not a plain SQL identifier."""


class LandingError(MovieLensAlsError):
    """A source archive that cannot be landed: missing, truncated, empty, wrong format or checksum."""


class QuarantineThresholdError(MovieLensAlsError):
    """More rows were quarantined than the allowed fraction; good tables were left unchanged."""
