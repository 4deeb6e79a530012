"""The ml-100k DAG twice: classic Spark in this process, and Spark Connect (SPARK_REMOTE=local) through the CLI.

The Connect run is what serverless and standard-access compute execute: no Spark context, no RDDs,
ALS through Spark Connect ML. Both runs use the same small grid; the rating model's ALS runs the
default grid's maxIter (20), which overflows a Connect server's stack unless its ALS checkpoints
(the ranking model's iALS checkpoints every half-step by itself, so 10 iterations prove as much).
They must produce the same splits, metrics within 1e-3 and the same top-10 for at least 99% of users.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import functions as F

from movielens_als.lakehouse import tables
from movielens_als.ml import registry
from movielens_als.tasks.evaluate import evaluate
from movielens_als.tasks.promote import promote
from movielens_als.tasks.recommend import recommend
from movielens_als.tasks.split import split
from movielens_als.tasks.train import train

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
GRID = {
    "rating": {"rank": [10], "reg_param": [0.1], "max_iter": [20], "passes": [1]},
    "ranking": {"rank": [16], "reg_param": [0.1], "alpha": [0.3], "max_iter": [10]},
}
SPLIT_COLUMNS = ["user_id", "movie_id", "rating", "rated_at", "protocol", "split", "seed"]


@pytest.fixture(scope="module")
def classic(spark, landed_ml100k):
    """split -> train -> evaluate -> recommend on the landed ml-100k, in this process's classic session."""
    namespace, storage = landed_ml100k.namespace, landed_ml100k.storage
    result = split(spark, namespace, "benchmark")
    run_id = train(spark, namespace, storage, grid=GRID).details["run_id"]
    evaluate(spark, namespace, storage, run_id=run_id, k=10)
    assert promote(spark, namespace, run_id=run_id).details["decision"] == "first"
    recommend(spark, namespace)
    return namespace, run_id, result


@pytest.fixture(scope="module")
def connect_run(movielens_100k, tmp_path_factory):
    """`movielens-als run` with SPARK_REMOTE=local, as a user runs it, queried by `movielens-als sql` from another
    process while it trains: (home, run stdout, the counts the queries printed)."""
    home = tmp_path_factory.mktemp("connect_home")
    env = {**os.environ, "SPARK_REMOTE": "local", "MOVIELENS_ALS_HOME": str(home)}
    cmd = [sys.executable, "-m", "movielens_als.cli", "run", "--source", str(movielens_100k), "--home", str(home),
           "--param", f"grid={json.dumps(GRID)}"]  # fmt: skip
    dag = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, counts = [], []
    for line in dag.stdout:
        lines.append(line)
        if line.startswith("[1/") and " land " in line and "FAILED" not in line:
            # A reader while the DAG writes: a classic session of its own on the same home.
            query = [sys.executable, "-m", "movielens_als.cli", "sql", "SELECT count(*) AS n FROM ratings",
                     "--format", "csv", "--home", str(home)]  # fmt: skip
            for _ in range(2):
                reader_env = {k: v for k, v in env.items() if k != "SPARK_REMOTE"}
                done = subprocess.run(query, cwd=REPO, env=reader_env, capture_output=True, text=True, timeout=300)
                counts.append((done.returncode, done.stdout.strip(), done.stderr[-2000:]))
    dag.wait(timeout=1500)
    stdout = "".join(lines)
    assert dag.returncode == 0, stdout[-6000:]
    return home, stdout, counts


def connect_table(spark, home: Path, name: str):
    """A table the Connect run wrote, read by its Delta path (that process's catalog is its own)."""
    return spark.read.format("delta").load(str(home / "warehouse" / "movielens.db" / name))


