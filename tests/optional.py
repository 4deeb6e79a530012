"""What a test needs that may be missing here: skipped locally, a failure where ``CI`` is set."""

from __future__ import annotations

import importlib
import os

import pytest


def unavailable(reason: str) -> None:
    """Skip a test whose input or optional dependency is missing here; with ``CI`` set (``.ci/run`` sets it), fail
    instead: CI has everything, so a skip there would leave a claim unchecked without anyone noticing."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: every test must run)", pytrace=False)
    pytest.skip(reason)


def require(module: str, why: str):
    """``module`` imported, or :func:`unavailable` with ``why``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        unavailable(f"{module} is not installed ({why}): {exc}")
