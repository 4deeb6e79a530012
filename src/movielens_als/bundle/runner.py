"""``movielens-als run``: the bundle's job DAG (read by :mod:`bundle_config`) executed locally, task after task,
then the run summary and the report of the dashboard's datasets (``movielens-als report``)."""

from __future__ import annotations

import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from movielens_als import commands, interrupt
from movielens_als.bundle.config import LOCAL_TARGET, Plan, find_bundle_root, plan_job
from movielens_als.bundle.summary import summary_lines
from movielens_als.config import Common
from movielens_als.errors import user_error
from movielens_als.lakehouse.catalog import open_lakehouse
from movielens_als.lakehouse.names import LOCAL_CATALOG, Namespace
from movielens_als.report.dashboard import DASHBOARD_FILE

TASK_TAG = "task-"  # + the task key: the Spark job tag of every job a task of the DAG starts


def run_job(
    target: str = LOCAL_TARGET,
    source: str | None = None,
    home: str | None = None,
    bundle_root: str | None = None,
    overrides: Sequence[str] = (),
    remote: str | None = None,
) -> int:
    """Run the bundle's job locally, one task after the other in one SparkSession; exit code."""
    root = Path(bundle_root) if bundle_root else find_bundle_root()
    plan = plan_job(root, target, overrides=overrides, source=source, home=home)
    print(
        f"job {plan.job} from {root} (target {plan.target}), run {plan.run_id}: "
        f"{' -> '.join(t.key for t in plan.tasks)}"
    )
    for note in plan.notes:
        print(f"  note: {note}")
    parser = commands.build_parser()
    parsed = [(task, parser.parse_args(list(task.argv))) for task in plan.tasks]
    spark = open_lakehouse(home, remote=remote)
    width = max((len(t.key) for t in plan.tasks), default=4)
    code = 0
    for i, (task, args) in enumerate(parsed, 1):
        start = time.perf_counter()
        # Spark's job tags say which task started a job: Spark UI, event logs and `benchmarks/` group by them.
        spark.addTag(f"{TASK_TAG}{task.key}")
        try:
            result = commands.execute(args, spark)
        except Exception as exc:  # report, skip the downstream tasks, keep the summary (or re-raise an interrupt)
            elapsed = time.perf_counter() - start
            if interrupt.requested():  # Ctrl-C cancelled this task's Spark job: the CLI reports the interrupt
                print(f"[{i}/{len(parsed)}] {task.key:<{width}} interrupted after {elapsed:.1f}s", flush=True)
                raise
            message = user_error(exc)
            if message is None:
                traceback.print_exc()
            print(f"[{i}/{len(parsed)}] {task.key:<{width}} FAILED after {elapsed:.1f}s: {message or exc}")
            skipped = [t.key for t, _ in parsed[i:]]
            if skipped:
                print(f"  skipped: {', '.join(skipped)}")
            code = 2 if message else 1
            break
        finally:
            spark.removeTag(f"{TASK_TAG}{task.key}")
        elapsed = time.perf_counter() - start
        written = " ".join(f"{table}={n}" for table, n in result.rows.items()) or "no rows written"
        print(f"[{i}/{len(parsed)}] {task.key:<{width}} {elapsed:7.1f}s  {written}", flush=True)
        if result.headline:
            print(f"  {result.headline}", flush=True)
    namespace = Namespace(LOCAL_CATALOG, plan.parameters.get("schema", Common.schema))
    spark.addTag(f"{TASK_TAG}report")  # the summary and the report: local steps after the job's tasks
    for line in summary_lines(spark, namespace, plan.run_id):
        print(line)
    if code == 0:
        print(write_report(parser, plan, home, spark, root / "jobs" / "dashboards" / DASHBOARD_FILE), flush=True)
    spark.removeTag(f"{TASK_TAG}report")
    return code


# The report's flags that job parameters set, so it reads the run's namespace and the alert's thresholds.
_REPORT_FLAGS = {"catalog": "--catalog", "schema": "--schema", "volume": "--volume", "max_churn": "--max-churn",
                 "max_coverage_drop": "--max-coverage-drop"}  # fmt: skip


def write_report(parser, plan: Plan, home: str | None, spark, dashboard: Path | None = None) -> str:
    """``report`` of the plan's training run, as a last local step; one line saying where it is, or why not.
    The bundle's own dashboard file is used when it has one (an installed wheel carries no copy)."""
    argv = ["report", "--run-id", plan.run_id]
    if dashboard is not None and dashboard.is_file():
        argv += ["--dashboard", str(dashboard)]
    for name, flag in _REPORT_FLAGS.items():
        if plan.parameters.get(name):
            argv += [flag, plan.parameters[name]]
    if home is not None:
        argv += ["--home", str(home)]
    try:
        result = commands.execute(parser.parse_args(argv), spark)
    except Exception as exc:  # noqa: BLE001 - the DAG succeeded: a report that cannot be written says why, once
        return f"report: not written: {user_error(exc) or f'{type(exc).__name__}: {exc}'}"
    return f"report: {result.details['path']}"
