"""Every task option once: its flag, default, choices and help, as frozen dataclasses.

The CLI's argparse flags are built from these fields, task functions take their keyword defaults
from the instances below, and ``tests/unit/test_config.py`` fails when a bundle variable or job
parameter disagrees with them. A field's ``variable`` names the bundle variable that sets it on a
deploy (``bundle/variables.yml``), so deploy-time values have one source too.
"""

from __future__ import annotations

import os
from dataclasses import MISSING, dataclass, field, fields
from typing import Any


def option(
    default: Any,
    help: str,
    *,
    choices: tuple | None = None,
    variable: str | None = None,
    kind: type | None = None,
    positional: bool = False,
) -> Any:
    """A dataclass field carrying what the command line and the bundle need to know about it."""
    meta = {"help": help, "choices": choices, "variable": variable, "kind": kind, "positional": positional}
    return field(default=default, metadata=meta)


# MovieLens releases by the --size name: the GroupLens zip (and folder) name of each.
SIZES = {
    "100k": "ml-100k",
    "1m": "ml-1m",
    "10m": "ml-10m",
    "20m": "ml-20m",
    "25m": "ml-25m",
    "32m": "ml-32m",
    "latest-small": "ml-latest-small",
    "latest": "ml-latest",
}


@dataclass(frozen=True)
class Protocol:
    """How a protocol splits ratings: ``kind`` stratified | random | chrono, grouped ``by`` a column."""

    name: str
    kind: str
    default_seed: int | None
    by: str | None = None


PROTOCOLS = {
    "benchmark": Protocol("benchmark", "stratified", 42, "movie_id"),
    "quickstart": Protocol("quickstart", "random", 123),
    "chrono": Protocol("chrono", "chrono", None, "user_id"),
}
SQL_FORMATS = ("table", "json", "csv")
TUNE_MODES = ("auto", "always", "never")  # train --tune
ENDPOINT_NAME = "movielens-als"  # the Model Serving endpoint's default name (deploy; land harvests its inference table)
WORKLOAD_SIZES = ("Small", "Medium", "Large")  # Model Serving's CPU sizes: up to 4, 16 and 64 concurrent requests


@dataclass(frozen=True)
class Common:
    catalog: str = option(
        os.environ.get("MOVIELENS_ALS_CATALOG", "spark_catalog"), "Unity Catalog catalog (locally: spark_catalog)"
    )
    schema: str = option(os.environ.get("MOVIELENS_ALS_SCHEMA", "movielens"), "schema holding the tables")
    volume: str = option(
        os.environ.get("MOVIELENS_ALS_VOLUME", "files"), "UC volume for raw archives, models and reports"
    )
    home: str | None = option(None, "local lakehouse home (env MOVIELENS_ALS_HOME, default ./.lakehouse)")


@dataclass(frozen=True)
class Land:
    source: str | None = option(
        None, "URL, local .zip or extracted folder (default: the GroupLens URL for --size)", variable="source"
    )
    size: str = option("100k", "MovieLens release to download", choices=tuple(SIZES), variable="dataset_size")
    max_quarantine_fraction: float = option(
        0.01,
        "fail, keeping the good tables, when more than this fraction of rows is quarantined",
        variable="max_quarantine_fraction",
    )
    endpoint_name: str = option(
        ENDPOINT_NAME,
        "serving endpoint whose inference table (<name>_payload, '-' as '_') is harvested into feedback; '' skips it",
        variable="serving_endpoint_name",
    )


@dataclass(frozen=True)
class Split:
    protocol: str = option("benchmark", "split protocol", choices=tuple(PROTOCOLS), variable="protocol")
    seed: int | None = option(None, "random seed (default: the protocol's)", kind=int)


