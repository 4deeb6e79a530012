"""The Databricks Asset Bundle, checked offline: typed job classes, the CLI's JSON schema, the
task command lines against the CLI, and (integration) the entry points of the built wheel."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
import regex
from databricks.bundles.jobs import Job
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError, best_match

from movielens_als import commands
from movielens_als.bundle.config import (
    ENTRY_POINT,
    load_bundle,
    substitute,
    target_config,
    task_argv,
    topological_order,
)
from movielens_als.bundle.resolver import Resolver
from tests.optional import unavailable

REPO = Path(__file__).resolve().parents[3]
TARGETS = ("dev", "prod")
DAG = ["land", "split", "train", "evaluate", "promote", "recommend", "publish", "deploy"]
COMPUTE_KEYS = {"job_cluster_key", "libraries", "environment_key", "new_cluster", "existing_cluster_id", "description"}


def schema_path() -> Path:
    return Path(
        os.environ.get("DATABRICKS_BUNDLE_SCHEMA") or REPO.parent / "shared/databricks/bundle-config.schema.json"
    )


@pytest.fixture(scope="module")
def bundle() -> dict:
    return load_bundle(REPO)


@pytest.fixture(scope="module")
def schema_validator():
    path = schema_path()
    if not path.is_file():
        unavailable(f"bundle schema not at {path} (set DATABRICKS_BUNDLE_SCHEMA; CI has ../shared beside the repo)")

    # The schema's patterns use \p{L}/\p{N}, which Python's re rejects: match them with `regex`.
    def pattern(validator, expected, instance, _schema):
        if validator.is_type(instance, "string") and not regex.search(expected, instance):
            yield ValidationError(f"{instance!r} does not match {expected!r}")

    validator_class = validators.extend(Draft202012Validator, {"pattern": pattern})
    return validator_class(json.loads(path.read_text(encoding="utf-8")))


def jobs_of(config: dict) -> dict:
    return config["resources"]["jobs"]


def resolved_job(bundle: dict, target: str, job: str) -> dict:
    config = target_config(bundle, target)
    return Resolver(config, user="someone@example.com", target=target).resolve(jobs_of(config)[job])


def all_wheel_tasks(bundle: dict):
    for job_key, job in jobs_of(bundle).items():
        for task in job["tasks"]:
            yield job_key, task


# ---------------------------------------------------------------- 1. typed classes


@pytest.mark.parametrize("target", TARGETS)
def test_every_job_loads_into_databricks_bundles_job_class_per_target(bundle, target):
    names = list(jobs_of(bundle))
    assert names == ["movielens_als", "movielens_als_serverless"]
    for name in names:
        job = Job.from_dict(resolved_job(bundle, target, name))
        assert [t.task_key for t in job.tasks] == DAG
        assert all(t.python_wheel_task.entry_point == ENTRY_POINT for t in job.tasks)


def test_unresolved_job_definitions_load_into_job_class_with_variable_references(bundle):
    for name, spec in jobs_of(bundle).items():
        job = Job.from_dict(copy.deepcopy(spec))
        assert job.name == name


def test_job_class_rejects_a_misspelled_field_so_the_check_can_fail(bundle):
    spec = copy.deepcopy(jobs_of(bundle)["movielens_als"])
    spec["tasks"][0]["python_wheel_task"]["entrypoint"] = spec["tasks"][0]["python_wheel_task"].pop("entry_point")
    with pytest.raises(ValueError, match="entrypoint"):
        Job.from_dict(spec)


# ---------------------------------------------------------------- 2. JSON schema


def test_bundle_with_includes_validates_against_cli_schema(bundle, schema_validator):
    assert set(bundle["targets"]) == set(TARGETS)
    errors = list(schema_validator.iter_errors(bundle))
    assert not errors, best_match(errors).message


@pytest.mark.parametrize("target", TARGETS)
def test_each_merged_target_validates_against_cli_schema(bundle, schema_validator, target):
    merged = target_config(bundle, target)
    errors = list(schema_validator.iter_errors(merged))
    assert not errors, best_match(errors).message


def test_schema_check_reports_a_wrong_key_at_its_path(bundle, schema_validator):
    broken = copy.deepcopy(bundle)
    broken["resources"]["jobs"]["movielens_als"]["max_concurrent_run"] = 1
    error = best_match(schema_validator.iter_errors(broken))
    assert error is not None
    assert error.json_path == "$.resources.jobs.movielens_als"


# ---------------------------------------------------------------- the job as the issue specifies


def test_job_runs_the_eight_tasks_in_dag_order_on_both_computes(bundle):
    for job in jobs_of(bundle).values():
        assert [t["task_key"] for t in topological_order(job["tasks"])] == DAG
        deps = {t["task_key"]: [d["task_key"] for d in t.get("depends_on", [])] for t in job["tasks"]}
        assert deps == {
            "land": [],
            "split": ["land"],
            "train": ["split"],
            "evaluate": ["train"],
            "promote": ["evaluate"],
            "recommend": ["promote"],
            "publish": ["recommend"],
            "deploy": ["recommend"],
        }


def test_serverless_variant_differs_from_the_cluster_job_only_in_compute(bundle):
    classic, serverless = (jobs_of(bundle)[k] for k in ("movielens_als", "movielens_als_serverless"))
    strip = lambda tasks: [{k: v for k, v in t.items() if k not in COMPUTE_KEYS} for t in tasks]  # noqa: E731
    assert strip(classic["tasks"]) == strip(serverless["tasks"])
    assert classic["parameters"] == serverless["parameters"]
    assert all("job_cluster_key" in t and "environment_key" not in t for t in classic["tasks"])
    assert all("environment_key" in t and "job_cluster_key" not in t for t in serverless["tasks"])
    assert "job_clusters" not in serverless and "environments" not in classic


def test_task_values_come_from_job_parameters_or_the_run_id(bundle):
    """Every flag value is {{job.parameters.x}} or {{job.run_id}}, so `bundle run --params` reaches it."""
    for job_key, task in all_wheel_tasks(bundle):
        argv = task_argv(task)
        assert argv[0] == task["task_key"]
        for flag, value in zip(argv[1::2], argv[2::2], strict=True):
            assert flag.startswith("--"), (job_key, task["task_key"], flag)
            assert value.startswith("{{") and value.endswith("}}"), (job_key, task["task_key"], flag, value)
        assert len(argv[1:]) % 2 == 0
    train_eval_rec = {t["task_key"]: task_argv(t) for _, t in all_wheel_tasks(bundle)}
    for key in ("train", "evaluate", "promote"):
        argv = train_eval_rec[key]
        assert argv[argv.index("--run-id") + 1] == "{{job.run_id}}"


def test_task_command_lines_parse_with_the_cli_parser(bundle):
    """Each task's flags exist on its subcommand, with parameter defaults substituted."""
    parser = commands.build_parser()
    for target in TARGETS:
        job = resolved_job(bundle, target, "movielens_als")
        params = {p["name"]: p["default"] for p in job["parameters"]}
        for task in job["tasks"]:
            argv = [substitute(a, params, {"job.run_id": "123456"}) for a in task_argv(task)]
            args = parser.parse_args(argv)
            assert args.command == task["task_key"]
            if hasattr(args, "catalog"):
                assert args.catalog == params["catalog"]


