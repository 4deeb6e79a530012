"""The reference DAG itself (:mod:`tests.reference`): ``movielens-als run``'s code path on the session's classic
Spark, which the Connect, cluster, crash and serving tests compare with. Built here first (the file is queued
first), so what it costs is this file's, and the run's own output is checked once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reference import RATINGS

pytestmark = pytest.mark.integration

TASKS = ("land", "split", "train", "evaluate", "promote", "recommend", "publish", "deploy")


def test_the_reference_run_ran_every_task_of_the_bundle_in_order(reference):
    lines = reference.output.splitlines()
    ran = [line.split()[1] for line in lines if line.startswith("[") and "/8] " in line]
    assert ran == list(TASKS), reference.output[-3000:]
    assert "FAILED" not in reference.output and f"ratings={RATINGS}" in reference.output
    assert "gate: first, no champion yet" in reference.output


def test_the_run_prints_the_summary_then_the_reports_path(reference):
    from tests.unit.report.test_page import parse

    lines = reference.output.splitlines()
    summary = next(i for i, line in enumerate(lines) if line.startswith("summary ("))
    (report,) = [i for i, line in enumerate(lines) if line.startswith("report: ")]
    assert report > summary, reference.output[-3000:]
    path = Path(lines[report].removeprefix("report: "))
    assert path.is_file() and path.is_relative_to(reference.home) and path.parts[-3] == "reports", lines[report]
    assert not any("error" in f["shows"] for f in parse(path.read_text(encoding="utf-8")).figures)