def test_classic_pipeline_beats_the_quickstart_baseline(spark, classic):
    namespace, run_id, result = classic
    assert result.rows["splits"] == 100_000 and result.details["test"] == 24_934  # round(0.75 n) per movie
    m = {
        (r["model"], r["metric"]): r["value"]
        for r in spark.table(namespace.table("model_metrics")).where(F.col("run_id") == run_id).collect()
    }
    assert m[("ranking", "ndcg_at_k")] > 0.3 > m[("baseline", "ndcg_at_k")]
    assert m[("rating", "rmse")] < 0.96


def test_connect_run_succeeds_and_its_als_checkpoints_on_the_server(connect_run):
    home, stdout, _ = connect_run
    for task in ("land", "split", "train", "evaluate", "promote", "recommend", "publish", "deploy"):
        assert f"] {task} " in stdout and "FAILED" not in stdout, stdout
    # maxIter 20 trained because the server's ALS cut its lineage into the lakehouse's checkpoint dir.
    assert any((home / "checkpoints").iterdir())


def test_sql_from_another_process_reads_the_tables_while_the_dag_runs(connect_run):
    """No shared metastore to lock: the reader registers the Delta tables it finds and sees the committed rows."""
    _, stdout, counts = connect_run
    assert counts, "the land task never finished"
    for code, out, err in counts:
        assert (code, out.splitlines()) == (0, ["n", "100000"]), err
    assert "[7/8] publish" in stdout and "no endpoint created locally" in stdout


def test_connect_and_classic_write_the_same_splits(spark, classic, connect_run):
    namespace, _, _ = classic
    ours = spark.table(namespace.table("splits")).where("protocol = 'benchmark'").select(SPLIT_COLUMNS)
    theirs = connect_table(spark, connect_run[0], "splits").select(SPLIT_COLUMNS)
    assert ours.count() == theirs.count() == 100_000
    assert ours.exceptAll(theirs).count() == 0 and theirs.exceptAll(ours).count() == 0


def test_connect_and_classic_metrics_agree_within_1e3(spark, classic, connect_run):
    namespace, run_id, _ = classic

    def metrics(df):
        return {(r["model"], r["metric"], r["k"]): r["value"] for r in df.collect()}

    ours = metrics(spark.table(namespace.table("model_metrics")).where(F.col("run_id") == run_id))
    theirs = metrics(connect_table(spark, connect_run[0], "model_metrics"))
    assert set(ours) == set(theirs) and len(ours) == 38
    far = {key: (ours[key], theirs[key]) for key in ours if abs(ours[key] - theirs[key]) > 1e-3}
    assert not far


def test_connect_and_classic_serve_the_same_top_10(spark, classic, connect_run):
    namespace, _, _ = classic

    def lists(df):
        return df.groupBy("user_id").agg(F.sort_array(F.collect_list("movie_id")).alias("movies"))

    ours = lists(spark.table(namespace.table("user_recommendations")))
    theirs = lists(connect_table(spark, connect_run[0], "user_recommendations"))
    joined = ours.join(theirs.withColumnRenamed("movies", "other"), "user_id", "full")
    row = joined.agg(F.count(F.lit(1)).alias("users"), F.count_if(F.col("movies") == F.col("other")).alias("same"))
    counts = row.first()
    assert counts["users"] == 943
    assert counts["same"] >= 0.99 * counts["users"]


def test_a_deliberately_bad_run_is_refused_and_the_served_rows_stay(spark, landed_ml100k, classic):
    namespace, storage = landed_ml100k.namespace, landed_ml100k.storage
    champion = registry.version_by_alias(namespace, "ranking", registry.CHAMPION)
    served = tables.table_version(spark, namespace, "user_recommendations")
    bad = {"rating": {"rank": [1], "max_iter": [1], "passes": [1]}, "ranking": {"rank": [1], "max_iter": [1]}}
    run_id = train(spark, namespace, storage, grid=bad).details["run_id"]
    evaluate(spark, namespace, storage, run_id=run_id, k=10)
    decision = promote(spark, namespace, run_id=run_id)
    assert decision.details["decision"] == "refused", decision.details["reason"]
    assert registry.version_by_alias(namespace, "ranking", registry.CHAMPION).version == champion.version
    assert recommend(spark, namespace).details["unchanged"] is True
    assert tables.table_version(spark, namespace, "user_recommendations") == served
    row = spark.table(namespace.table("promotions")).where(F.col("run_id") == run_id).first()
    assert row["champion_ndcg"] - row["challenger_ndcg"] > row["ndcg_tolerance"]


