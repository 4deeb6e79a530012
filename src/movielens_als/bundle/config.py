"""The bundle as the local runner reads it: load, merge targets, resolve ``${...}``, plan the job DAG.

The bundle is the single source of truth: tasks, their order (``depends_on``) and their
parameters are read from ``resources/*.yml``, with ``${var.*}`` taken from ``bundle/*.yml`` and
the chosen target. ``{{job.parameters.x}}`` becomes the job parameter's default (or a
``--param x=value`` override) and ``{{job.run_id}}`` one generated id, as Databricks would do.

``local`` is not a target in databricks.yml (deploying it would try to create a Unity Catalog
volume in ``spark_catalog``): it means the bundle's default target. Whatever the target, a
local run puts the tables in ``spark_catalog``, the local session's only catalog, and
does not add development mode's ``dev_<user>_`` schema prefix.

Everything here is pure: no Spark, no side effects.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from movielens_als.bundle.resolver import BundleError, Resolver, scalar
from movielens_als.config import ENDPOINT_NAME
from movielens_als.ids import new_run_id
from movielens_als.lakehouse.names import LOCAL_CATALOG

DEFAULT_JOB = "movielens_als"
LOCAL_TARGET = "local"
ENTRY_POINT = "movielens-als"
PACKAGE = "movielens_als"

# Sequences the Databricks CLI merges entry by entry (by this key) when a target overrides them.
_KEYED_SEQUENCES = {"tasks": "task_key", "job_clusters": "job_cluster_key", "environments": "environment_key"}
# Top-level sections a target may override (mode/default/run_as/... only matter on Databricks).
_TARGET_SECTIONS = ("bundle", "workspace", "artifacts", "resources", "sync", "permissions", "presets", "run_as")

_DYNAMIC_REF = re.compile(r"\{\{\s*([A-Za-z_][\w.\-]*)\s*\}\}")


@dataclass(frozen=True)
class PlannedTask:
    key: str
    depends_on: tuple[str, ...]
    argv: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    job: str
    target: str
    run_id: str
    parameters: dict[str, str]
    tasks: tuple[PlannedTask, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)


# --------------------------------------------------------------------------- loading


def find_bundle_root(start: str | os.PathLike | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: cwd) that holds databricks.yml."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "databricks.yml").is_file():
            return folder
    raise BundleError(f"no databricks.yml in {here} or above: run from the project or pass --bundle-root")


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise BundleError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BundleError(f"{path}: expected a mapping at the top level")
    return data


def load_bundle(root: str | os.PathLike) -> dict:
    """databricks.yml with every ``include`` file merged in, as the CLI assembles it."""
    root = Path(root)
    config = _read_yaml(root / "databricks.yml")
    for pattern in config.get("include", []) or []:
        for path in sorted(root.glob(pattern)):
            config = merge(config, _read_yaml(path))
    return config


def merge(base: Any, override: Any) -> Any:
    """Merge ``override`` into ``base`` like the CLI: mappings recursively, tasks/job_clusters/
    environments by their key, other sequences appended, scalars replaced."""
    if isinstance(base, Mapping) and isinstance(override, Mapping):
        out = dict(base)
        for key, value in override.items():
            if key in out and key in _KEYED_SEQUENCES and isinstance(value, list) and isinstance(out[key], list):
                out[key] = _merge_keyed(out[key], value, _KEYED_SEQUENCES[key])
            elif key in out:
                out[key] = merge(out[key], value)
            else:
                out[key] = value
        return out
    if isinstance(base, list) and isinstance(override, list):
        return [*base, *override]
    return override


def _merge_keyed(base: list, override: list, key: str) -> list:
    out = list(base)
    index = {item.get(key): i for i, item in enumerate(out) if isinstance(item, Mapping)}
    for item in override:
        name = item.get(key) if isinstance(item, Mapping) else None
        if name is not None and name in index:
            out[index[name]] = merge(out[index[name]], item)
        else:
            out.append(item)
    return out


def default_target(config: Mapping) -> str:
    targets = config.get("targets") or {}
    defaults = [name for name, t in targets.items() if (t or {}).get("default")]
    if len(defaults) == 1:
        return defaults[0]
    if len(targets) == 1:
        return next(iter(targets))
    raise BundleError("the bundle has no single default target: pass --target")


def target_config(config: Mapping, target: str) -> dict:
    """The configuration as deployed to ``target``: its overrides merged in, variables' values
    set as their defaults, ``targets`` removed (still valid against the bundle schema)."""
    targets = config.get("targets") or {}
    if target not in targets:
        raise BundleError(f"unknown target {target!r}: the bundle defines {', '.join(sorted(targets)) or 'none'}")
    overrides = targets[target] or {}
    out = {key: value for key, value in config.items() if key != "targets"}
    for section in _TARGET_SECTIONS:
        if section in overrides:
            out[section] = merge(out.get(section), overrides[section]) if section in out else overrides[section]
    declared = {name: dict(spec or {}) for name, spec in (out.get("variables") or {}).items()}
    for name, value in (overrides.get("variables") or {}).items():
        if name not in declared:
            raise BundleError(f"target {target!r} sets variable {name!r}, which is not declared")
        declared[name].update(_target_variable(declared[name], value))
    if declared:
        out["variables"] = declared
    return out


def _target_variable(spec: Mapping, value: Any) -> dict:
    """A target's variable entry: a plain value, or a mapping with default (or lookup)."""
    if isinstance(value, Mapping) and ("default" in value or "lookup" in value):
        return {k: v for k, v in value.items() if k in ("default", "lookup")}
    if isinstance(value, Mapping) and spec.get("type") != "complex":
        raise BundleError(f"a mapping value needs `type: complex` on the variable: {dict(value)!r}")
    return {"default": value}