@dataclass(frozen=True)
class Train:
    protocol: str = option("benchmark", "split protocol trained on", choices=tuple(PROTOCOLS), variable="protocol")
    run_id: str | None = option(None, "id for this training run (default: generated)")
    grid: str | None = option(None, "hyperparameter grid as JSON (default: the built-in grid)", variable="als_grid")
    tune: str = option(
        "auto",
        "search the grid always, never (fit the champion's hyperparameters), or auto: when there is no champion, "
        "its grid or protocol differ, or more than --retune-fraction of the ratings changed since its tuning",
        choices=TUNE_MODES,
        variable="tune",
    )
    retune_fraction: float = option(
        0.05, "--tune auto searches again when more than this fraction of ratings changed", variable="retune_fraction"
    )
    experiment: str | None = option(None, "MLflow experiment (default: movielens_als; on Databricks the bundle's)")


@dataclass(frozen=True)
class Evaluate:
    run_id: str | None = option(None, "training run to evaluate (default: the latest successful one)")
    k: int = option(10, "cut-off for ranking metrics", variable="k")
    diversity_users: int = option(
        1000, "users sampled for diversity and serendipity (exact up to this many)", variable="diversity_users"
    )


@dataclass(frozen=True)
class Promote:
    run_id: str | None = option(None, "training run whose models challenge the champion (default: the latest)")
    k: int = option(Evaluate.k, "cut-off of the nDCG the gate compares", variable="k")
    ndcg_tolerance: float = option(
        0.005, "largest nDCG@k drop against the champion that is still promoted", variable="promote_ndcg_tolerance"
    )
    rmse_tolerance: float = option(
        0.005, "largest RMSE rise against the champion that is still promoted", variable="promote_rmse_tolerance"
    )
    force_promote: bool = option(False, "promote whatever the figures (an operator's override)", kind=bool)


@dataclass(frozen=True)
class Recommend:
    top_n: int = option(10, "recommendations per user (1-100)", variable="top_n")
    min_ratings: int = option(5, "users with fewer ratings get the popular fallback", variable="min_ratings")
    popular_min_count: int = option(
        20, "ratings a movie needs to be popular or suggested as similar", variable="popular_min_count"
    )
    popular_damping: float = option(
        25.0, "pseudo-ratings at the global mean in the damped popularity average", variable="popular_damping"
    )
    block_size: int = option(
        4096, "users or movies per scoring block of the top-k (memory per task)", variable="block_size"
    )
    max_churn: float = option(
        0.5, "serving_health warns when a larger share of users got a different top-N", variable="health_max_churn"
    )
    max_coverage_drop: float = option(
        0.05, "serving_health warns when catalogue coverage falls by more", variable="health_max_coverage_drop"
    )


@dataclass(frozen=True)
class Report:
    run_id: str | None = option(None, "training run whose reports folder gets the page (default: the latest succeeded)")
    dashboard: str | None = option(None, "the .lvdash.json whose datasets to render (default: jobs/dashboards/)")
    max_churn: float = option(Recommend.max_churn, "the serving_health alert's churn threshold, against the latest row")
    max_coverage_drop: float = option(
        Recommend.max_coverage_drop, "the serving_health alert's coverage-drop threshold, against the latest row"
    )
    rows: int = option(20, "most rows of each table shown (charts use every fetched row)")


@dataclass(frozen=True)
class Publish:
    sql_dir: str | None = option(None, "folder of view SQL files (default: the packaged copy)")


@dataclass(frozen=True)
class Deploy:
    endpoint_name: str = option(
        ENDPOINT_NAME,
        "Model Serving endpoint that serves the champion (letters, digits, - and _, at most 63)",
        variable="serving_endpoint_name",
    )
    workload_size: str = option(
        "Small", "endpoint compute per served model", choices=WORKLOAD_SIZES, variable="serving_workload_size"
    )
    scale_to_zero: bool = option(
        True, "let the endpoint scale to zero when idle (slow first request)", variable="serving_scale_to_zero"
    )
    readers_group: str = option("account users", "group granted CAN_QUERY on the endpoint", variable="readers_group")
    timeout: int = option(2400, "seconds to wait for the endpoint to finish creating or updating")


