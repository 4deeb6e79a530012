"""MLflow tracking and model registry: where train logs its run and models, and where the champion lives.

On Databricks the workspace's tracking server and Unity Catalog's registry (``databricks-uc``);
locally a SQLite database under the lakehouse home (``sqlite:///<home>/mlflow.db``, artifacts in
``<home>/mlflow-artifacts``), unless ``MLFLOW_TRACKING_URI`` / ``MLFLOW_REGISTRY_URI`` say otherwise.
Models are registered under Unity Catalog's three-level names, ``<catalog>.<schema>.movielens_als_ranking``
and ``..._rating``, locally too. Each is a pyfunc model (:mod:`pyfunc`) whose artifacts are factor
tables as Parquet, so it loads without Spark, and ``recommend`` reads the same tables into Spark.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from movielens_als.columns import ITEM, PREDICTION, USER
from movielens_als.errors import MovieLensAlsError
from movielens_als.lakehouse.names import Namespace
from movielens_als.lakehouse.spark import lakehouse_home, on_databricks
from movielens_als.ml.pyfunc import RankingPyfunc, RatingPyfunc

RANKING_MODEL, RATING_MODEL, RECOMMENDER_MODEL = "ranking", "rating", "recommender"
CHAMPION, CHALLENGER = "champion", "challenger"
LOCAL_EXPERIMENT = "movielens_als"
SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("long", USER), ColSpec("long", ITEM)]), outputs=Schema([ColSpec("double", PREDICTION)])
)
# The pyfunc models read Parquet with pandas: what a serving endpoint needs to install, stated, not inferred.
PIP_REQUIREMENTS = ["mlflow-skinny>=3.17,<4", "pandas>=2.0,<3", "pyarrow>=15", "numpy"]


@dataclass(frozen=True)
class Version:
    name: str
    version: int
    run_id: str
    tags: dict[str, str]


def model_name(namespace: Namespace, kind: str) -> str:
    """``<catalog>.<schema>.movielens_als_<kind>``: Unity Catalog's name, the local registry's too."""
    return f"{namespace.catalog}.{namespace.schema}.movielens_als_{kind}"


# The MLflow stores the user chose (environment), as the process found them: not what an earlier configure set.
_EXPLICIT = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}


def configure(home: str | os.PathLike | None = None, experiment: str | None = None) -> str:
    """Point MLflow at the workspace (Databricks) or the lakehouse's SQLite store; return the experiment id."""
    # Tasks print one line each: MLflow's artifact progress bars and INFO records drown them. Its warning
    # about pickling ``python_model`` objects does not apply: the pickled classes are this package's.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("mlflow.pyfunc").setLevel(logging.ERROR)
    if on_databricks():
        mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", "databricks"))
        mlflow.set_registry_uri(os.environ.get("MLFLOW_REGISTRY_URI", "databricks-uc"))
        name = experiment or f"/Shared/{LOCAL_EXPERIMENT}"
        artifacts = None
    else:
        root = lakehouse_home(home)
        root.mkdir(parents=True, exist_ok=True)
        local = f"sqlite:///{root / 'mlflow.db'}"
        tracking = _EXPLICIT["MLFLOW_TRACKING_URI"] or local
        mlflow.set_tracking_uri(tracking)
        mlflow.set_registry_uri(_EXPLICIT["MLFLOW_REGISTRY_URI"] or tracking)
        # MLflow exports what it is given to the environment: a process this one starts (a CLI command with another
        # --home) would take this home's store for a URI its user chose.
        for name, value in _EXPLICIT.items():
            if value is None:
                os.environ.pop(name, None)
        # A workspace path (the bundle's experiment) names nothing in a local store.
        name = experiment if experiment and not experiment.startswith("/") else LOCAL_EXPERIMENT
        # A SQLite store would otherwise put artifacts in ./mlruns of whatever folder the command ran in.
        artifacts = (root / "mlflow-artifacts").as_uri()
    found = mlflow.get_experiment_by_name(name)
    experiment_id = found.experiment_id if found else mlflow.create_experiment(name, artifact_location=artifacts)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


@contextmanager
def tracked_run(run_name: str, tags: dict[str, str]) -> Iterator[mlflow.ActiveRun]:
    with mlflow.start_run(run_name=run_name, tags=tags) as run:
        yield run


def log_model(
    namespace: Namespace,
    kind: str,
    save: Callable[[Path], None],
    example: pd.DataFrame,
    python_model: mlflow.pyfunc.PythonModel | None = None,
    signature: ModelSignature = SIGNATURE,
    code_paths: list[str] | None = None,
) -> int:
    """Log a model to the active run (``save`` writes its files) and register it; the new version is ``challenger``.

    ``python_model`` defaults to the ranking or rating pyfunc of ``kind``; ``code_paths`` ship with the model, for
    a server that does not have this package installed."""
    python_model = python_model or (RankingPyfunc() if kind == RANKING_MODEL else RatingPyfunc())
    name = model_name(namespace, kind)
    with tempfile.TemporaryDirectory(prefix=f"movielens_als_{kind}_") as tmp:
        folder = Path(tmp) / "model"  # the artifact keeps this name: download() finds it under artifacts/model
        save(folder)
        info = mlflow.pyfunc.log_model(
            name=f"{kind}_model", python_model=python_model, artifacts={"model": str(folder)}, signature=signature,
            input_example=example, pip_requirements=PIP_REQUIREMENTS, registered_model_name=name, code_paths=code_paths,
        )  # fmt: skip
    version = int(info.registered_model_version)
    MlflowClient().set_registered_model_alias(name, CHALLENGER, version)
    return version


def version_by_alias(namespace: Namespace, kind: str, alias: str) -> Version | None:
    name = model_name(namespace, kind)
    try:
        found = MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    return Version(name, int(found.version), found.run_id, dict(found.tags))


def fail_runs(run_ids: list[str]) -> None:
    """End as FAILED the MLflow runs that train runs killed mid-way (kill -9, lost driver) left RUNNING."""
    client = MlflowClient()
    for run_id in run_ids:  # validated ids: letters, digits, '_' and '-'
        query = f"tags.`movielens_als.run_id` = '{run_id}' and attributes.status = 'RUNNING'"
        for run in mlflow.search_runs(search_all_experiments=True, filter_string=query, output_format="list"):
            client.set_terminated(run.info.run_id, "FAILED")


def set_alias(namespace: Namespace, kind: str, alias: str, version: int) -> None:
    MlflowClient().set_registered_model_alias(model_name(namespace, kind), alias, version)


def delete_alias(namespace: Namespace, kind: str, alias: str) -> None:
    """Remove ``alias`` from a registered model; nothing to do where the model or the alias does not exist."""
    with suppress(MlflowException):
        MlflowClient().delete_registered_model_alias(model_name(namespace, kind), alias)


def tag_version(namespace: Namespace, kind: str, version: int, tags: dict[str, str]) -> None:
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(model_name(namespace, kind), str(version), key, value)


def download(namespace: Namespace, kind: str, version: int) -> Path:
    """The saved model folder of a registered version, downloaded to a local temporary folder."""
    name = model_name(namespace, kind)
    target = Path(tempfile.mkdtemp(prefix=f"movielens_als_{kind}_"))
    try:
        root = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(target))
    except MlflowException as exc:
        raise MovieLensAlsError(f"model {name} version {version} cannot be loaded: {exc.message}") from None
    return Path(root) / "artifacts" / "model"