# --------------------------------------------------------------------------- the job


def topological_order(tasks: Sequence[Mapping]) -> list[Mapping]:
    """Tasks ordered so each comes after its ``depends_on``; ties keep the file's order."""
    by_key: dict[str, Mapping] = {}
    for task in tasks:
        key = task.get("task_key")
        if not key:
            raise BundleError(f"a task has no task_key: {dict(task)!r}")
        if key in by_key:
            raise BundleError(f"duplicate task_key {key!r}")
        by_key[key] = task
    deps = {}
    for key, task in by_key.items():
        deps[key] = [d["task_key"] for d in task.get("depends_on") or []]
        for dep in deps[key]:
            if dep not in by_key:
                raise BundleError(f"task {key!r} depends on unknown task {dep!r}")
    ordered: list[Mapping] = []
    done: set[str] = set()
    while len(ordered) < len(by_key):
        ready = [k for k in by_key if k not in done and all(d in done for d in deps[k])]
        if not ready:
            stuck = sorted(k for k in by_key if k not in done)
            raise BundleError(f"circular depends_on among tasks: {', '.join(stuck)}")
        ordered.append(by_key[ready[0]])
        done.add(ready[0])
    return ordered


def job_parameter_defaults(job: Mapping, resolver: Resolver) -> dict[str, str]:
    """The job's parameters with their defaults resolved to strings."""
    params = {}
    for p in job.get("parameters") or []:
        params[p["name"]] = scalar(resolver.resolve(p.get("default", "")), f"job parameter {p['name']}")
    return params


def apply_overrides(params: Mapping[str, str], overrides: Sequence[str]) -> dict[str, str]:
    """``name=value`` strings on top of the job parameters; unknown names are an error, as on Databricks."""
    out = dict(params)
    for item in overrides:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise BundleError(f"--param {item!r}: expected NAME=VALUE")
        if name not in out:
            raise BundleError(f"--param {name}: the job has no such parameter (it has {', '.join(out)})")
        out[name] = value
    return out


