"""The local runner: bundle loading, target merging, ${...} and {{...}} resolution, task order
(pure, no Spark), then the summary and a one-task run on the session's Spark."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from movielens_als.bundle.config import (
    apply_overrides,
    find_bundle_root,
    load_bundle,
    merge,
    plan_job,
    substitute,
    target_config,
    topological_order,
)
from movielens_als.bundle.resolver import BundleError, Resolver
from movielens_als.bundle.runner import run_job
from movielens_als.bundle.summary import format_metrics, format_recommendations, summary_lines
from movielens_als.ids import new_run_id
from movielens_als.ml.models import validate_run_id
from tests.fixtures import write_ml100k

REPO = Path(__file__).resolve().parents[3]


def write_bundle(root: Path, jobs: dict, variables: dict | None = None, targets: dict | None = None) -> Path:
    """A minimal bundle on disk: databricks.yml including bundle/*.yml and resources/*.yml."""
    (root / "bundle").mkdir(parents=True)
    (root / "resources").mkdir()
    top = {
        "bundle": {"name": "mini"},
        "include": ["bundle/*.yml", "resources/*.yml"],
        "targets": {"dev": {"mode": "development", "default": True}, **(targets or {})},
    }
    (root / "databricks.yml").write_text(yaml.safe_dump(top))
    (root / "bundle/variables.yml").write_text(yaml.safe_dump({"variables": variables or {}}))
    (root / "resources/job.yml").write_text(yaml.safe_dump({"resources": {"jobs": jobs}}))
    return root


def var(default) -> dict:
    return {"description": "a variable", "default": default}


def wheel_task(key: str, params: list[str], depends: tuple[str, ...] = ()) -> dict:
    task = {
        "task_key": key,
        "python_wheel_task": {"package_name": "movielens-als", "entry_point": "movielens-als", "parameters": params},
    }
    if depends:
        task["depends_on"] = [{"task_key": d} for d in depends]
    return task


# ------------------------------------------------------------------ merging and targets


def test_merge_combines_mappings_merges_tasks_by_key_and_appends_other_lists():
    base = {"a": {"x": 1, "y": 2}, "tasks": [{"task_key": "t", "timeout_seconds": 10}], "tags": [1]}
    override = {"a": {"y": 3}, "tasks": [{"task_key": "t", "max_retries": 1}, {"task_key": "u"}], "tags": [2]}
    assert merge(base, override) == {
        "a": {"x": 1, "y": 3},
        "tasks": [{"task_key": "t", "timeout_seconds": 10, "max_retries": 1}, {"task_key": "u"}],
        "tags": [1, 2],
    }


def test_target_config_applies_target_variables_and_resources(tmp_path):
    root = write_bundle(
        tmp_path,
        {"j": {"name": "j", "max_concurrent_runs": 1}},
        variables={"size": var("100k")},
        targets={
            "prod": {
                "mode": "production",
                "variables": {"size": "25m"},
                "resources": {"jobs": {"j": {"max_concurrent_runs": 2}}},
            }
        },
    )
    config = load_bundle(root)
    prod = target_config(config, "prod")
    assert prod["variables"]["size"] == {"description": "a variable", "default": "25m"}
    assert prod["resources"]["jobs"]["j"] == {"name": "j", "max_concurrent_runs": 2}
    assert "targets" not in prod
    assert target_config(config, "dev")["variables"]["size"]["default"] == "100k"
    with pytest.raises(BundleError, match="unknown target 'qa'"):
        target_config(config, "qa")


def test_find_bundle_root_walks_up_from_a_subfolder():
    assert find_bundle_root(REPO / "src" / "movielens_als") == REPO


# ------------------------------------------------------------------ ${...}


def config_with(variables: dict) -> dict:
    return {"bundle": {"name": "b"}, "variables": variables, "resources": {"schemas": {"s": {"name": "${var.schema}"}}}}


def test_resolver_follows_variable_chains_resource_references_and_current_user():
    config = config_with(
        {
            "schema": {"default": "ml_${var.env}"},
            "env": {"default": "dev"},
            "mail": {"default": "${workspace.current_user.userName}"},
        }
    )
    r = Resolver(config, env={}, user="Ada.Lovelace@example.com", target="dev")
    assert r.resolve("${resources.schemas.s.name}") == "ml_dev"
    assert r.resolve("${bundle.name}-${bundle.target}") == "b-dev"
    assert r.resolve("${var.mail}") == "Ada.Lovelace@example.com"
    assert r.resolve("${workspace.current_user.short_name}") == "ada_lovelace"


def test_resolver_precedence_is_forced_then_bundle_var_env_then_default():
    config = config_with({"schema": {"default": "a"}})
    assert Resolver(config, env={}).variable("schema") == "a"
    assert Resolver(config, env={"BUNDLE_VAR_schema": "b"}).variable("schema") == "b"
    assert Resolver(config, {"schema": "c"}, env={"BUNDLE_VAR_schema": "b"}).variable("schema") == "c"


def test_resolver_keeps_complex_values_whole_and_refuses_them_inside_strings():
    config = config_with({"cluster": {"type": "complex", "default": {"workers": "${var.n}"}}, "n": {"default": 2}})
    r = Resolver(config, env={})
    assert r.resolve({"new_cluster": "${var.cluster}"}) == {"new_cluster": {"workers": 2}}
    with pytest.raises(BundleError, match="complex value"):
        r.resolve("cluster=${var.cluster}")


def test_resolver_reports_undeclared_unset_and_circular_variables():
    config = config_with({"a": {"default": "${var.b}"}, "b": {"default": "${var.a}"}, "sp": {"description": "x"}})
    r = Resolver(config, env={})
    with pytest.raises(BundleError, match="circular reference"):
        r.resolve("${var.a}")
    with pytest.raises(BundleError, match="not declared"):
        r.resolve("${var.nope}")
    with pytest.raises(BundleError, match="'sp' has no value"):
        r.resolve("${var.sp}")
    with pytest.raises(BundleError, match="does not exist"):
        r.resolve("${resources.schemas.other.name}")


# ------------------------------------------------------------------ {{...}}, overrides, order


def test_substitute_replaces_job_parameters_and_run_id_and_rejects_unknown_references():
    params = {"schema": "movielens", "k": "10"}
    context = {"job.run_id": "42"}
    assert substitute("{{job.parameters.schema}}", params, context) == "movielens"
    assert substitute("{{ job.run_id }}-{{job.parameters.k}}", params, context) == "42-10"
    with pytest.raises(BundleError, match="no parameter 'size'"):
        substitute("{{job.parameters.size}}", params, context)
    with pytest.raises(BundleError, match="no local value"):
        substitute("{{job.trigger.time}}", params, context)


def test_apply_overrides_sets_known_parameters_only():
    params = {"top_n": "10", "grid": ""}
    assert apply_overrides(params, ["top_n=20", 'grid={"rank": [8]}']) == {"top_n": "20", "grid": '{"rank": [8]}'}
    with pytest.raises(BundleError, match="no such parameter"):
        apply_overrides(params, ["topn=20"])
    with pytest.raises(BundleError, match="NAME=VALUE"):
        apply_overrides(params, ["top_n"])


def test_topological_order_follows_depends_on_not_file_order():
    tasks = [
        {"task_key": "c", "depends_on": [{"task_key": "b"}]},
        {"task_key": "a"},
        {"task_key": "b", "depends_on": [{"task_key": "a"}]},
        {"task_key": "d", "depends_on": [{"task_key": "a"}]},
    ]
    assert [t["task_key"] for t in topological_order(tasks)] == ["a", "b", "c", "d"]


def test_topological_order_rejects_cycles_unknown_and_duplicate_tasks():
    with pytest.raises(BundleError, match="circular depends_on among tasks: a, b"):
        topological_order(
            [{"task_key": "a", "depends_on": [{"task_key": "b"}]}, {"task_key": "b", "depends_on": [{"task_key": "a"}]}]
        )
    with pytest.raises(BundleError, match="unknown task 'x'"):
        topological_order([{"task_key": "a", "depends_on": [{"task_key": "x"}]}])
    with pytest.raises(BundleError, match="duplicate task_key 'a'"):
        topological_order([{"task_key": "a"}, {"task_key": "a"}])


def test_new_run_id_is_a_valid_training_run_id():
    run_id = new_run_id("local-", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert run_id.startswith("local-20260102T030405-")
    assert validate_run_id(run_id) == run_id


# ------------------------------------------------------------------ plans from YAML


def test_plan_of_the_projects_bundle_runs_the_dag_locally_with_one_run_id():
    plan = plan_job(REPO, "local", home="/tmp/h", run_id="r1", env={}, user="dev@example.com")
    assert plan.target == "dev"
    assert [t.key for t in plan.tasks] == [
        "land",
        "split",
        "train",
        "evaluate",
        "promote",
        "recommend",
        "publish",
        "deploy",
    ]
    argv = {t.key: list(t.argv) for t in plan.tasks}
    assert argv["land"][:7] == ["land", "--catalog", "spark_catalog", "--schema", "movielens", "--volume", "files"]
    assert argv["land"][-2:] == ["--home", "/tmp/h"]
    for key in ("train", "evaluate", "promote"):
        assert argv[key][argv[key].index("--run-id") + 1] == "r1"
    assert argv["recommend"][argv["recommend"].index("--top-n") + 1] == "10"
    # Locally serve stands in for the dev target's per-developer endpoint: land harvests what it logs.
    for key in ("land", "deploy"):
        assert argv[key][argv[key].index("--endpoint-name") + 1] == "movielens-als"
    assert any("'movielens-als-dev' of target 'dev' is serve's 'movielens-als'" in note for note in plan.notes)
    assert any("'main' of target 'dev' is 'spark_catalog'" in note for note in plan.notes)


def test_plan_takes_target_variables_param_overrides_and_source():
    plan = plan_job(REPO, "prod", overrides=["top_n=25"], source="/data/ml-1m", run_id="r", env={}, user="u")
    assert plan.parameters["size"] == "25m"  # prod's dataset_size
    assert plan.parameters["top_n"] == "25"
    assert plan.parameters["catalog"] == "spark_catalog"
    land = list(plan.tasks[0].argv)
    assert land[land.index("--source") + 1] == "/data/ml-1m"
    assert "--home" not in land


def test_plan_reads_order_and_parameters_from_the_yaml(tmp_path):
    root = write_bundle(
        tmp_path,
        {
            "movielens_als": {
                "name": "mini_job",
                "parameters": [{"name": "schema", "default": "${var.schema}"}],
                "tasks": [
                    wheel_task("split", ["split", "--schema", "{{job.parameters.schema}}"], ("land",)),
                    wheel_task("land", ["land", "--schema", "{{job.parameters.schema}}"]),
                ],
            }
        },
        variables={"schema": var("from_yaml")},
    )
    plan = plan_job(root, "local", run_id="r", env={}, user="u")
    assert [(t.key, t.argv) for t in plan.tasks] == [
        ("land", ("land", "--schema", "from_yaml")),
        ("split", ("split", "--schema", "from_yaml")),
    ]
    assert plan.notes == ()  # no catalog variable: nothing to map


def test_plan_refuses_tasks_it_cannot_run_locally(tmp_path):
    root = write_bundle(
        tmp_path,
        {
            "movielens_als": {
                "tasks": [{"task_key": "explore", "notebook_task": {"notebook_path": "../jobs/notebooks/explore.py"}}]
            }
        },
    )
    with pytest.raises(BundleError, match="'explore' is a notebook_task"):
        plan_job(root, "local", env={}, user="u")
    with pytest.raises(BundleError, match="no job 'other'"):
        plan_job(root, "local", job="other", env={}, user="u")


# ------------------------------------------------------------------ output


def test_format_metrics_compares_each_metric_with_the_baseline():
    rows = [
        {"model": "rating", "metric": "rmse", "k": None, "value": 0.90},
        {"model": "baseline", "metric": "rmse", "k": None, "value": 0.95},
        {"model": "ranking", "metric": "ndcg_at_k", "k": 10, "value": 0.30},
        {"model": "baseline", "metric": "ndcg_at_k", "k": 10, "value": 0.35},
        {"model": "popular", "metric": "ndcg_at_k", "k": 10, "value": 0.20},
    ]
    lines = format_metrics(rows)
    assert lines[0].split() == ["metric", "ranking", "rating", "baseline", "popular", "vs", "baseline"]
    assert lines[1].split() == ["rmse", "-", "0.9000", "0.9500", "-", "-0.0500", "better"]
    assert lines[2].split() == ["ndcg@10", "0.3000", "-", "0.3500", "0.2000", "-0.0500", "worse"]
    both_maps = format_metrics([{"model": "ranking", "metric": m, "k": 10, "value": 0.1} for m in ("map", "map_at_k")])
    assert [line.split()[0] for line in both_maps[1:]] == ["map", "map@10"]


def test_format_recommendations_lists_titles_in_rank_order():
    rows = [
        {"user_id": 2, "rank": 2, "movie_id": 9, "title": None, "score": 0.5},
        {"user_id": 2, "rank": 1, "movie_id": 1, "title": "Toy Story (1995)", "score": 0.9},
    ]
    assert format_recommendations(rows) == ["  user 2:", "     1. Toy Story (1995) (0.900)", "     2. movie 9 (0.500)"]


# ------------------------------------------------------------------ with Spark


def test_summary_says_what_is_missing_before_evaluate_and_recommend_ran(spark, namespace):
    lines = summary_lines(spark, namespace, "r1")
    assert "  metrics: model_metrics is not there yet (evaluate has not run)" in lines
    assert "  recommendations: user_recommendations is not there yet (recommend has not run)" in lines


def test_summary_shows_metrics_against_baseline_and_recommended_titles(spark, namespace):
    now = datetime(2026, 1, 1)
    spark.createDataFrame(
        [
            ("r1", "rating", "benchmark", "rmse", None, 0.9, now),
            ("r1", "baseline", "benchmark", "rmse", None, 1.0, now),
            ("r0", "rating", "benchmark", "rmse", None, 5.0, now),
        ],
        "run_id STRING, model STRING, protocol STRING, metric STRING, k INT, value DOUBLE, evaluated_at TIMESTAMP",
    ).write.saveAsTable(namespace.table("model_metrics"))
    spark.createDataFrame(
        [(u, r, m, 1.0 / r, "r1", now) for u in (1, 2, 3, 4) for r, m in ((1, 10), (2, 20))],
        "user_id INT, rank INT, movie_id INT, score DOUBLE, model_run_id STRING, generated_at TIMESTAMP",
    ).write.saveAsTable(namespace.table("user_recommendations"))
    spark.createDataFrame([(10, "Heat (1995)")], "movie_id INT, title STRING").write.saveAsTable(
        namespace.table("movies")
    )

    lines = summary_lines(spark, namespace, "r1", users=2, per_user=2)
    text = "\n".join(lines)
    assert "metrics of run r1, protocol benchmark, test split:" in text
    assert any(line.split() == ["rmse", "0.9000", "1.0000", "-0.1000", "better"] for line in lines)
    assert "top 2 recommendations for 2 users:" in text
    assert "  user 1:\n     1. Heat (1995) (1.000)\n     2. movie 20 (0.500)\n  user 2:" in text
    assert "user 3:" not in text


def test_run_job_executes_the_bundles_land_task_and_reports_rows(spark, tmp_path, capsys):
    schema = f"t_{uuid.uuid4().hex[:12]}"
    land = [
        "land",
        "--catalog",
        "{{job.parameters.catalog}}",
        "--schema",
        "{{job.parameters.schema}}",
        "--source",
        "{{job.parameters.source}}",
    ]
    root = write_bundle(
        tmp_path / "bundle",
        {
            "movielens_als": {
                "parameters": [
                    {"name": "catalog", "default": "${var.catalog}"},
                    {"name": "schema", "default": "${var.schema}"},
                    {"name": "source", "default": ""},
                ],
                "tasks": [wheel_task("land", land)],
            }
        },
        variables={"catalog": var("main"), "schema": var(schema)},
    )
    source = write_ml100k(tmp_path / "ml-100k")

    code = run_job(target="local", source=str(source), home=str(tmp_path / "home"), bundle_root=str(root))

    out = capsys.readouterr().out
    assert code == 0, out
    assert "note: catalog 'main' of target 'dev' is 'spark_catalog' locally" in out
    progress = [line for line in out.splitlines() if line.startswith("[1/1] land")]
    assert len(progress) == 1 and "ratings=6 movies=4 users=3" in progress[0], out
    assert spark.table(f"spark_catalog.{schema}.ratings").count() == 6
    assert "metrics: model_metrics is not there yet" in out


def test_run_job_stops_at_a_failing_task_and_returns_non_zero(spark, tmp_path, capsys):
    land = ["land", "--schema", f"t_{uuid.uuid4().hex[:12]}", "--source", str(tmp_path / "missing")]
    root = write_bundle(
        tmp_path / "bundle",
        {"movielens_als": {"tasks": [wheel_task("land", land), wheel_task("split", ["split"], ("land",))]}},
    )

    code = run_job(target="local", home=str(tmp_path / "home"), bundle_root=str(root))

    out = capsys.readouterr().out
    assert code == 2
    assert "[1/2] land" in out and "FAILED" in out
    assert "  skipped: split" in out


def test_run_job_passes_a_failure_after_ctrl_c_on_as_the_interrupt(tmp_path, capsys, monkeypatch):
    """Ctrl-C inside a JVM call cancels the Spark job, and the task fails with the cancellation: the runner must
    not report that as a FAILED task (exit 1) but hand it on, so the CLI exits 130 with ``error: interrupted``."""
    from movielens_als import commands, interrupt

    land = ["land", "--schema", f"t_{uuid.uuid4().hex[:12]}", "--source", str(tmp_path / "any")]
    root = write_bundle(
        tmp_path / "bundle",
        {"movielens_als": {"tasks": [wheel_task("land", land), wheel_task("split", ["split"], ("land",))]}},
    )
    cancelled = RuntimeError("[SPARK_JOB_CANCELLED] Job 7 cancelled")

    def cancelled_by_ctrl_c(args, spark=None):
        monkeypatch.setitem(interrupt._state, "requested", True)
        raise cancelled

    monkeypatch.setattr(commands, "execute", cancelled_by_ctrl_c)
    with pytest.raises(RuntimeError) as raised:
        run_job(target="local", home=str(tmp_path / "home"), bundle_root=str(root))

    assert raised.value is cancelled
    out = capsys.readouterr().out
    assert "[1/2] land" in out and "interrupted after" in out
    assert "FAILED" not in out and "skipped" not in out
