"""``movielens-als``: the console and ``python_wheel_task`` entry point.

A thin ``main``: parse the arguments, call one function, turn failures a user can cause into one
``error:`` line and a non-zero exit (``--debug`` or ``MOVIELENS_ALS_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

from movielens_als import interrupt
from movielens_als.bundle.runner import run_job
from movielens_als.commands import build_parser, execute
from movielens_als.errors import user_error
from movielens_als.lakehouse.catalog import open_lakehouse
from movielens_als.lakehouse.names import Namespace
from movielens_als.lakehouse.sql import run_sql


def dispatch(args: argparse.Namespace) -> int:
    """Run one parsed command; return the exit code."""
    if args.command == "run":
        return run_job(
            target=args.target,
            source=args.source,
            home=args.home,
            bundle_root=args.bundle_root,
            overrides=args.param,
            remote=args.remote,
        )
    if args.command == "serve":  # MLflow's scoring server over the local registry: no Spark is started
        from movielens_als.serving.server import serve

        return serve(Namespace(args.catalog, args.schema), args.home, args.host, args.port, args.endpoint_name)
    if args.command == "app":  # the champion in process and the tables through delta-rs: no Spark either
        from movielens_als.app.local import serve as serve_app

        return serve_app(Namespace(args.catalog, args.schema), args.home, args.host, args.port, args.endpoint_name)
    if args.command == "synth":
        from movielens_als.ingest.synth import synthesize

        print(synthesize(args.ratings, args.out, seed=args.seed))
        return 0
    if args.command == "sql":
        namespace = Namespace(args.catalog, args.schema)  # validates before any Spark work
        if args.warehouse:  # a Databricks SQL warehouse runs it: no local Spark is started
            from movielens_als.lakehouse.warehouse import run_warehouse_sql  # the SDK: loaded only for this

            output = run_warehouse_sql(
                args.warehouse,
                namespace,
                args.query,
                fmt=args.format,
                limit=args.limit,
                profile=args.profile,
                timeout=args.timeout,
            )
        else:
            spark = open_lakehouse(args.home, remote=args.remote)  # every schema: a query may join across them
            output = run_sql(spark, namespace, args.query, fmt=args.format, limit=args.limit)
        print(output.text)
        if output.note:
            print(output.note, file=sys.stderr)
        return 0
    result = execute(args)
    print(result.summary())
    if result.headline:
        print(result.headline)
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    """Console and ``python_wheel_task`` entry point; exits non-zero on failure."""
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("MOVIELENS_ALS_DEBUG") == "1"
    try:
        code = dispatch(args)
    except KeyboardInterrupt:
        interrupt.done()
        print("error: interrupted", file=sys.stderr)
        code = 130
    except Exception as exc:  # noqa: BLE001 - every failure ends in one line; --debug shows where
        if interrupt.requested():  # Ctrl-C cancelled the Spark job this failure comes from
            interrupt.done()
            if debug:
                traceback.print_exc()
            print("error: interrupted", file=sys.stderr)
            raise SystemExit(130) from None
        message = user_error(exc)
        if message is None or debug:
            traceback.print_exc()
        print(f"error: {message or f'{type(exc).__name__}: {exc}'}", file=sys.stderr)
        code = 2 if message else 1
    if code:
        # A python_wheel_task ignores return values: only an exception or exit status fails it.
        raise SystemExit(code)


if __name__ == "__main__":
    main()
