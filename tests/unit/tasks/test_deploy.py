"""deploy: @champion resolved to a version; locally a load-and-answer check, on Databricks the serving endpoint."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from movielens_als.errors import MovieLensAlsError
from movielens_als.lakehouse.names import Namespace
from movielens_als.ml import registry
from movielens_als.serving import champion
from movielens_als.serving.endpoint import Deployment, EndpointSpec
from movielens_als.tasks import deploy as task

NS = Namespace("main", "movielens")
MODEL = "main.movielens.movielens_als_recommender"
REQUESTS = pd.DataFrame(
    [
        {"user_id": 196, "movie_ids": None, "ratings": None, "n": 2},
        {"user_id": None, "movie_ids": [50, 172], "ratings": [5, 4], "n": 2},
    ]
)
ANSWER_COLUMNS = ["request", "rank", "movie_id", "title", "score", "source"]


class FakeModel:
    """Answers two rows for each request position in ``answered``."""

    def __init__(self, answered: tuple[int, ...]) -> None:
        self.answered = answered
        self.asked: pd.DataFrame | None = None

    def predict(self, requests: pd.DataFrame) -> pd.DataFrame:
        self.asked = requests
        sources = {0: "personal", 1: "folded"}
        rows = [(i, r, 100 + r, f"Movie {100 + r}", 1.0 / r, sources[i]) for i in self.answered for r in (1, 2)]
        return pd.DataFrame(rows, columns=ANSWER_COLUMNS)


@pytest.fixture
def asked(monkeypatch) -> list:
    """The registry's recommender champion is version 3 of MODEL; the lookups made are recorded."""
    calls = []

    def by_alias(namespace, kind, alias):
        calls.append((namespace, kind, alias))
        return registry.Version(MODEL, 3, "run-1", {})

    monkeypatch.setattr(champion, "version_by_alias", by_alias)
    return calls


def install_model(monkeypatch, model: FakeModel | None) -> list:
    """The champion loads as ``model`` (None: loading fails the test) and asks REQUESTS; loads are recorded."""
    loads = []

    def load_version(namespace, version):
        if model is None:
            raise AssertionError("the model was loaded")
        loads.append((namespace, version))
        return model

    monkeypatch.setattr(task, "load_version", load_version)
    monkeypatch.setattr(task, "sample_requests", lambda loaded: REQUESTS)
    return loads


@pytest.fixture
def no_workspace(monkeypatch):
    def refuse(**kwargs):
        raise AssertionError("a WorkspaceClient was made")

    monkeypatch.setattr(task, "on_databricks", lambda: False)
    monkeypatch.setattr(task, "WorkspaceClient", refuse)


def test_locally_the_champion_answers_every_sample_request_and_no_endpoint_is_created(monkeypatch, asked, no_workspace):
    model = FakeModel(answered=(0, 1))
    loads = install_model(monkeypatch, model)
    result = task.deploy(NS, endpoint_name="movielens-als-dev")
    assert asked == [(NS, "recommender", "champion")]
    assert loads == [(NS, 3)]
    assert model.asked is REQUESTS
    assert {k: v for k, v in result.details.items() if k != "seconds"} == {
        "version": 3,
        "requests": 2,
        "rows": 4,
        "sources": "folded,personal",
    }
    assert result.headline == (
        "champion main.movielens.movielens_als_recommender version 3 loaded and answered 2 requests in process; "
        "no endpoint created locally (on Databricks this task deploys serving endpoint movielens-als-dev)"
    )


def test_locally_a_request_left_without_rows_fails_naming_it(monkeypatch, asked, no_workspace):
    install_model(monkeypatch, FakeModel(answered=(0,)))
    with pytest.raises(MovieLensAlsError) as info:
        task.deploy(NS)
    text = str(info.value)
    assert text.startswith(
        "champion main.movielens.movielens_als_recommender version 3 returned no recommendations for request 1: "
    )
    assert "'movie_ids': [50, 172]" in text and "\n" not in text


def test_without_a_champion_it_says_to_run_train_and_promote(monkeypatch, no_workspace):
    install_model(monkeypatch, None)
    monkeypatch.setattr(champion, "version_by_alias", lambda namespace, kind, alias: None)
    with pytest.raises(MovieLensAlsError, match=rf"^no champion recommender model {MODEL}: run train, evaluate and"):
        task.deploy(NS)


@pytest.mark.parametrize(("option", "value"), [("endpoint_name", "movielens.als"), ("timeout", 0)])
def test_bad_options_fail_before_the_registry_is_asked(monkeypatch, asked, no_workspace, option, value):
    install_model(monkeypatch, None)
    with pytest.raises(MovieLensAlsError, match=r"^invalid "):
        task.deploy(NS, **{option: value})
    assert asked == []


def test_on_databricks_the_champion_version_goes_to_the_endpoint_and_nothing_is_loaded(monkeypatch, asked):
    install_model(monkeypatch, None)
    calls = []

    def deploy_endpoint(client, spec, timeout):
        calls.append((client, spec, timeout))
        return Deployment("movielens-als", "updated", f"{MODEL} version 3")

    monkeypatch.setattr(task, "on_databricks", lambda: True)
    monkeypatch.setattr(task, "WorkspaceClient", lambda **kwargs: ("client", kwargs["product"]))
    monkeypatch.setattr(task, "deploy_endpoint", deploy_endpoint)
    result = task.deploy(NS, workload_size="Medium", scale_to_zero=False, readers_group="movie fans", timeout=600)
    assert calls == [
        (
            ("client", "movielens-als"),
            EndpointSpec(
                name="movielens-als",
                entity_name="main.movielens.movielens_als_recommender",
                entity_version=3,
                workload_size="Medium",
                scale_to_zero=False,
                catalog="main",
                schema="movielens",
                readers_group="movie fans",
            ),
            timedelta(seconds=600),
        )
    ]
    assert result.details == {"endpoint": "movielens-als", "version": 3, "action": "updated"}
    assert result.headline == (
        "serving endpoint movielens-als updated: serves main.movielens.movielens_als_recommender version 3"
    )
