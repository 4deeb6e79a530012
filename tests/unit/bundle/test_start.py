"""The job starts on its schedule or on its table_update trigger, as ``start_on`` says: the Python mutator the CLI
runs (databricks.yml ``python.mutators``), applied here as the CLI does, to the job before references resolve."""

from __future__ import annotations

import copy
import importlib

import pytest
from databricks.bundles.core import Bundle
from databricks.bundles.jobs import Job

from movielens_als.bundle.config import load_bundle, target_config
from movielens_als.bundle.resolver import Resolver
from movielens_als.bundle.start import choose
from tests.unit.bundle.test_config import REPO, TARGETS, jobs_of

USER = "someone@example.com"


@pytest.fixture(scope="module")
def bundle() -> dict:
    return load_bundle(REPO)


def mutated(bundle: dict, target: str, job: str, start_on: str | None = None) -> dict:
    """``job`` deployed to ``target``: variables resolved for the target, the mutator run, then the references."""
    config = target_config(bundle, target)
    resolver = Resolver(config, user=USER, target=target)
    values = {name: resolver.variable(name) for name in config["variables"]}
    if start_on is not None:
        values["start_on"] = start_on
    module, _, name = bundle["python"]["mutators"][0].partition(":")
    mutator = getattr(importlib.import_module(module), name)
    out = mutator.function(Bundle(target=target, variables=values), Job.from_dict(copy.deepcopy(jobs_of(config)[job])))
    return resolver.resolve(out.as_dict())


@pytest.mark.parametrize("target", TARGETS)
def test_by_default_the_job_starts_on_its_daily_schedule_and_has_no_trigger(bundle, target):
    assert bundle["variables"]["start_on"]["default"] == "schedule"
    job = mutated(bundle, target, "movielens_als")
    assert job["schedule"] == {"quartz_cron_expression": "0 0 5 * * ?", "timezone_id": "UTC"}
    assert "trigger" not in job


@pytest.mark.parametrize(
    ("target", "table"),
    [
        # The local resolver leaves the schema unprefixed; deployed, it is the dev_<user>_ schema resource's name,
        # which the job's own schema parameter reads too.
        ("dev", "main.movielens.movielens_als_someone_payload"),
        ("prod", "main.movielens.movielens_als_payload"),
    ],
)
def test_table_update_starts_the_job_on_the_endpoints_inference_table_instead(bundle, target, table):
    job = mutated(bundle, target, "movielens_als", start_on="table_update")
    assert "schedule" not in job
    assert job["trigger"]["table_update"] == {
        "table_names": [table],
        "condition": "ANY_UPDATED",
        "wait_after_last_change_seconds": 900,
        "min_time_between_triggers_seconds": 21600,
    }
    # The job parameter the deploy task names its endpoint by defaults to the same variable.
    params = {p["name"]: p["default"] for p in jobs_of(bundle)["movielens_als"]["parameters"]}
    assert params["endpoint_name"] == "${var.serving_endpoint_name}"
    assert params["schema"] == "${resources.schemas.movielens.name}"  # what the mutator writes before the table name


def test_the_serverless_job_runs_on_demand_whatever_start_on_says(bundle):
    for start_on in ("schedule", "table_update"):
        job = mutated(bundle, "prod", "movielens_als_serverless", start_on=start_on)
        assert "schedule" not in job and "trigger" not in job


def test_an_unknown_start_on_is_refused_by_name(bundle):
    job = Job.from_dict(copy.deepcopy(jobs_of(bundle)["movielens_als"]))
    with pytest.raises(ValueError, match="start_on is 'hourly': it must be one of schedule, table_update"):
        choose(job, "hourly", "movielens-als")
