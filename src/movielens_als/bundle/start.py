"""How the job starts: the ``start_on`` bundle variable keeps its cron ``schedule`` or its ``table_update`` trigger.

The job YAML declares both and this Databricks Asset Bundles Python mutator (databricks.yml ``python.mutators``)
keeps one: a job starts one way, and YAML alone cannot drop a key by a variable's value. ``table_update`` watches
the serving endpoint's inference table, where every request people send the endpoint (and the app, which asks it)
lands, so ratings given today start the run that harvests them. The table's name follows the endpoint's
(:func:`movielens_als.lakehouse.names.payload_table`); catalog and schema stay references the CLI resolves.
"""

from __future__ import annotations

from dataclasses import replace

from databricks.bundles.core import Bundle, Variable, job_mutator, variables
from databricks.bundles.jobs import Job

from movielens_als.lakehouse.names import payload_table

STARTS = ("schedule", "table_update")
SCHEMA_REF = "${var.catalog}.${resources.schemas.movielens.name}"


@variables
class Variables:
    start_on: Variable[str]
    serving_endpoint_name: Variable[str]


def choose(job: Job, start_on: str, endpoint_name: str) -> Job:
    """``job`` with only the way to start that ``start_on`` names; a job that declares one way is left alone."""
    if job.schedule is None or job.trigger is None:
        return job
    if start_on not in STARTS:
        raise ValueError(f"variable start_on is {start_on!r}: it must be one of {', '.join(STARTS)}")
    if start_on == "schedule":
        return replace(job, trigger=None)
    table_update = replace(job.trigger.table_update, table_names=[f"{SCHEMA_REF}.{payload_table(endpoint_name)}"])
    return replace(job, schedule=None, trigger=replace(job.trigger, table_update=table_update))


@job_mutator
def start_on(bundle: Bundle, job: Job) -> Job:
    return choose(
        job, bundle.resolve_variable(Variables.start_on), bundle.resolve_variable(Variables.serving_endpoint_name)
    )
