"""The app as the bundle declares it: its source folder, its start command, the resources app.yaml reads, deploy
starting it, who may use it, and the packages Databricks Apps installs for what the app imports."""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

import grimp
import yaml

from movielens_als.bundle.config import load_bundle

REPO = Path(__file__).resolve().parents[3]


def app_resource() -> dict:
    return load_bundle(REPO)["resources"]["apps"]["movielens_als_app"]


def test_the_apps_source_is_the_package_and_app_yaml_starts_its_databricks_entry_point():
    source = (REPO / "resources" / app_resource()["source_code_path"]).resolve()
    assert source == REPO / "src"
    spec = yaml.safe_load((source / "app.yaml").read_text())
    assert spec["command"][:2] == ["python", "-m"]
    module = spec["command"][2]
    assert (source / (module.replace(".", "/") + ".py")).is_file() and module == "movielens_als.app.databricks"


def test_app_yaml_reads_exactly_the_resources_the_bundle_grants():
    app = app_resource()
    spec = yaml.safe_load((REPO / "src" / "app.yaml").read_text())
    granted = {r["name"]: r for r in app["resources"]}
    assert {e["valueFrom"] for e in spec["env"]} == set(granted)
    assert granted["serving-endpoint"]["serving_endpoint"] == {
        "name": "${var.serving_endpoint_name}",
        "permission": "CAN_QUERY",
    }
    assert granted["sql-warehouse"]["sql_warehouse"] == {"id": "${var.warehouse_id}", "permission": "CAN_USE"}
    from movielens_als.app.databricks import ENDPOINT_ENV, WAREHOUSE_ENV

    assert {e["name"] for e in spec["env"]} == {ENDPOINT_ENV, WAREHOUSE_ENV}


def test_deploy_starts_the_app_the_readers_use_it_and_its_principal_reads_the_schema():
    bundle = load_bundle(REPO)
    app = bundle["resources"]["apps"]["movielens_als_app"]
    assert app["lifecycle"] == {"started": True}
    assert app["permissions"] == [{"group_name": "${var.readers_group}", "level": "CAN_USE"}]
    assert re.fullmatch(r"[a-z0-9-]{2,30}", app["name"])
    grants = bundle["resources"]["schemas"]["movielens"]["grants"]
    mine = [g for g in grants if g["principal"] == "${resources.apps.movielens_als_app.service_principal_client_id}"]
    assert mine and {"USE_SCHEMA", "SELECT"} <= set(mine[0]["privileges"])


def test_requirements_install_every_package_the_databricks_app_imports():
    graph = grimp.build_graph("movielens_als", include_external_packages=True)
    # errors.user_error imports pyspark inside the function, guarded, for Spark's own errors (as pyproject's contracts)
    for imported in graph.find_modules_directly_imported_by("movielens_als.errors"):
        if imported.startswith("pyspark"):
            graph.remove_import(importer="movielens_als.errors", imported=imported)
    reached = graph.find_upstream_modules("movielens_als.app.databricks") | {"movielens_als.app.databricks"}
    external = {m.split(".")[0] for m in reached if not m.startswith("movielens_als")} - set(sys.stdlib_module_names)
    lines = (REPO / "src" / "requirements.txt").read_text().splitlines()
    required = {re.split(r"[<>=\[ ]", line, maxsplit=1)[0].lower() for line in lines if line and line[0] != "#"}
    distributions = importlib.metadata.packages_distributions()
    heavy = {"pyspark", "mlflow"} & external
    assert not heavy, f"the app would need {heavy} on Databricks Apps"
    missing = {m for m in external if not {d.lower() for d in distributions.get(m, [m])} & required}
    # starlette comes with fastapi, which pins the version it needs
    assert missing <= {"starlette"}, missing
    assert {"databricks-sdk", "fastapi", "uvicorn"} <= required
