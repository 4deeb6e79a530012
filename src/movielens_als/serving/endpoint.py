"""The recommender's Model Serving endpoint: created, or moved to another model version, through databricks-sdk.

An endpoint serves a model *version*: the deploy task resolves ``@champion`` and passes the version in an
:class:`EndpointSpec`. One served entity, scale-to-zero as asked, requests and responses logged to an inference
table in the project's schema, and ``CAN_QUERY`` for the readers group. Every step reads before it writes, so an
endpoint that already serves the spec's version, with its inference table and grant in place, is left untouched.

The inference table is AI Gateway's (``ai_gateway.inference_table_config``): the legacy ``auto_capture_config``
cannot be enabled on any endpoint since 2026-02-20 and is unsupported since 2026-03-20.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import timedelta

from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import DatabricksError, NotFound, OperationFailed, PermissionDenied, Unauthenticated
from databricks.sdk.service.serving import (
    AiGatewayConfig,
    AiGatewayInferenceTableConfig,
    EndpointCoreConfigInput,
    EndpointStateConfigUpdate,
    EndpointStateReady,
    ServedEntityInput,
    ServedModelStateDeployment,
    ServingEndpointAccessControlRequest,
    ServingEndpointDetailed,
    ServingEndpointPermissionLevel,
)

from movielens_als.errors import MovieLensAlsError, first_line
from movielens_als.lakehouse.names import inference_table_prefix

_ENDPOINT_NAME = re.compile(r"[A-Za-z0-9_-]{1,63}")
# Levels that let a group query: CAN_MANAGE includes CAN_QUERY, and a PATCH to CAN_QUERY would lower it.
_QUERYING = (ServingEndpointPermissionLevel.CAN_QUERY, ServingEndpointPermissionLevel.CAN_MANAGE)


def validate_endpoint_name(name: str) -> str:
    """Return ``name`` if Model Serving accepts it (letters, digits, ``-`` and ``_``, 1 to 63), else raise."""
    if not isinstance(name, str) or not _ENDPOINT_NAME.fullmatch(name):
        raise MovieLensAlsError(f"invalid serving endpoint name {name!r}: use 1 to 63 letters, digits, '-' and '_'")
    return name


@dataclass(frozen=True)
class EndpointSpec:
    """What the endpoint must serve, and where its inference table and grant go."""

    name: str
    entity_name: str  # the Unity Catalog model, <catalog>.<schema>.movielens_als_recommender
    entity_version: int
    workload_size: str
    scale_to_zero: bool
    catalog: str
    schema: str
    readers_group: str

    @property
    def served_name(self) -> str:
        """The served entity's name: the model's short name and its version, e.g. ``movielens_als_recommender-3``."""
        return f"{self.entity_name.rsplit('.', 1)[-1]}-{self.entity_version}"

    @property
    def table_prefix(self) -> str:
        """Inference table prefix (the table is ``<prefix>_payload``): the endpoint name as a plain identifier."""
        return inference_table_prefix(self.name)


@dataclass(frozen=True)
class Deployment:
    """What :func:`deploy_endpoint` did to the config (created, updated, unchanged) and the settings it set."""

    endpoint: str
    action: str
    served: str
    fixed: tuple[str, ...] = ()

    def summary(self) -> str:
        if self.action == "unchanged":
            text = f"serving endpoint {self.endpoint} already serves {self.served}: config unchanged"
        else:
            text = f"serving endpoint {self.endpoint} {self.action}: serves {self.served}"
        return text + (f"; set {', '.join(self.fixed)}" if self.fixed else "")


def served_entity(spec: EndpointSpec) -> ServedEntityInput:
    return ServedEntityInput(
        name=spec.served_name,
        entity_name=spec.entity_name,
        entity_version=str(spec.entity_version),
        workload_size=spec.workload_size,
        scale_to_zero_enabled=spec.scale_to_zero,
    )


def inference_table(spec: EndpointSpec) -> AiGatewayInferenceTableConfig:
    return AiGatewayInferenceTableConfig(
        catalog_name=spec.catalog, schema_name=spec.schema, table_name_prefix=spec.table_prefix, enabled=True
    )


def serves(endpoint: ServingEndpointDetailed, spec: EndpointSpec) -> bool:
    """True when the endpoint's live config is exactly the spec's one entity, version, size and scaling."""
    entities = (endpoint.config.served_entities if endpoint.config else None) or []
    have = [(e.entity_name, e.entity_version, e.workload_size, e.scale_to_zero_enabled) for e in entities]
    return have == [(spec.entity_name, str(spec.entity_version), spec.workload_size, spec.scale_to_zero)]


def deploy_endpoint(client: WorkspaceClient, spec: EndpointSpec, timeout: timedelta) -> Deployment:
    """Create the endpoint or update its served entity to the spec's version, waiting up to ``timeout`` for each
    config update; then the inference table and the readers' grant. Failures are one MovieLensAlsError line."""
    validate_endpoint_name(spec.name)
    served = f"{spec.entity_name} version {spec.entity_version}"
    try:
        existing = find(client, spec.name)
        if existing is not None and _updating(existing):  # a new config is refused while one is rolling out
            existing = wait(client, spec.name, timeout)
        if existing is None:
            action, endpoint = "created", create(client, spec, timeout)
        elif serves(existing, spec):
            action, endpoint = "unchanged", existing
        else:
            action, endpoint = "updated", update(client, spec, timeout)
        fixed = []
        if set_inference_table(client, endpoint, spec):
            fixed.append(f"inference table {spec.catalog}.{spec.schema}.{spec.table_prefix}_payload")
        if spec.readers_group and grant_query(client, endpoint, spec.readers_group):
            fixed.append(f"CAN_QUERY for {spec.readers_group}")
    except DatabricksError as exc:
        raise MovieLensAlsError(_api_failure(exc, spec.name, client)) from exc
    return Deployment(spec.name, action, served, tuple(fixed))