def substitute(value: str, params: Mapping[str, str], context: Mapping[str, str]) -> str:
    """Replace ``{{job.parameters.x}}``, ``{{job.run_id}}`` and the other dynamic value references."""

    def replace(match: re.Match) -> str:
        ref = match.group(1)
        if ref.startswith("job.parameters."):
            name = ref[len("job.parameters.") :]
            if name not in params:
                raise BundleError(f"{{{{{ref}}}}}: the job has no parameter {name!r}")
            return params[name]
        if ref in context:
            return context[ref]
        raise BundleError(f"{{{{{ref}}}}} has no local value (known: job.parameters.*, {', '.join(sorted(context))})")

    return _DYNAMIC_REF.sub(replace, value)


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def task_argv(task: Mapping) -> list[str]:
    """The command line of a python_wheel_task of this package (still with {{...}} references)."""
    wheel = task.get("python_wheel_task")
    if wheel is None:
        kinds = [k for k in task if k.endswith("_task")]
        raise BundleError(
            f"task {task['task_key']!r} is a {kinds[0] if kinds else 'task'}: "
            "the local runner runs python_wheel_tasks only"
        )
    if _normalize(wheel.get("package_name", "")) != PACKAGE or wheel.get("entry_point") != ENTRY_POINT:
        raise BundleError(
            f"task {task['task_key']!r} calls {wheel.get('package_name')}:{wheel.get('entry_point')}, "
            f"not this package's {ENTRY_POINT} entry point"
        )
    if wheel.get("named_parameters"):
        return [f"--{k}={v}" for k, v in wheel["named_parameters"].items()]
    return [str(a) for a in wheel.get("parameters") or []]


def plan_job(
    bundle_root: str | os.PathLike,
    target: str = LOCAL_TARGET,
    *,
    job: str = DEFAULT_JOB,
    overrides: Sequence[str] = (),
    source: str | None = None,
    home: str | os.PathLike | None = None,
    run_id: str | None = None,
    env: Mapping[str, str] | None = None,
    user: str | None = None,
) -> Plan:
    """Everything ``run`` will execute, resolved from the bundle: no Spark, no side effects."""
    config = load_bundle(bundle_root)
    target_name = default_target(config) if target == LOCAL_TARGET else target
    resolved = target_config(config, target_name)
    notes = []
    declared = resolved.get("variables") or {}
    forced = {}
    if "catalog" in declared:
        forced["catalog"] = LOCAL_CATALOG
        original = Resolver(resolved, env=env, user=user, target=target_name).variable("catalog")
        if original != LOCAL_CATALOG:
            notes.append(f"catalog {original!r} of target {target_name!r} is {LOCAL_CATALOG!r} locally")
    if "serving_endpoint_name" in declared:
        # Locally one process stands in for the endpoint (``serve``, and the app): it logs to this name's inference
        # table, which land harvests. A target's per-developer name would point land at a table nobody writes.
        forced["serving_endpoint_name"] = ENDPOINT_NAME
        original = Resolver(resolved, env=env, user=user, target=target_name).variable("serving_endpoint_name")
        if original != ENDPOINT_NAME:
            notes.append(
                f"serving endpoint {original!r} of target {target_name!r} is serve's {ENDPOINT_NAME!r} locally"
            )
    resolver = Resolver(resolved, forced, env=env, user=user, target=target_name)
    jobs = (resolved.get("resources") or {}).get("jobs") or {}
    if job not in jobs:
        raise BundleError(f"no job {job!r} in the bundle's resources (it has {', '.join(jobs) or 'none'})")
    job_spec = jobs[job]
    params = job_parameter_defaults(job_spec, resolver)
    if source is not None:
        if "source" not in params:
            raise BundleError(f"--source: job {job!r} has no `source` parameter")
        params["source"] = source
    params = apply_overrides(params, overrides)
    run_id = run_id or new_run_id("local-")
    job_name = scalar(resolver.resolve(job_spec.get("name", job)), "job name")
    planned = []
    for task in topological_order(job_spec.get("tasks") or []):
        if task.get("disabled"):
            notes.append(f"task {task['task_key']!r} is disabled in the bundle: skipped")
            continue
        context = {
            "job.run_id": run_id,
            "job.id": "local",
            "job.name": job_name,
            "task.name": task["task_key"],
            "bundle.target": target_name,
        }
        argv = [substitute(str(resolver.resolve(a)), params, context) for a in task_argv(task)]
        if home is not None:
            argv += ["--home", str(home)]
        deps = tuple(d["task_key"] for d in task.get("depends_on") or [])
        planned.append(PlannedTask(task["task_key"], deps, tuple(argv)))
    return Plan(job, target_name, run_id, params, tuple(planned), tuple(notes))