@dataclass(frozen=True)
class Serve:
    port: int = option(5000, "port of the local scoring server")
    host: str = option("127.0.0.1", "interface to listen on (0.0.0.0 serves other machines too)")
    endpoint_name: str = option(
        ENDPOINT_NAME, "endpoint it stands in for: requests are logged to <name>_payload ('-' as '_') for land"
    )


@dataclass(frozen=True)
class App:
    port: int = option(8000, "port of the local app (Databricks Apps listen on 8000 too)")
    host: str = option("127.0.0.1", "interface to listen on (0.0.0.0 serves other machines too)")
    endpoint_name: str = option(
        ENDPOINT_NAME, "endpoint it stands in for: its requests are logged to <name>_payload ('-' as '_') for land"
    )


@dataclass(frozen=True)
class Sql:
    query: str = option(MISSING, "SQL text; {catalog} and {schema} are replaced by the flags' values", positional=True)
    format: str = option("table", "output format", choices=SQL_FORMATS)
    limit: int | None = option(
        None, "most rows printed (default: 1000 for table, every row for json and csv)", kind=int
    )
    warehouse: str | None = option(
        None, "Databricks SQL warehouse id: run there, not on local Spark (auth: DATABRICKS_HOST/_TOKEN or --profile)"
    )
    profile: str | None = option(None, "~/.databrickscfg profile for --warehouse (default: the SDK's)")
    timeout: int = option(600, "seconds --warehouse waits for each statement before canceling it")


@dataclass(frozen=True)
class Synth:
    out: str = option(MISSING, "folder to write ratings.csv and movies.csv into")
    ratings: int = option(1_000_000, "ratings to generate", kind=int)
    seed: int = option(0, "random seed", kind=int)


LAND, SPLIT, TRAIN, EVALUATE, PROMOTE, RECOMMEND = Land(), Split(), Train(), Evaluate(), Promote(), Recommend()
DEPLOY, SERVE = Deploy(), Serve()
TABLE_LIMIT = 1000  # rows `sql --format table` prints when --limit is not given
REPORT = Report()
REPORT_FETCH_ROWS = 10_000  # rows of a dataset the report reads: its charts' points, its tables' count

# Subcommand -> (help, option groups). Task commands take the common namespace options too.
COMMANDS: dict[str, tuple[str, tuple[type, ...]]] = {
    "land": ("land MovieLens from GroupLens, a .zip or a folder into Delta tables", (Common, Land)),
    "split": ("deterministic train/validation/test splits kept as a Delta table", (Common, Split)),
    "train": ("tune on validation and train the rating and ranking ALS models", (Common, Train)),
    "evaluate": ("evaluate a training run and the quick-start baseline on the test split", (Common, Evaluate)),
    "promote": (
        "the champion gate: promote the run's models if they are not worse than the champion",
        (Common, Promote),
    ),
    "recommend": ("top-N per user from the champion, cold-start fallback and similar movies", (Common, Recommend)),
    "publish": ("create the SQL views from jobs/sql", (Common, Publish)),
    "report": (
        "write the dashboard's datasets as one HTML page into <volume>/reports/<run_id>/report.html",
        (Common, Report),
    ),
    "deploy": (
        "serve the champion recommender on a Model Serving endpoint (locally: load it and answer sample requests)",
        (Common, Deploy),
    ),
    "serve": ("serve the local registry's champion recommender over HTTP until Ctrl-C", (Common, Serve)),
    "app": ("the app people try in a browser, on the local champion and lakehouse, until Ctrl-C", (Common, App)),
    "sql": ("run SQL against the lakehouse, or on a Databricks SQL warehouse (--warehouse)", (Common, Sql)),
    "synth": ("write a MovieLens-shaped synthetic csv release (ml-25m's shape, scaled to --ratings)", (Synth,)),
}


def variables() -> dict[str, Any]:
    """Bundle variable name -> the default this package uses for it."""
    out = {}
    for group in (Land, Split, Train, Evaluate, Promote, Recommend, Deploy):
        for f in fields(group):
            if f.metadata.get("variable"):
                out[f.metadata["variable"]] = f.default
    return out


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")
