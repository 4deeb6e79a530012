"""``movielens-als``: one entry point, a subcommand per job task.

Each subcommand parses plain ``--flag value`` arguments (what a Databricks ``python_wheel_task``
passes), builds the SparkSession and calls one function of the package. Errors caused by input
are printed as one ``error:`` line with a non-zero exit, without a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from movielens_als import __version__
from movielens_als.errors import MovieLensAlsError

DEFAULT_CATALOG = os.environ.get("MOVIELENS_ALS_CATALOG", "spark_catalog")
DEFAULT_SCHEMA = os.environ.get("MOVIELENS_ALS_SCHEMA", "movielens")
DEFAULT_VOLUME = os.environ.get("MOVIELENS_ALS_VOLUME", "files")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--catalog", default=DEFAULT_CATALOG, help="Unity Catalog catalog (locally: spark_catalog)")
    parser.add_argument("--schema", default=DEFAULT_SCHEMA, help="schema holding the tables")
    parser.add_argument("--volume", default=DEFAULT_VOLUME, help="UC volume for raw archives, models and reports")
    parser.add_argument("--home", default=None, help="local lakehouse home (env MOVIELENS_ALS_HOME, default ./.lakehouse)")


def _run_id(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--run-id", default=None, help=f"training run to {what} (default: the latest successful one)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="movielens-als", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("land", help="land MovieLens from GroupLens, a .zip or a folder into Delta tables")
    _common(p)
    p.add_argument("--source", default=None, help="URL, local .zip or extracted folder (default: GroupLens URL for --size)")
    p.add_argument("--size", default="100k", help="dataset size: 100k, 1m, 10m, 20m, 25m, 32m, latest-small")
    p.add_argument(
        "--max-quarantine-fraction", type=float, default=0.01,
        help="fail, keeping the good tables, when more than this fraction of rows is quarantined",
    )

    p = sub.add_parser("split", help="deterministic train/validation/test splits kept as a Delta table")
    _common(p)
    p.add_argument("--protocol", default="benchmark", choices=["benchmark", "quickstart", "chrono"])
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the protocol's)")

    p = sub.add_parser("train", help="tune on validation and train the rating and ranking ALS models")
    _common(p)
    p.add_argument("--protocol", default="benchmark", choices=["benchmark", "quickstart", "chrono"])
    p.add_argument("--run-id", default=None, help="id for this training run (default: generated)")
    p.add_argument("--grid", default=None, help="hyperparameter grid as JSON (default: the built-in grid)")

    p = sub.add_parser("evaluate", help="evaluate a training run and the quick-start baseline on the test split")
    _common(p)
    _run_id(p, "evaluate")
    p.add_argument("--k", type=int, default=10, help="cut-off for ranking metrics")

    p = sub.add_parser("recommend", help="top-N per user, cold-start fallback and similar movies")
    _common(p)
    _run_id(p, "recommend from")
    p.add_argument("--top-n", type=int, default=10, help="recommendations per user (1-100)")
    p.add_argument("--min-ratings", type=int, default=5, help="users with fewer ratings get the popular fallback")

    p = sub.add_parser("publish", help="create the SQL views from jobs/sql")
    _common(p)
    p.add_argument("--sql-dir", default=None, help="folder of view SQL files (default: the packaged copy)")

    p = sub.add_parser("sql", help="run SQL against the lakehouse, as on Databricks")
    _common(p)
    p.add_argument("query", help="SQL text; {catalog} and {schema} are replaced by the flags' values")
    p.add_argument("--format", default="table", choices=["table", "json", "csv"])
    p.add_argument("--limit", type=int, default=1000, help="most rows printed")

    p = sub.add_parser("run", help="run the bundle's job DAG locally on embedded Spark + Delta")
    p.add_argument("--target", default="local", help="bundle target whose variables apply")
    p.add_argument("--source", default=None, help="overrides the land task's --source")
    p.add_argument("--home", default=None, help="local lakehouse home")
    p.add_argument("--bundle-root", default=None, help="folder holding databricks.yml (default: found from cwd)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="override a job parameter")
    return parser


def dispatch(args: argparse.Namespace) -> int:
    """Run one parsed command; return the exit code."""
    if args.command == "run":
        from movielens_als.runner import run_job

        return run_job(
            target=args.target, source=args.source, home=args.home,
            bundle_root=args.bundle_root, overrides=args.param,
        )

    if args.command == "sql":
        from movielens_als.names import Namespace
        from movielens_als.spark import get_spark
        from movielens_als.sql import run_sql

        namespace = Namespace(args.catalog, args.schema)  # validates before any Spark work
        print(run_sql(get_spark(args.home), namespace, args.query, fmt=args.format, limit=args.limit))
        return 0
    print(execute(args).summary())
    return 0


def execute(args: argparse.Namespace):
    """Run one task command; return its TaskResult (the local runner calls this in-process)."""
    from movielens_als.names import Namespace
    from movielens_als.spark import get_spark, storage_root

    namespace = Namespace(args.catalog, args.schema)  # validates before any Spark work
    storage = storage_root(namespace, args.volume, args.home)
    spark = get_spark(args.home)

    if args.command == "land":
        from movielens_als.land import land

        return land(spark, namespace, storage, source=args.source, size=args.size,
                    max_quarantine_fraction=args.max_quarantine_fraction)
    if args.command == "split":
        from movielens_als.splits import split

        return split(spark, namespace, protocol=args.protocol, seed=args.seed)
    if args.command == "train":
        from movielens_als.train import train

        return train(spark, namespace, storage, protocol=args.protocol, run_id=args.run_id, grid=args.grid)
    if args.command == "evaluate":
        from movielens_als.evaluate import evaluate

        return evaluate(spark, namespace, storage, run_id=args.run_id, k=args.k)
    if args.command == "recommend":
        from movielens_als.recommend import recommend

        return recommend(spark, namespace, storage, run_id=args.run_id, top_n=args.top_n,
                         min_ratings=args.min_ratings)
    if args.command == "publish":
        from movielens_als.publish import publish_views

        return publish_views(spark, namespace, sql_dir=args.sql_dir)
    raise AssertionError(f"not a task command: {args.command}")  # pragma: no cover - argparse restricts it


def main(argv: Sequence[str] | None = None) -> None:
    """Console and ``python_wheel_task`` entry point; exits non-zero on failure."""
    args = build_parser().parse_args(argv)
    try:
        code = dispatch(args)
    except MovieLensAlsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    if code:
        # A python_wheel_task ignores return values: only an exception or exit status fails it.
        raise SystemExit(code)


if __name__ == "__main__":
    main()
