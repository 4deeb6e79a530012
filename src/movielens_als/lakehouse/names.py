"""Validated, quoted Unity Catalog names (catalog.schema.table).

Names arrive as job parameters and end up inside SQL text, so they are checked against an
allow-list and always backtick-quoted: a value such as ``x`; DROP TABLE y; --`` never reaches SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from movielens_als.errors import InvalidIdentifierError

# Letters, digits and underscores, not starting with a digit: valid unquoted in Unity Catalog and Hive.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")

LOCAL_CATALOG = "spark_catalog"


def validate_identifier(value: str, kind: str = "identifier") -> str:
    """Return ``value`` if it is a plain identifier, else raise InvalidIdentifierError."""
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise InvalidIdentifierError(
            f"invalid {kind} {value!r}: use letters, digits and underscores, not starting with a digit"
        )
    return value


def quote(value: str, kind: str = "identifier") -> str:
    """Validate and backtick-quote one identifier."""
    return f"`{validate_identifier(value, kind)}`"


@dataclass(frozen=True)
class Namespace:
    """A validated catalog and schema; builds quoted three-level table names."""

    catalog: str
    schema: str

    def __post_init__(self) -> None:
        validate_identifier(self.catalog, "catalog")
        validate_identifier(self.schema, "schema")

    @property
    def qualified_schema(self) -> str:
        return f"{quote(self.catalog)}.{quote(self.schema)}"

    def table(self, name: str) -> str:
        """Quoted ``catalog.schema.name``."""
        return f"{self.qualified_schema}.{quote(name, 'table')}"

    def __str__(self) -> str:
        return f"{self.catalog}.{self.schema}"


def inference_table_prefix(endpoint_name: str) -> str:
    """The table prefix of a serving endpoint's inference table: its name as a plain identifier."""
    return endpoint_name.replace("-", "_")


def payload_table(endpoint_name: str) -> str:
    """The inference table Model Serving's AI Gateway writes for an endpoint (``<prefix>_payload``)."""
    return f"{inference_table_prefix(endpoint_name)}_payload"