def find(client: WorkspaceClient, name: str) -> ServingEndpointDetailed | None:
    try:
        return client.serving_endpoints.get(name)
    except NotFound:
        return None


def create(client: WorkspaceClient, spec: EndpointSpec, timeout: timedelta) -> ServingEndpointDetailed:
    client.serving_endpoints.create(
        spec.name,
        config=EndpointCoreConfigInput(name=spec.name, served_entities=[served_entity(spec)]),
        ai_gateway=AiGatewayConfig(inference_table_config=inference_table(spec)),
        description=f"MovieLens ALS recommendations: the champion of {spec.entity_name}",
    )
    return ready(wait(client, spec.name, timeout))


def update(client: WorkspaceClient, spec: EndpointSpec, timeout: timedelta) -> ServingEndpointDetailed:
    client.serving_endpoints.update_config(spec.name, served_entities=[served_entity(spec)])
    return ready(wait(client, spec.name, timeout))


def wait(client: WorkspaceClient, name: str, timeout: timedelta) -> ServingEndpointDetailed:
    """The endpoint once no config update is in progress; a failed, canceled or too slow update is one line."""
    seen: list[ServingEndpointDetailed] = []
    try:
        return client.serving_endpoints.wait_get_serving_endpoint_not_updating(
            name, timeout=timeout, callback=seen.append
        )
    except OperationFailed:
        state = seen[-1].state.config_update.value
        raise MovieLensAlsError(f"serving endpoint {name}: config update ended {state}{_reason(seen[-1])}") from None
    except TimeoutError:
        last = _reason(seen[-1]) if seen else ""
        raise MovieLensAlsError(
            f"serving endpoint {name}: still updating after {timeout.total_seconds():g} s{last} "
            "(pass --timeout SECONDS to wait longer; the update goes on)"
        ) from None


def ready(endpoint: ServingEndpointDetailed) -> ServingEndpointDetailed:
    if endpoint.state is None or endpoint.state.ready != EndpointStateReady.READY:
        shown = endpoint.state.ready.value if endpoint.state and endpoint.state.ready else "no state"
        raise MovieLensAlsError(
            f"serving endpoint {endpoint.name}: not ready after its update ({shown}){_reason(endpoint)}"
        )
    return endpoint


def set_inference_table(client: WorkspaceClient, endpoint: ServingEndpointDetailed, spec: EndpointSpec) -> bool:
    """Point the AI Gateway inference table at the spec's schema unless it is there; keep the other gateway settings."""
    gateway = endpoint.ai_gateway or AiGatewayConfig()
    want, have = inference_table(spec), gateway.inference_table_config
    if have == want:
        return False
    settings = {
        "fallback_config": gateway.fallback_config,
        "guardrails": gateway.guardrails,
        "rate_limits": gateway.rate_limits,
        "usage_tracking_config": gateway.usage_tracking_config,
    }
    keep = {key: value for key, value in settings.items() if value}
    api = client.serving_endpoints
    if have is not None and have.enabled:  # the API moves a table only after it was disabled
        api.put_ai_gateway(spec.name, inference_table_config=replace(have, enabled=False), **keep)
    api.put_ai_gateway(spec.name, inference_table_config=want, **keep)
    return True


def grant_query(client: WorkspaceClient, endpoint: ServingEndpointDetailed, group: str) -> bool:
    """Give ``group`` CAN_QUERY unless it can already query (directly or inherited); True when granted."""
    api = client.serving_endpoints
    for entry in api.get_permissions(endpoint.id).access_control_list or []:
        if entry.group_name == group and any(p.permission_level in _QUERYING for p in entry.all_permissions or []):
            return False
    request = ServingEndpointAccessControlRequest(
        group_name=group, permission_level=ServingEndpointPermissionLevel.CAN_QUERY
    )
    api.update_permissions(endpoint.id, access_control_list=[request])
    return True


def _updating(endpoint: ServingEndpointDetailed) -> bool:
    return endpoint.state is not None and endpoint.state.config_update == EndpointStateConfigUpdate.IN_PROGRESS


def _reason(endpoint: ServingEndpointDetailed) -> str:
    """``: <deployment state message>`` of the first served entity not ready, pending config first; else ``""``."""
    for config in (endpoint.pending_config, endpoint.config):
        for entity in (config.served_entities if config else None) or []:
            state = entity.state
            if state and state.deployment != ServedModelStateDeployment.DEPLOYMENT_READY:
                shown = state.deployment.value if state.deployment else "no deployment state"
                message = state.deployment_state_message and first_line(state.deployment_state_message)
                return f": {entity.name} {shown}" + (f" ({message})" if message else "")
    return ""


_API_FAILURES = (
    (Unauthenticated, "the credentials were rejected"),
    (PermissionDenied, "permission denied"),
    (NotFound, "not found"),
)


def _api_failure(exc: DatabricksError, name: str, client: WorkspaceClient) -> str:
    cause = next((text for kind, text in _API_FAILURES if isinstance(exc, kind)), "request failed")
    code = f" [{exc.error_code}]" if exc.error_code else ""
    return f"serving endpoint {name} on {client.config.host}: {cause}{code}: {first_line(exc)}"