def test_dev_schema_parameter_follows_the_deployed_schema_resource(bundle):
    """Development mode renames the schema: jobs must read the resource's name, not ${var.schema}."""
    params = {p["name"]: p["default"] for p in jobs_of(bundle)["movielens_als"]["parameters"]}
    assert params["schema"] == "${resources.schemas.movielens.name}"
    assert params["volume"] == "${resources.volumes.files.name}"
    volume = bundle["resources"]["volumes"]["files"]
    assert volume["schema_name"] == "${resources.schemas.movielens.name}"


def test_deploy_serves_the_registered_recommender_on_a_per_developer_endpoint_in_dev(bundle):
    """The endpoint is created at run time, so development mode cannot prefix it: dev names it per user."""
    models = bundle["resources"]["registered_models"]
    assert {m["name"] for m in models.values()} == {
        "movielens_als_ranking",
        "movielens_als_rating",
        "movielens_als_recommender",
    }
    assert models["recommender"]["grants"] == models["ranking"]["grants"]
    endpoints = {}
    for target in TARGETS:
        job = resolved_job(bundle, target, "movielens_als")
        params = {p["name"]: p["default"] for p in job["parameters"]}
        deploy = next(t for t in job["tasks"] if t["task_key"] == "deploy")
        args = commands.build_parser().parse_args(
            [substitute(a, params, {"job.run_id": "1"}) for a in task_argv(deploy)]
        )
        endpoints[target] = args.endpoint_name
        assert (args.workload_size, args.scale_to_zero, args.readers_group) == ("Small", True, "account users")
        assert args.schema == params["schema"]
    assert endpoints == {"dev": "movielens-als-someone", "prod": "movielens-als"}


def test_evaluate_libraries_match_the_wheels_evaluate_extra(bundle):
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["evaluate"]
    classic = {t["task_key"]: t for t in jobs_of(bundle)["movielens_als"]["tasks"]}
    pypi = [lib["pypi"]["package"] for lib in classic["evaluate"]["libraries"] if "pypi" in lib]
    assert sorted(pypi) == sorted(extra)
    envs = {
        e["environment_key"]: e["spec"]["dependencies"]
        for e in jobs_of(bundle)["movielens_als_serverless"]["environments"]
    }
    assert sorted(d for d in envs["evaluate"] if not d.endswith(".whl")) == sorted(extra)
    assert envs["default"] == ["../dist/*.whl"]


