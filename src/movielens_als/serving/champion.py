"""The registered recommender: which version is champion, and that version loaded as MLflow loads it to serve."""

from __future__ import annotations

import mlflow
from mlflow.exceptions import MlflowException

from movielens_als.errors import MovieLensAlsError
from movielens_als.lakehouse.names import Namespace
from movielens_als.ml.registry import CHAMPION, RECOMMENDER_MODEL, model_name, version_by_alias


def champion_version(namespace: Namespace) -> int:
    """The recommender version ``champion`` points at, or one error line saying how to get one."""
    found = version_by_alias(namespace, RECOMMENDER_MODEL, CHAMPION)
    if found is None:
        raise MovieLensAlsError(
            f"no champion recommender model {model_name(namespace, RECOMMENDER_MODEL)}: "
            "run train, evaluate and promote first (`movielens-als run`)"
        )
    return found.version


def load_version(namespace: Namespace, version: int) -> mlflow.pyfunc.PyFuncModel:
    """A registered recommender version as a pyfunc model, loaded by the same code a scoring server runs."""
    uri = f"models:/{model_name(namespace, RECOMMENDER_MODEL)}/{version}"
    try:
        return mlflow.pyfunc.load_model(uri)
    except MlflowException as exc:
        raise MovieLensAlsError(f"model {uri} cannot be loaded: {exc.message}") from None
