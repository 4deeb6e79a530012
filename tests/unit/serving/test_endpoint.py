"""The serving endpoint: the real Databricks SDK against a local serving-endpoints and permissions REST API."""

from __future__ import annotations

import copy
import re
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler

import pytest
from databricks.sdk import WorkspaceClient

from movielens_als.errors import MovieLensAlsError
from movielens_als.serving.endpoint import Deployment, EndpointSpec, deploy_endpoint, validate_endpoint_name
from tests.fake_api import isolate_databricks_config, json_handler, running

ENDPOINTS = "/api/2.0/serving-endpoints"
PERMISSIONS = "/api/2.0/permissions/serving-endpoints"
NAME = "movielens-als"
MODEL = "main.movielens.movielens_als_recommender"
TIMEOUT = timedelta(seconds=30)
SPEC = EndpointSpec(
    name=NAME,
    entity_name=MODEL,
    entity_version=3,
    workload_size="Small",
    scale_to_zero=True,
    catalog="main",
    schema="movielens",
    readers_group="account users",
)
ENTITY_V3 = {
    "name": "movielens_als_recommender-3",
    "entity_name": MODEL,
    "entity_version": "3",
    "workload_size": "Small",
    "scale_to_zero_enabled": True,
}
TABLE = {"catalog_name": "main", "schema_name": "movielens", "table_name_prefix": "movielens_als", "enabled": True}
READY = ("READY", "NOT_UPDATING")
QUERY_GRANT = {"group_name": "account users", "permission_level": "CAN_QUERY"}


def entity(version: int, size: str = "Small") -> dict:
    return {
        "name": f"movielens_als_recommender-{version}",
        "entity_name": MODEL,
        "entity_version": str(version),
        "workload_size": size,
        "scale_to_zero_enabled": True,
    }


def acl(group: str, level: str, inherited: bool = False) -> dict:
    return {"group_name": group, "all_permissions": [{"permission_level": level, "inherited": inherited}]}