@pytest.fixture(scope="module")
def served_champion(connect_run):
    """`movielens-als serve` on the Connect run's lakehouse, as a user starts it: (process, base URL)."""
    home = connect_run[0]
    port = free_port()
    cmd = [sys.executable, "-m", "movielens_als.cli", "serve", "--home", str(home), "--port", str(port)]
    server = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    assert server.poll() is None, server.stdout.read()
    yield server, url
    if server.poll() is None:
        server.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def invoke(url: str, records) -> tuple[int, dict]:
    body = json.dumps({"dataframe_records": records}).encode() if not isinstance(records, bytes) else records
    request = urllib.request.Request(f"{url}/invocations", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_endpoint_answers_every_known_user_as_user_recommendations_holds(spark, connect_run, served_champion):
    _, url = served_champion
    table = connect_table(spark, connect_run[0], "user_recommendations").toPandas()
    users = sorted(table["user_id"].unique().tolist())
    assert len(users) == 943
    status, payload = invoke(url, [{"user_id": u, "n": 10} for u in users])
    assert status == 200, payload
    got = pd.DataFrame(payload["predictions"])
    assert set(got["source"]) == {"personal"}
    for position, user in enumerate(users):
        mine = got[got["request"] == position].sort_values("rank")
        theirs = table[table["user_id"] == user].sort_values("rank")
        assert len(mine) == len(theirs) == 10, user
        for a, b, sa, sb in zip(mine["movie_id"], theirs["movie_id"], mine["score"], theirs["score"], strict=True):
            assert a == b or abs(sa - sb) <= 1e-6, (user, a, b, sa, sb)  # scores within 1e-6 may swap


def test_the_endpoint_folds_in_fresh_ratings_falls_back_to_popular_and_survives_bad_requests(served_champion):
    _, url = served_champion
    fresh = {"movie_ids": [50, 172, 181, 174, 127], "ratings": [5, 5, 4, 5, 4], "n": 10}
    status, payload = invoke(url, [{"user_id": 196, "n": 10}, fresh, {**fresh, "user_id": 196}, {"user_id": 99999}])
    assert status == 200, payload
    got = pd.DataFrame(payload["predictions"])
    sources = got.groupby("request")["source"].first().to_dict()
    assert sources == {0: "personal", 1: "folded", 2: "folded", 3: "popular"}
    assert got.groupby("request").size().tolist() == [10, 10, 10, 10]
    assert not set(got[got["request"] == 1]["movie_id"]) & {50, 172, 181, 174, 127}
    assert set(got.columns) == {"request", "rank", "movie_id", "title", "score", "source"}
    for body in (b"{not json", [{"user_id": 1.5}], [{"user_id": 196, "n": 0}], [{"movie_ids": [1], "ratings": [9]}]):
        status, payload = invoke(url, body)
        assert 400 <= status < 500 and "Traceback" not in json.dumps(payload), payload
    assert invoke(url, [{"user_id": 196, "n": 3}])[0] == 200


def test_serve_stops_cleanly_on_ctrl_c(served_champion):
    server, _ = served_champion
    server.send_signal(signal.SIGINT)
    output, _ = server.communicate(timeout=60)
    assert server.returncode == 0, output
    assert "serving spark_catalog.movielens.movielens_als_recommender version 1 (champion)" in output
    assert "Traceback" not in output, output


# ---------------------------------------------------------------- the dashboard and the report, on the real DAG
# (imports local to these tests: the module's header stays as it was)


@pytest.fixture(scope="module")
def published(spark, classic, landed_ml100k):
    """The classic DAG's schema with the views publish creates: everything the dashboard reads."""
    from movielens_als.tasks.publish import publish

    namespace, run_id, _ = classic
    publish(spark, namespace)
    return namespace, run_id, landed_ml100k.storage


def test_every_dashboard_dataset_returns_rows_and_the_columns_its_widgets_name(spark, published):
    from movielens_als.config import REPORT_FETCH_ROWS
    from movielens_als.report.dashboard import load_dashboard
    from movielens_als.report.datasets import run_datasets

    namespace, run_id, _ = published
    board = load_dashboard()
    results = run_datasets(spark, namespace, board, REPORT_FETCH_ROWS)  # the namespace bound as the bundle binds it
    assert set(results) == set(board.datasets)
    for name, rows in results.items():
        assert rows.error is None and rows.rows, (name, rows.error)
    for page, widget in board.widgets():
        if widget.dataset is not None:
            for f in widget.fields:
                assert set(f.columns) <= set(results[widget.dataset].columns), (page.title, widget.name, f.expression)
    metrics = spark.table(namespace.table("model_metrics")).where(F.col("run_id") == run_id)
    ndcg = metrics.where("model = 'ranking' AND metric = 'ndcg_at_k'").first()["value"]
    shown = {(r["run_id"], r["model"]): r for r in results["model_quality"].records()}
    assert shown[(run_id, "ranking")]["ndcg_at_k"] == ndcg
    assert {m for _, m in shown} == {"rating", "ranking", "baseline", "popular"}
    assert results["champion"].records()[0]["decision"] == "first"
    assert results["ratings_per_month"].records()[0]["month"].isoformat() == "1997-09-01"
    assert sum(r["ratings"] for r in results["ratings_per_month"].records()) == 100_000


def test_report_of_the_ml100k_dag_has_every_datasets_title_and_figure(spark, published):
    from movielens_als.report.dashboard import load_dashboard
    from movielens_als.report.write import write_report
    from tests.unit.report.test_page import parse

    pytest.importorskip("matplotlib")
    namespace, run_id, storage = published
    result = write_report(spark, namespace, storage, run_id=run_id)
    assert result.details["unavailable"] == 0, result.headline
    path = Path(result.details["path"])
    assert path == storage / "reports" / run_id / "report.html"
    parsed = parse(path.read_text(encoding="utf-8"))
    board = load_dashboard()
    for name, dataset in board.datasets.items():
        figures = [f for f in parsed.figures if f["dataset"] == name]
        assert figures and all(dataset.title in f["caption"] for f in figures), name
        assert any(f["shows"] & {"img", "table", "counter"} for f in figures), name
    assert not any("error" in f["shows"] for f in parsed.figures)
    # Every chart is drawn but churn's: one served version so far, nothing to compare it with.
    charts = [w for _, w in board.widgets() if w.kind in ("line", "bar")]
    empty = [f["widget"] for f in parsed.figures if "empty" in f["shows"]]
    assert empty == ["churn_chart"] and sum("img" in f["shows"] for f in parsed.figures) == len(charts) - 1
    # One served version so far (the refused run kept the tables): nothing to compare, nothing fires.
    assert "Latest serving health" in parsed.text and "Within the alert's thresholds" in "".join(parsed.text)


def test_run_prints_the_reports_path_after_the_summary(connect_run):
    from tests.unit.report.test_page import parse

    home, stdout, _ = connect_run
    lines = stdout.splitlines()
    summary = next(i for i, line in enumerate(lines) if line.startswith("summary ("))
    (report,) = [i for i, line in enumerate(lines) if line.startswith("report: ")]
    assert report > summary, stdout[-3000:]
    path = Path(lines[report].removeprefix("report: "))
    assert path.is_file() and path.is_relative_to(home) and path.parts[-3] == "reports", lines[report]
    assert not any("error" in f["shows"] for f in parse(path.read_text(encoding="utf-8")).figures)
