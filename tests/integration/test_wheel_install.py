"""The built wheel, installed into a new virtual environment, runs from there and not from src/.

The new venv gets the wheel alone (``--no-deps``); its dependencies (pyspark, delta-spark,
pandas, pyarrow: about 1 GB) are borrowed from the project venv through a ``.pth`` line that
sorts after the venv's own site-packages. Copying them would cost minutes on every CI run and
test pip, not the wheel; instead the test checks that every requirement the wheel declares is
satisfied by what it runs with. Nothing runs from the source tree: the working directory is
a temporary folder and the test asserts where ``movielens_als`` is imported from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import uuid
from pathlib import Path

import pytest

from tests.fixtures import write_ml100k

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def run(cmd: list, cwd: Path, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A venv with the freshly built wheel installed; returns its bin folder."""
    work = tmp_path_factory.mktemp("wheel_install")
    try:
        import hatchling  # noqa: F401

        isolation = ["--no-isolation"]
    except ImportError:
        isolation = []
    build = run([sys.executable, "-m", "build", "--wheel", *isolation, "--outdir", work / "dist", REPO], work)
    assert build.returncode == 0, build.stderr
    (wheel,) = (work / "dist").glob("*.whl")

    venv = work / "venv"
    made = run([sys.executable, "-m", "venv", "--without-pip", venv], work)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    purelib = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], work).stdout.strip()
    # Borrowed dependencies come after the venv's own site-packages, so the wheel wins.
    Path(purelib, "zz_borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "--no-compile", wheel],
        work,
    )
    assert pip.returncode == 0, pip.stderr
    return venv / "bin"


def test_installed_package_is_imported_from_the_venv_not_the_source_tree(installed, tmp_path):
    probe = run([installed / "python", "-c", "import movielens_als; print(movielens_als.__file__)"], tmp_path)
    assert probe.returncode == 0, probe.stderr
    location = Path(probe.stdout.strip())
    assert installed.parent in location.parents
    assert REPO / "src" not in location.parents


def test_installed_wheel_dependencies_are_satisfied(installed, tmp_path):
    check = r"""
import json
from importlib import metadata
from packaging.requirements import Requirement
missing = []
for text in metadata.requires("movielens-als") or []:
    req = Requirement(text)
    if req.marker and not req.marker.evaluate({"extra": ""}):
        continue  # an extra: [evaluate] and [dev] are optional
    try:
        version = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        missing.append(f"{req} (not installed)")
        continue
    if not req.specifier.contains(version, prereleases=True):
        missing.append(f"{req} (found {version})")
print(json.dumps(missing))
"""
    proc = run([installed / "python", "-c", check], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def test_installed_console_script_prints_help_with_every_subcommand(installed, tmp_path):
    proc = run([installed / "movielens-als", "--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    for command in ("land", "split", "train", "evaluate", "promote", "recommend", "publish", "sql", "synth", "run"):
        assert command in proc.stdout


def delta_row_count(table_dir: Path) -> int:
    """Rows of a Delta table from its log alone: numRecords of the data files still live."""
    live: dict[str, int] = {}
    for commit in sorted((table_dir / "_delta_log").glob("*.json")):
        for line in commit.read_text().splitlines():
            action = json.loads(line)
            if "add" in action:
                live[action["add"]["path"]] = json.loads(action["add"]["stats"])["numRecords"]
            elif "remove" in action:
                live.pop(action["remove"]["path"], None)
    return sum(live.values())


def test_installed_wheel_lands_a_tiny_ml100k_folder(installed, tmp_path):
    source = write_ml100k(tmp_path / "ml-100k")
    home = tmp_path / "lakehouse"
    schema = f"t_{uuid.uuid4().hex[:12]}"

    proc = run(
        [installed / "movielens-als", "land", "--source", source, "--home", home, "--schema", schema],
        tmp_path,
        timeout=600,
        env={"MOVIELENS_ALS_DRIVER_MEMORY": "1g"},
    )

    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = [line for line in proc.stdout.splitlines() if line.startswith("land:")]
    assert summary and "ratings=6 movies=4 users=3" in summary[0], proc.stdout
    warehouse = home / "warehouse" / f"{schema}.db"
    assert delta_row_count(warehouse / "ratings") == 6
    assert delta_row_count(warehouse / "movies") == 4
