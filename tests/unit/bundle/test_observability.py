"""The dashboard, the serving_health alert and the opt-in table monitors as bundle resources: the CLI's JSON schema,
the databricks-bundles classes, each target's catalog and schema, and the alert's SQL run against serving_health."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import regex
import yaml
from databricks.bundles.alerts import Alert
from databricks.bundles.dashboards import Dashboard
from databricks.bundles.quality_monitors import QualityMonitor
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match

from movielens_als.bundle.config import load_bundle, merge, target_config
from movielens_als.bundle.resolver import Resolver
from movielens_als.lakehouse import tables
from movielens_als.report.dashboard import default_dashboard_path
from movielens_als.serving.health import SERVING_HEALTH, Thresholds, alerts
from tests.optional import unavailable

REPO = Path(__file__).resolve().parents[3]
TARGETS = ("dev", "prod")
OPT_IN = REPO / "resources/opt_in/quality_monitors.yml"
ENABLE = "resources/opt_in/*.yml"  # what the README and the file say to add to `include`
SCHEMA_REF = "${var.catalog}.${resources.schemas.movielens.name}"


@pytest.fixture(scope="module")
def bundle() -> dict:
    return load_bundle(REPO)


@pytest.fixture(scope="module")
def with_monitors(bundle) -> dict:
    """The bundle as deployed once the opt-in include is added."""
    return merge(bundle, yaml.safe_load(OPT_IN.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def schema_validator():
    path = Path(
        os.environ.get("DATABRICKS_BUNDLE_SCHEMA") or REPO.parent / "shared/databricks/bundle-config.schema.json"
    )
    if not path.is_file():
        unavailable(f"bundle schema not at {path} (set DATABRICKS_BUNDLE_SCHEMA; CI has ../shared beside the repo)")

    def pattern(validator, expected, instance, _schema):  # \p{L} in the CLI's patterns: Python's re lacks it
        if validator.is_type(instance, "string") and not regex.search(expected, instance):
            yield ValidationError(f"{instance!r} does not match {expected!r}")

    return validators.extend(Draft202012Validator, {"pattern": pattern})(json.loads(path.read_text(encoding="utf-8")))


def resolved(config: dict, target: str, section: str, key: str) -> dict:
    merged = target_config(config, target)
    return Resolver(merged, user="someone@example.com", target=target).resolve(merged["resources"][section][key])


# ---------------------------------------------------------------- opt-in monitors


def test_monitors_are_opt_in_and_the_documented_include_enables_them(bundle):
    includes = yaml.safe_load((REPO / "databricks.yml").read_text())["include"]
    assert not any(OPT_IN in REPO.glob(pattern) for pattern in includes)
    assert "quality_monitors" not in bundle["resources"]
    assert OPT_IN in REPO.glob(ENABLE) and f"`- {ENABLE}`" in OPT_IN.read_text()
    assert {"dashboards", "alerts"} <= set(bundle["resources"])


# ---------------------------------------------------------------- the CLI's schema and the typed classes


@pytest.mark.parametrize("target", TARGETS)
def test_dashboard_alert_and_monitors_validate_against_cli_schema(with_monitors, schema_validator, target):
    errors = list(schema_validator.iter_errors(target_config(with_monitors, target)))
    assert not errors, best_match(errors).message


def test_schema_check_points_at_a_misspelled_alert_or_monitor_field(with_monitors, schema_validator):
    alert = copy.deepcopy(with_monitors)
    evaluation = alert["resources"]["alerts"]["serving_health"]["evaluation"]
    evaluation["comparison"] = evaluation.pop("comparison_operator")
    assert best_match(schema_validator.iter_errors(alert)).json_path == "$.resources.alerts.serving_health.evaluation"
    monitor = copy.deepcopy(with_monitors)
    monitor["resources"]["quality_monitors"]["ratings"]["snapshots"] = {}
    assert best_match(schema_validator.iter_errors(monitor)).json_path == "$.resources.quality_monitors.ratings"


@pytest.mark.parametrize("target", TARGETS)
def test_resources_load_into_databricks_bundles_classes(with_monitors, target):
    dashboard = Dashboard.from_dict(resolved(with_monitors, target, "dashboards", "movielens_als_dashboard"))
    assert (dashboard.dataset_catalog, dashboard.dataset_schema) == ("main", "movielens")
    alert = Alert.from_dict(resolved(with_monitors, target, "alerts", "serving_health"))
    assert "`main`.`movielens`.serving_health" in alert.query_text
    for name, spec in with_monitors["resources"]["quality_monitors"].items():
        assert QualityMonitor.from_dict(copy.deepcopy(spec)).table_name.endswith(f".{name}")
    prod = resolved(with_monitors, "prod", "quality_monitors", "user_recommendations")
    assert QualityMonitor.from_dict(prod).assets_dir.startswith("/Workspace/Shared/.bundle/movielens_als/prod/")


def test_the_classes_refuse_a_misspelled_field(with_monitors):
    spec = copy.deepcopy(with_monitors["resources"]["alerts"]["serving_health"])
    spec["query"] = spec.pop("query_text")
    with pytest.raises(ValueError, match="query"):
        Alert.from_dict(spec)


# ---------------------------------------------------------------- what the resources read and where they go


def test_dashboard_reads_the_targets_own_schema_and_the_reports_file(bundle):
    spec = bundle["resources"]["dashboards"]["movielens_als_dashboard"]
    params = {p["name"]: p["default"] for p in bundle["resources"]["jobs"]["movielens_als"]["parameters"]}
    assert spec["dataset_catalog"] == params["catalog"] == "${var.catalog}"
    # Development mode renames the schema resource: the dashboard follows it as the job's tasks do.
    assert spec["dataset_schema"] == params["schema"] == "${resources.schemas.movielens.name}"
    assert (REPO / "resources" / spec["file_path"]).resolve() == default_dashboard_path().resolve()
    assert spec["warehouse_id"] == "${var.warehouse_id}" and spec["embed_credentials"] is False
    warehouse = bundle["variables"]["warehouse_id"]
    assert warehouse["lookup"] == {"warehouse": "${var.warehouse_name}"}
    assert Resolver(target_config(bundle, "dev"), env={}).variable("warehouse_id") == ""  # local tools only


def test_alert_and_monitors_run_after_the_job_and_mail_its_address(with_monitors):
    resources = with_monitors["resources"]
    alert = resources["alerts"]["serving_health"]
    assert alert["warehouse_id"] == "${var.warehouse_id}"
    assert alert["schedule"]["quartz_cron_schedule"] == "${var.checks_schedule}"
    assert alert["evaluation"]["notification"]["subscriptions"] == [{"user_email": "${var.notification_email}"}]
    job = resources["jobs"]["movielens_als"]
    assert job["email_notifications"]["on_failure"] == ["${var.notification_email}"]
    monitors = resources["quality_monitors"]
    assert {m["table_name"] for m in monitors.values()} == {
        f"{SCHEMA_REF}.user_recommendations",
        f"{SCHEMA_REF}.ratings",
    }
    for monitor in monitors.values():
        assert monitor["output_schema_name"] == SCHEMA_REF and monitor["snapshot"] == {}
        assert monitor["schedule"]["quartz_cron_expression"] == "${var.checks_schedule}"
        assert monitor["notifications"]["on_failure"]["email_addresses"] == ["${var.notification_email}"]
    job_hour = int(job["schedule"]["quartz_cron_expression"].split()[2])
    checks_hour = int(with_monitors["variables"]["checks_schedule"]["default"].split()[2])
    assert checks_hour >= job_hour + job["timeout_seconds"] // 3600  # after the job's longest possible run


# ---------------------------------------------------------------- the alert's SQL


def health_row(version: int, churn, coverage: float, previous) -> dict:
    return {"user_recommendations_version": version, "churn": churn, "catalog_coverage": coverage,
            "previous_coverage": previous}  # fmt: skip


# (churn, catalog_coverage, previous_coverage) of the latest row; an older row that would fire sits below each.
CASES = [
    (None, 0.20, None),  # the first served version: nothing to compare
    (0.60, 0.20, 0.20),  # churn above 0.5
    (0.10, 0.10, 0.20),  # coverage fell by 0.10 > 0.05
    (0.50, 0.20, 0.20),  # at the churn threshold: not above
    (0.30, 0.16, 0.20),  # a drop of 0.04
]


def test_alert_query_fires_exactly_when_recommends_warning_does(spark, namespace, bundle):
    config = target_config(bundle, "dev")
    resolver = Resolver(config, {"catalog": namespace.catalog, "schema": namespace.schema}, env={}, target="dev")
    spec = resolver.resolve(config["resources"]["alerts"]["serving_health"])
    thresholds = Thresholds(
        float(resolver.variable("health_max_churn")), float(resolver.variable("health_max_coverage_drop"))
    )
    evaluation = spec["evaluation"]
    assert (evaluation["comparison_operator"], evaluation["threshold"]["value"]["double_value"]) == ("GREATER_THAN", 0)
    fired = []
    for churn, coverage, previous in CASES:
        rows = [health_row(1, 0.95, 0.2, 0.9), health_row(2, churn, coverage, previous)]
        data = [tuple(r.get(c) for c in SERVING_HEALTH.column_names) for r in rows]
        tables.overwrite(spark, namespace, SERVING_HEALTH, spark.createDataFrame(data, SERVING_HEALTH.schema_ddl))
        (row,) = spark.sql(spec["query_text"]).collect()
        value = row[evaluation["source"]["name"]]
        assert (value > 0) == bool(alerts(rows[1], thresholds)), (churn, coverage, previous)
        fired.append(value > 0)
    assert fired == [False, True, True, False, False]