def test_job_operations_settings(bundle):
    job = resolved_job(bundle, "dev", "movielens_als")
    assert job["max_concurrent_runs"] == 1
    assert job["schedule"]["quartz_cron_expression"] and "pause_status" not in job["schedule"]
    assert job["health"]["rules"][0]["metric"] == "RUN_DURATION_SECONDS"
    assert job["email_notifications"]["on_failure"] == ["someone@example.com"]
    assert job["tags"]["project"] == "movielens-als"
    assert job["job_clusters"][0]["new_cluster"]["spark_version"] == "17.3.x-scala2.13"
    for task in job["tasks"]:
        assert task["timeout_seconds"] > 0 and task["max_retries"] >= 1, task["task_key"]


def test_variables_have_descriptions_and_defaults(bundle):
    for name, spec in bundle["variables"].items():
        assert spec.get("description"), name
        assert "default" in spec, name


def test_targets_dev_is_development_default_and_prod_runs_as_a_service_principal(bundle):
    dev, prod = bundle["targets"]["dev"], bundle["targets"]["prod"]
    assert dev["mode"] == "development" and dev["default"] is True
    assert prod["mode"] == "production"
    assert prod["run_as"] == {"service_principal_name": "${var.service_principal}"}
    assert {p["level"] for p in prod["permissions"]} == {"CAN_MANAGE", "CAN_VIEW"}
    artifact = bundle["artifacts"]["movielens_als_wheel"]
    assert artifact["type"] == "whl" and artifact["dynamic_version"] is True


# ---------------------------------------------------------------- 3. the built wheel

# Resolves the task's entry point exactly as Databricks' python_wheel_task does
# (importlib.metadata.distribution(package_name).entry_points, matched by name), then parses
# every task command line with the wheel's own parser and prints each subcommand's --help.
_PROBE = r"""
import contextlib, io, json, sys
from importlib import metadata
tasks = json.loads(sys.argv[1])
out = {"help": {}, "parsed": {}, "entry_points": {}}
for package, entry in {(t["package_name"], t["entry_point"]) for t in tasks}:
    dist = metadata.distribution(package)
    eps = [ep for ep in dist.entry_points if ep.name == entry]
    out["entry_points"][f"{package}:{entry}"] = [eps[0].value if eps else None, str(dist._path)]
    main = eps[0].load()
    parser = sys.modules[main.__module__].build_parser()
    for t in tasks:
        if (t["package_name"], t["entry_point"]) != (package, entry):
            continue
        out["parsed"][t["task_key"]] = vars(parser.parse_args(t["argv"]))
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), contextlib.suppress(SystemExit):
            sys.argv = [entry, t["argv"][0], "--help"]
            main()
        out["help"][t["task_key"]] = buf.getvalue()
print(json.dumps(out))
"""


def build_wheel(outdir: Path) -> Path:
    """The wheel as `databricks bundle deploy` builds it (the artifact's build command)."""
    try:
        import hatchling  # noqa: F401 - present: build without an isolated environment (offline, fast)

        isolation = ["--no-isolation"]
    except ImportError:
        isolation = []
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", *isolation, "--outdir", str(outdir), str(REPO)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    (wheel,) = outdir.glob("*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("dist"))


@pytest.mark.integration
def test_wheel_metadata_names_the_package_and_entry_point_of_every_task(bundle, wheel):
    with zipfile.ZipFile(wheel) as zf:
        dist_info = next(n.split("/")[0] for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(zf.read(f"{dist_info}/METADATA").decode())
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
    normalize = lambda s: regex.sub(r"[-_.]+", "-", s).lower()  # noqa: E731 - PEP 503
    assert f"{ENTRY_POINT} = movielens_als.cli:main" in entry_points
    for _, task in all_wheel_tasks(bundle):
        wheel_task = task["python_wheel_task"]
        assert normalize(wheel_task["package_name"]) == normalize(meta["Name"])
        assert wheel_task["entry_point"] == ENTRY_POINT


@pytest.mark.integration
def test_wheel_entry_point_resolves_like_databricks_and_accepts_every_task_flag(bundle, wheel):
    job = resolved_job(bundle, "dev", "movielens_als")
    params = {p["name"]: p["default"] for p in job["parameters"]}
    tasks = [
        {
            "task_key": t["task_key"],
            **{k: t["python_wheel_task"][k] for k in ("package_name", "entry_point")},
            "argv": [substitute(a, params, {"job.run_id": "123456"}) for a in task_argv(t)],
        }
        for t in job["tasks"]
    ]
    # -S: no site-packages processing, so the editable install's .pth cannot answer; the wheel comes
    # first on the path and the venv's third-party packages (pyspark, as a runtime has it) after it.
    site = next(p for p in sys.path if p.endswith("site-packages"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(wheel), site])}
    proc = subprocess.run(
        [sys.executable, "-S", "-c", _PROBE, json.dumps(tasks)], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    ((target, location),) = out["entry_points"].values()
    assert target == "movielens_als.cli:main"
    assert str(wheel) in location
    for task in tasks:
        parsed = out["parsed"][task["task_key"]]
        assert parsed["command"] == task["task_key"]
        flags = [a for a in task["argv"] if a.startswith("--")]
        for flag in flags:
            assert flag in out["help"][task["task_key"]], (task["task_key"], flag)
        if "--run-id" in flags:
            assert parsed["run_id"] == "123456"