class FakeServing:
    """Serving endpoints and their permissions, as the REST API answers them.

    A create or config update leaves the change pending; each following GET of the endpoint takes the next
    (ready, config_update) pair of ``rollout`` (the last repeats). NOT_UPDATING applies the pending config,
    UPDATE_FAILED marks its entity DEPLOYMENT_FAILED with ``failure`` as the message. ``reject`` answers one
    (method, path) with (HTTP status, error body).
    """

    def __init__(self) -> None:
        self.endpoints: dict[str, dict] = {}
        self.acls: dict[str, list[dict]] = {}
        self.rollout: list[tuple[str, str]] = [READY]
        self.failure = "Container build failed: pip could not install numpy==9\nTraceback (most recent call last):"
        self.reject: dict[tuple[str, str], tuple[int, dict]] = {}
        self.requests: list[tuple[str, str, dict | None]] = []
        self.host = ""
        self._pending: dict[str, list[tuple[str, str]]] = {}
        self._lock = threading.Lock()

    def add(self, version: int, *, table: dict | None = None, grants: list[dict] | None = None) -> None:
        """An endpoint that serves ``version`` already, with its inference table and grants."""
        self.endpoints[NAME] = {
            "name": NAME,
            "id": "ep-0",
            "state": {"ready": "READY", "config_update": "NOT_UPDATING"},
            "config": {"config_version": 1, "served_entities": [self._deployed(entity(version))]},
            "ai_gateway": {"inference_table_config": TABLE if table is None else table},
        }
        self.acls["ep-0"] = [acl("account users", "CAN_QUERY")] if grants is None else grants

    @staticmethod
    def _deployed(served: dict, deployment: str = "DEPLOYMENT_READY", message: str = "") -> dict:
        return {**served, "state": {"deployment": deployment, "deployment_state_message": message}}

    def answer(self, method: str, path: str, body: dict | None) -> tuple[int, dict]:
        with self._lock:
            if not path.startswith("/api/"):  # the SDK's host metadata probe
                return 404, {"error_code": "NOT_FOUND", "message": path}
            self.requests.append((method, path, copy.deepcopy(body)))
            if (method, path) in self.reject:
                return self.reject[(method, path)]
            if method == "POST" and path == ENDPOINTS:
                return 200, self._create(body)
            if m := re.fullmatch(rf"{ENDPOINTS}/([\w-]+)(/config|/ai-gateway)?", path):
                if m[1] not in self.endpoints:
                    return 404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": f"Endpoint {m[1]} not found."}
                endpoint = self.endpoints[m[1]]
                if method == "GET" and not m[2]:
                    return 200, self._poll(endpoint)
                if method == "PUT" and m[2] == "/config":
                    return 200, self._change(endpoint, body["served_entities"])
                if method == "PUT" and m[2] == "/ai-gateway":
                    endpoint["ai_gateway"] = body
                    return 200, body
            if m := re.fullmatch(rf"{PERMISSIONS}/([\w-]+)", path):
                entries = self.acls.setdefault(m[1], [])
                if method == "PATCH":
                    for request in body["access_control_list"]:
                        entries.append(acl(request["group_name"], request["permission_level"]))
                return 200, {"object_id": f"/serving-endpoints/{m[1]}", "access_control_list": entries}
            return 404, {"error_code": "NOT_FOUND", "message": f"no such endpoint {method} {path}"}

    def _create(self, body: dict) -> dict:
        endpoint = {"name": body["name"], "id": f"ep-{len(self.endpoints) + 1}", "state": {"ready": "NOT_READY"}}
        endpoint["ai_gateway"] = body.get("ai_gateway", {})
        self.endpoints[body["name"]] = endpoint
        return self._change(endpoint, body["config"]["served_entities"])

    def _change(self, endpoint: dict, served: list[dict]) -> dict:
        pending = [self._deployed(e, "DEPLOYMENT_CREATING", "Creating the model environment.") for e in served]
        endpoint["pending_config"] = {"served_entities": pending}
        endpoint["state"] = {**endpoint["state"], "config_update": "IN_PROGRESS"}
        self._pending[endpoint["name"]] = list(self.rollout)
        return endpoint

    def _poll(self, endpoint: dict) -> dict:
        steps = self._pending.get(endpoint["name"])
        if steps:
            ready, update = steps.pop(0) if len(steps) > 1 else steps[0]
            endpoint["state"] = {"ready": ready, "config_update": update}
            if update == "NOT_UPDATING":
                served = endpoint.pop("pending_config")["served_entities"]
                endpoint["config"] = {"served_entities": [self._deployed(e) for e in served]}
                del self._pending[endpoint["name"]]
            elif update == "UPDATE_FAILED":
                failed = [
                    self._deployed(e, "DEPLOYMENT_FAILED", self.failure)
                    for e in endpoint["pending_config"]["served_entities"]
                ]
                endpoint["pending_config"]["served_entities"] = failed
                del self._pending[endpoint["name"]]
        return endpoint

    def writes(self) -> list[tuple[str, str, dict | None]]:
        return [r for r in self.requests if r[0] != "GET"]

    def handler(self) -> type[BaseHTTPRequestHandler]:
        return json_handler(self)


@pytest.fixture(autouse=True)
def no_databricks_config(monkeypatch, tmp_path):
    isolate_databricks_config(monkeypatch, tmp_path)


@pytest.fixture
def server():
    with running(FakeServing()) as fake:
        yield fake


@pytest.fixture
def client(server) -> WorkspaceClient:
    return WorkspaceClient(host=server.host, token="x")


