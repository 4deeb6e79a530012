"""The serve and deploy commands: option surface and dispatch, without Spark."""

from __future__ import annotations

import sys
import types

import pytest

import movielens_als.serving
from movielens_als import cli, commands, config
from movielens_als.lakehouse.names import Namespace
from movielens_als.ml import registry
from movielens_als.result import TaskResult
from movielens_als.tasks import deploy as deploy_task


@pytest.fixture
def no_spark(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("Spark was started")

    monkeypatch.setattr(cli, "open_lakehouse", refuse)
    monkeypatch.setattr(commands, "open_lakehouse", refuse)


def fake_server(monkeypatch, code: int) -> list:
    """``movielens_als.serving.server`` replaced by one whose serve records its arguments and returns ``code``."""
    calls = []
    fake = types.ModuleType("movielens_als.serving.server")
    fake.serve = lambda *args: calls.append(args) or code
    monkeypatch.setitem(sys.modules, "movielens_als.serving.server", fake)
    monkeypatch.setattr(movielens_als.serving, "server", fake, raising=False)
    return calls


def test_deploy_and_serve_options_come_from_config():
    parser = commands.build_parser()
    args = parser.parse_args(["deploy"])
    assert (args.endpoint_name, args.workload_size, args.scale_to_zero, args.readers_group, args.timeout) == (
        "movielens-als",
        "Small",
        True,
        "account users",
        2400,
    )
    assert config.DEPLOY.endpoint_name == args.endpoint_name
    assert parser.parse_args(["deploy", "--scale-to-zero", "false"]).scale_to_zero is False
    with pytest.raises(SystemExit):
        parser.parse_args(["deploy", "--workload-size", "Huge"])
    serve = parser.parse_args(["serve"])
    assert (serve.host, serve.port) == ("127.0.0.1", 5000) == (config.SERVE.host, config.SERVE.port)


def test_serve_hands_namespace_home_host_and_port_to_the_scoring_server(monkeypatch, no_spark, tmp_path):
    calls = fake_server(monkeypatch, 0)
    cli.main(["serve", "--schema", "films", "--home", str(tmp_path), "--host", "0.0.0.0", "--port", "5001"])
    assert calls == [(Namespace("spark_catalog", "films"), str(tmp_path), "0.0.0.0", 5001, "movielens-als")]


def test_serve_exit_code_is_the_servers(monkeypatch, no_spark):
    fake_server(monkeypatch, 3)
    with pytest.raises(SystemExit) as info:
        cli.main(["serve"])
    assert info.value.code == 3


def test_deploy_configures_the_registry_and_runs_the_task_without_spark(monkeypatch, no_spark, capsys, tmp_path):
    seen = {}
    monkeypatch.setattr(registry, "configure", lambda home, experiment=None: seen.update(home=home))

    def deploy(namespace, **options):
        seen.update(namespace=namespace, **options)
        return TaskResult("deploy", details={"version": 3}, headline="no endpoint created locally")

    monkeypatch.setattr(deploy_task, "deploy", deploy)
    cli.main(["deploy", "--home", str(tmp_path), "--endpoint-name", "mine", "--workload-size", "Large"])
    assert seen == {
        "home": str(tmp_path),
        "namespace": Namespace("spark_catalog", "movielens"),
        "endpoint_name": "mine",
        "workload_size": "Large",
        "scale_to_zero": True,
        "readers_group": "account users",
        "timeout": 2400,
    }
    assert capsys.readouterr().out == "deploy: version=3\nno endpoint created locally\n"
