"""Run ids and timestamps: one definition each, always UTC and time-zone aware."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime


def utc_now() -> datetime:
    """The current time in UTC, time-zone aware (PySpark writes it as that instant, whatever the driver's zone)."""
    return datetime.now(UTC)


def new_run_id(prefix: str = "", now: datetime | None = None) -> str:
    """``<prefix>20261127T043140-36ce72``: sortable by time, unique by its random suffix."""
    now = now or utc_now()
    return f"{prefix}{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
