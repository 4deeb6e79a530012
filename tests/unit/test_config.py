"""Every default once: bundle variables, job parameters, task flags and the CLI all agree with config.py."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from movielens_als import commands, config
from movielens_als.bundle.config import load_bundle, task_argv

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bundle() -> dict:
    return load_bundle(REPO)


def declared_variables() -> dict:
    return yaml.safe_load((REPO / "bundle/variables.yml").read_text())["variables"]


def as_text(value) -> str:
    """A value as a job parameter carries it: booleans as the lower-case words the CLI parses."""
    if isinstance(value, bool):
        return str(value).lower()
    return "" if value is None else str(value)


def disagreements(variables: dict, bundle: dict) -> list[str]:
    """What differs between config.py and the bundle: empty when they agree."""
    problems = []
    job = bundle["resources"]["jobs"]["movielens_als"]
    params = {p["name"]: p["default"] for p in job["parameters"]}
    by_flag = {}
    for task in job["tasks"]:
        argv = task_argv(task)
        by_flag.update({(argv[0], flag): value for flag, value in zip(argv[1::2], argv[2::2], strict=True)})
    for command, (_, groups) in config.COMMANDS.items():
        for group in groups:
            for f in fields(group):
                name = f.metadata.get("variable")
                if not name:
                    continue
                if name not in variables:
                    problems.append(f"{command} --{f.name}: bundle variable {name!r} is not declared")
                    continue
                if as_text(variables[name].get("default")) != as_text(f.default):
                    problems.append(f"{name}: bundle default {variables[name].get('default')!r} != {f.default!r}")
                for choice in f.metadata["choices"] or ():
                    if choice not in variables[name].get("description", ""):
                        problems.append(f"{name}: description does not list choice {choice!r}")
                if params.get(f.name) not in (f"${{var.{name}}}", None) and f.name in params:
                    problems.append(f"job parameter {f.name} is {params[f.name]!r}, not ${{var.{name}}}")
                flag = config.flag(f.name)
                if (command, flag) in {(c, fl) for c, fl in by_flag} and by_flag[(command, flag)] != (
                    f"{{{{job.parameters.{f.name}}}}}"
                ):
                    problems.append(f"task {command} passes {flag} {by_flag[(command, flag)]!r}")
                if (command, flag) not in by_flag:
                    problems.append(f"task {command} does not pass {flag}")
    return problems


def test_config_bundle_variables_job_parameters_and_task_flags_agree(bundle):
    assert disagreements(declared_variables(), bundle) == []


def test_the_check_fails_when_a_default_changes_in_one_place_only(bundle):
    variables = declared_variables()
    variables["top_n"]["default"] = "20"
    variables["dataset_size"]["description"] = "MovieLens release to land - 100k or 1m."
    del variables["block_size"]
    found = disagreements(variables, bundle)
    assert "top_n: bundle default '20' != 10" in found
    assert "dataset_size: description does not list choice 'latest'" in found
    assert "recommend --block_size: bundle variable 'block_size' is not declared" in found


def test_cli_defaults_and_choices_come_from_config():
    parser = commands.build_parser()
    args = parser.parse_args(["recommend"])
    assert (args.top_n, args.min_ratings, args.popular_min_count, args.popular_damping, args.block_size) == (
        config.RECOMMEND.top_n,
        config.RECOMMEND.min_ratings,
        config.RECOMMEND.popular_min_count,
        config.RECOMMEND.popular_damping,
        config.RECOMMEND.block_size,
    )
    assert parser.parse_args(["land", "--size", "latest"]).size == "latest"
    assert parser.parse_args(["split"]).protocol == config.SPLIT.protocol
    with pytest.raises(SystemExit):
        parser.parse_args(["split", "--protocol", "nope"])
    assert set(config.variables()) <= set(declared_variables())
