"""``movielens-als run``: the bundle's job DAG (read by :mod:`bundle_config`) executed locally, task after task."""

from __future__ import annotations

import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from movielens_als import commands
from movielens_als.bundle.config import LOCAL_TARGET, find_bundle_root, plan_job
from movielens_als.bundle.summary import summary_lines
from movielens_als.config import Common
from movielens_als.errors import user_error
from movielens_als.lakehouse.catalog import open_lakehouse
from movielens_als.lakehouse.names import LOCAL_CATALOG, Namespace


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
        try:
            result = commands.execute(args, spark)
        except Exception as exc:  # noqa: BLE001 - report, skip the downstream tasks, keep the summary
            elapsed = time.perf_counter() - start
            message = user_error(exc)
            if message is None:
                traceback.print_exc()
            print(f"[{i}/{len(parsed)}] {task.key:<{width}} FAILED after {elapsed:.1f}s: {message or exc}")
            skipped = [t.key for t, _ in parsed[i:]]
            if skipped:
                print(f"  skipped: {', '.join(skipped)}")
            code = 2 if message else 1
            break
        elapsed = time.perf_counter() - start
        written = " ".join(f"{table}={n}" for table, n in result.rows.items()) or "no rows written"
        print(f"[{i}/{len(parsed)}] {task.key:<{width}} {elapsed:7.1f}s  {written}", flush=True)
        if result.headline:
            print(f"  {result.headline}", flush=True)
    namespace = Namespace(LOCAL_CATALOG, plan.parameters.get("schema", Common.schema))
    for line in summary_lines(spark, namespace, plan.run_id):
        print(line)
    return code