def test_first_deploy_creates_the_endpoint_with_its_entity_inference_table_and_query_grant(server, client):
    done = deploy_endpoint(client, SPEC, TIMEOUT)
    assert done == Deployment(NAME, "created", f"{MODEL} version 3", ("CAN_QUERY for account users",))
    assert server.writes() == [
        (
            "POST",
            ENDPOINTS,
            {
                "name": "movielens-als",
                "config": {
                    "name": "movielens-als",
                    "served_entities": [
                        {
                            "name": "movielens_als_recommender-3",
                            "entity_name": "main.movielens.movielens_als_recommender",
                            "entity_version": "3",
                            "workload_size": "Small",
                            "scale_to_zero_enabled": True,
                        }
                    ],
                },
                "ai_gateway": {
                    "inference_table_config": {
                        "catalog_name": "main",
                        "schema_name": "movielens",
                        "table_name_prefix": "movielens_als",
                        "enabled": True,
                    }
                },
                "description": "MovieLens ALS recommendations: the champion of "
                "main.movielens.movielens_als_recommender",
            },
        ),
        ("PATCH", f"{PERMISSIONS}/ep-1", {"access_control_list": [QUERY_GRANT]}),
    ]
    # Looked up (absent), polled until the config was live, then its permissions read before the grant.
    assert [(m, p) for m, p, _ in server.requests if m == "GET"] == [
        ("GET", f"{ENDPOINTS}/movielens-als"),
        ("GET", f"{ENDPOINTS}/movielens-als"),
        ("GET", f"{PERMISSIONS}/ep-1"),
    ]
    assert done.summary() == (
        f"serving endpoint movielens-als created: serves {MODEL} version 3; set CAN_QUERY for account users"
    )


def test_a_new_champion_version_updates_the_served_entity_and_nothing_else(server, client):
    server.add(version=2)
    done = deploy_endpoint(client, SPEC, TIMEOUT)
    assert done == Deployment(NAME, "updated", f"{MODEL} version 3")
    assert server.writes() == [("PUT", f"{ENDPOINTS}/movielens-als/config", {"served_entities": [ENTITY_V3]})]
    assert server.endpoints[NAME]["config"]["served_entities"][0]["entity_version"] == "3"


def test_a_new_workload_size_for_the_same_version_updates_too(server, client):
    server.add(version=3)
    big = EndpointSpec(**{**SPEC.__dict__, "workload_size": "Medium"})
    assert deploy_endpoint(client, big, TIMEOUT).action == "updated"
    [(_, _, body)] = server.writes()
    assert body == {"served_entities": [{**ENTITY_V3, "workload_size": "Medium"}]}


def test_the_version_already_served_changes_nothing(server, client):
    server.add(version=3)
    done = deploy_endpoint(client, SPEC, TIMEOUT)
    assert done == Deployment(NAME, "unchanged", f"{MODEL} version 3")
    assert server.writes() == []
    assert [p for _, p, _ in server.requests] == [f"{ENDPOINTS}/movielens-als", f"{PERMISSIONS}/ep-0"]
    assert done.summary() == f"serving endpoint movielens-als already serves {MODEL} version 3: config unchanged"


@pytest.mark.parametrize("level", ["CAN_MANAGE", "CAN_QUERY"])
def test_a_group_that_can_query_already_is_left_alone_even_when_inherited(server, client, level):
    server.add(version=3, grants=[acl("account users", level, inherited=True)])
    assert deploy_endpoint(client, SPEC, TIMEOUT).fixed == ()
    assert server.writes() == []


def test_an_inference_table_elsewhere_is_moved_and_a_missing_grant_added_keeping_other_gateway_settings(server, client):
    elsewhere = {"catalog_name": "main", "schema_name": "old", "table_name_prefix": "movielens_als", "enabled": True}
    server.add(version=3, table=elsewhere, grants=[acl("admins", "CAN_MANAGE"), acl("account users", "CAN_VIEW")])
    server.endpoints[NAME]["ai_gateway"]["usage_tracking_config"] = {"enabled": True}
    done = deploy_endpoint(client, SPEC, TIMEOUT)
    assert done.action == "unchanged"
    assert done.fixed == ("inference table main.movielens.movielens_als_payload", "CAN_QUERY for account users")
    gateway = f"{ENDPOINTS}/movielens-als/ai-gateway"
    assert server.writes() == [
        (
            "PUT",
            gateway,
            {"inference_table_config": {**elsewhere, "enabled": False}, "usage_tracking_config": {"enabled": True}},
        ),
        ("PUT", gateway, {"inference_table_config": TABLE, "usage_tracking_config": {"enabled": True}}),
        ("PATCH", f"{PERMISSIONS}/ep-0", {"access_control_list": [QUERY_GRANT]}),
    ]


