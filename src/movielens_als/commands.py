"""The command surface: one subcommand per job task, its flags built from :mod:`config`, and the dispatch.

Each subcommand takes plain ``--flag value`` arguments, what a Databricks ``python_wheel_task``
passes; ``cli.main`` and the local runner both parse with :func:`build_parser` and call
:func:`execute`, so a task runs the same way from a terminal, a job and ``movielens-als run``.
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, fields

from movielens_als import __version__, config
from movielens_als.lakehouse.catalog import open_lakehouse
from movielens_als.lakehouse.names import Namespace
from movielens_als.lakehouse.spark import storage_root
from movielens_als.result import TaskResult

REMOTE_HELP = "Spark Connect URL (sc://host:port, or local to start a local server); env SPARK_REMOTE"


def _add_options(parser: argparse.ArgumentParser, group: type) -> None:
    for f in fields(group):
        meta = f.metadata
        kwargs = {"help": meta["help"]}
        kind = meta["kind"] or (type(f.default) if f.default not in (None, MISSING) else None)
        if kind is bool:  # `--flag` alone, or `--flag true|false` as a job parameter passes it
            kwargs.update(nargs="?", const=True, type=parse_bool)
        elif kind in (int, float):
            kwargs["type"] = kind
        if meta["choices"]:
            kwargs["choices"] = meta["choices"]
        if meta["positional"]:
            parser.add_argument(f.name, **kwargs)
            continue
        if f.default is MISSING:
            kwargs["required"] = True
        else:
            kwargs["default"] = f.default
        parser.add_argument(config.flag(f.name), dest=f.name, **kwargs)


def parse_bool(value: str) -> bool:
    text = str(value).strip().lower()
    if text not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
    return text in ("true", "1", "yes")


def _global_flags(parser: argparse.ArgumentParser, default) -> None:
    # Accepted before or after the subcommand: the subcommand's copy must not reset the global one.
    parser.add_argument("--remote", default=default, help=REMOTE_HELP)
    parser.add_argument(
        "--debug", action="store_true", default=default or False, help="show tracebacks (env MOVIELENS_ALS_DEBUG=1)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="movielens-als", description="MovieLens ALS recommendations on Databricks.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _global_flags(parser, None)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (text, groups) in config.COMMANDS.items():
        p = sub.add_parser(name, help=text, description=text)
        _global_flags(p, argparse.SUPPRESS)
        for group in groups:
            _add_options(p, group)

    p = sub.add_parser("run", help="run the bundle's job DAG locally on embedded Spark + Delta")
    _global_flags(p, argparse.SUPPRESS)
    p.add_argument("--target", default="local", help="bundle target whose variables apply")
    p.add_argument("--source", default=None, help="overrides the land task's --source")
    p.add_argument("--home", default=None, help="local lakehouse home")
    p.add_argument("--bundle-root", default=None, help="folder holding databricks.yml (default: found from cwd)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="override a job parameter")
    return parser


def execute(args: argparse.Namespace, spark=None) -> TaskResult:
    """Run one task command; the SparkSession is made from the arguments unless one is passed in.

    Each task's module is imported when its command runs: a ``land`` or ``split`` process does not load MLflow
    and the Databricks SDK (seconds of every CLI start)."""
    namespace = Namespace(args.catalog, args.schema)  # validates before any Spark work
    if args.command == "deploy":  # no Spark: the model answers in process, or the endpoint is API calls
        from movielens_als.ml import registry
        from movielens_als.tasks.deploy import deploy

        registry.configure(args.home)
        return deploy(
            namespace,
            endpoint_name=args.endpoint_name,
            workload_size=args.workload_size,
            scale_to_zero=args.scale_to_zero,
            readers_group=args.readers_group,
            timeout=args.timeout,
        )
    storage = storage_root(namespace, args.volume, args.home)
    spark = spark or open_lakehouse(args.home, remote=args.remote, namespace=namespace)
    if args.command == "land":
        from movielens_als.tasks.land import land

        return land(
            spark,
            namespace,
            storage,
            source=args.source,
            size=args.size,
            max_quarantine_fraction=args.max_quarantine_fraction,
            endpoint_name=args.endpoint_name,
        )
    if args.command == "split":
        from movielens_als.tasks.split import split

        return split(spark, namespace, protocol=args.protocol, seed=args.seed)
    if args.command in ("train", "evaluate", "promote", "recommend"):
        from movielens_als.ml import registry

        registry.configure(args.home, getattr(args, "experiment", None))
    if args.command == "train":
        from movielens_als.tasks.train import train

        return train(
            spark,
            namespace,
            storage,
            protocol=args.protocol,
            run_id=args.run_id,
            grid=args.grid,
            tune=args.tune,
            retune_fraction=args.retune_fraction,
        )
    if args.command == "evaluate":
        from movielens_als.tasks.evaluate import evaluate

        return evaluate(spark, namespace, storage, run_id=args.run_id, k=args.k, diversity_users=args.diversity_users)
    if args.command == "promote":
        from movielens_als.tasks.promote import promote

        return promote(
            spark,
            namespace,
            run_id=args.run_id,
            k=args.k,
            ndcg_tolerance=args.ndcg_tolerance,
            rmse_tolerance=args.rmse_tolerance,
            force=args.force_promote,
        )
    if args.command == "recommend":
        from movielens_als.serving.health import Thresholds
        from movielens_als.tasks.recommend import recommend

        return recommend(
            spark,
            namespace,
            top_n=args.top_n,
            min_ratings=args.min_ratings,
            popular_min_count=args.popular_min_count,
            popular_damping=args.popular_damping,
            block_size=args.block_size,
            thresholds=Thresholds(args.max_churn, args.max_coverage_drop),
        )
    if args.command == "publish":
        from movielens_als.tasks.publish import publish

        return publish(spark, namespace, sql_dir=args.sql_dir)
    if args.command == "report":
        from movielens_als.report.write import write_report
        from movielens_als.serving.health import Thresholds

        return write_report(
            spark,
            namespace,
            storage,
            run_id=args.run_id,
            dashboard=args.dashboard,
            thresholds=Thresholds(args.max_churn, args.max_coverage_drop),
            rows=args.rows,
        )
    raise ValueError(f"not a task command: {args.command}")