def test_an_update_in_progress_is_waited_for_before_the_new_config_is_sent(server, client):
    server.add(version=1)
    server.rollout = [("READY", "IN_PROGRESS"), READY]
    server._change(server.endpoints[NAME], [entity(2)])  # someone else's rollout of version 2, seen once in progress
    server.rollout = [READY]
    deploy_endpoint(client, SPEC, TIMEOUT)
    assert [(m, p) for m, p, _ in server.requests][:3] == [
        ("GET", f"{ENDPOINTS}/movielens-als"),
        ("GET", f"{ENDPOINTS}/movielens-als"),
        ("PUT", f"{ENDPOINTS}/movielens-als/config"),
    ]
    assert server.endpoints[NAME]["config"]["served_entities"][0]["entity_version"] == "3"


@pytest.mark.parametrize(
    ("rollout", "message"),
    [
        (
            ("NOT_READY", "UPDATE_FAILED"),
            "serving endpoint movielens-als: config update ended UPDATE_FAILED: movielens_als_recommender-3 "
            "DEPLOYMENT_FAILED (Container build failed: pip could not install numpy==9)",
        ),
        (
            ("NOT_READY", "NOT_UPDATING"),
            "serving endpoint movielens-als: not ready after its update (NOT_READY)",
        ),
    ],
)
def test_a_failed_or_not_ready_rollout_is_one_line_and_grants_nothing(server, client, rollout, message):
    server.rollout = [rollout]
    with pytest.raises(MovieLensAlsError) as info:
        deploy_endpoint(client, SPEC, TIMEOUT)
    assert str(info.value) == message
    assert [m for m, _, _ in server.writes()] == ["POST"]


def test_a_rollout_still_in_progress_at_the_timeout_is_one_line(server, client):
    server.add(version=2)
    server.rollout = [("READY", "IN_PROGRESS")]
    with pytest.raises(MovieLensAlsError) as info:
        deploy_endpoint(client, SPEC, timedelta(seconds=0.5))
    assert str(info.value) == (
        "serving endpoint movielens-als: still updating after 0.5 s: movielens_als_recommender-3 DEPLOYMENT_CREATING "
        "(Creating the model environment.) (pass --timeout SECONDS to wait longer; the update goes on)"
    )


def test_permission_denied_from_the_api_is_one_line_naming_endpoint_host_and_cause(server, client):
    message = "User does not have permission to create serving endpoints.\nRequest id: 1234"
    server.reject[("POST", ENDPOINTS)] = (403, {"error_code": "PERMISSION_DENIED", "message": message})
    with pytest.raises(MovieLensAlsError) as info:
        deploy_endpoint(client, SPEC, TIMEOUT)
    assert str(info.value) == (
        f"serving endpoint movielens-als on {server.host}: permission denied [PERMISSION_DENIED]: "
        "User does not have permission to create serving endpoints."
    )


@pytest.mark.parametrize("name", ["movielens-als", "movielens_als_recommender", "A1", "x" * 63])
def test_endpoint_names_of_letters_digits_dash_and_underscore_up_to_63_are_valid(name):
    assert validate_endpoint_name(name) == name


@pytest.mark.parametrize("name", ["", "x" * 64, "movielens.als", "movielens als", "movielens/als", "filmé", None])
def test_other_endpoint_names_are_refused_before_any_request(server, client, name):
    with pytest.raises(MovieLensAlsError, match=r"^invalid serving endpoint name .*: use 1 to 63 letters"):
        deploy_endpoint(client, EndpointSpec(**{**SPEC.__dict__, "name": name}), TIMEOUT)
    assert server.requests == []
