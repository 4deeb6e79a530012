"""Serving benchmark: the recommender model behind MLflow's scoring server, for ml-100k and 25M synthetic ratings.

Usage: python benchmarks/serve.py [--sizes 100k,25m] [--work DIR] [--seconds 30] [--requests 2000]

For each size a subprocess builds the model as ``train`` does, so the JVM is gone before anything is
measured: Spark reads the ratings (100k: the real ml-100k at $MOVIELENS_100K; 25m: a ``movielens-als
synth`` release, cached in the work folder), fits the ranking model on all of them (100k: the default
grid's ranking point; 25m: the scale benchmark's, rank 16, 10 iterations), ``save_recommender`` writes
the artifacts and ``mlflow.pyfunc.save_model`` a local pyfunc model (no registry or tracking server). A
fresh process times ``mlflow.pyfunc.load_model``; another serves ``create_app(model, log)`` (every request logged
to an inference table, as ``serve`` does) under uvicorn on
a free 127.0.0.1 port. Keep-alive ``http.client`` connections (one per client thread) then send
``--requests`` sequential requests and, from 8 concurrent clients, requests for ``--seconds``; each
workload is warmed up with 20 uncounted requests. Known users: ``{"user_id": u, "n": 10}`` for users with
at least min_ratings ratings; fold-in: 20 random known movies with random ratings and ``"n": 10``. The
table shows p50/p99 latency, requests/s and non-200 answers, then the issue's targets, met or missed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

from scale import SCALE_GRID

REPO = Path(__file__).resolve().parents[1]
SIZES = ("100k", "25m")
CLIENTS, WARMUP, FOLD_IN_RATINGS, BODIES = 8, 20, 20, 1000
HEADERS = {"Content-Type": "application/json"}
P99_MS, LOAD_S = 30.0, 30.0


def build(size: str, work: Path, n_ratings: int) -> None:
    """In its own process: fit the ranking model with Spark, write the artifacts, save the pyfunc model."""
    import mlflow
    from pyspark.sql import functions as F

    from movielens_als.lakehouse.spark import get_spark
    from movielens_als.ml.grid import DEFAULT_GRID
    from movielens_als.ml.hyperparams import RankingParams
    from movielens_als.ml.ranking_model import fit_ranking_model
    from movielens_als.serving.artifacts import recommender_params, save_recommender
    from movielens_als.serving.model import SIGNATURE, RecommenderPyfunc

    spark = get_spark(work / f"home-{size}")
    schema = "user_id INT, movie_id INT, rating DOUBLE, ts LONG"
    if size == "100k":
        source = Path(os.environ["MOVIELENS_100K"])
        ratings = spark.read.csv(str(source / "u.data"), sep="\t", schema=schema)
        genres = [line.split("|")[0] for line in (source / "u.genre").read_text("latin-1").splitlines() if line]
        flags = ", ".join(f"g{i} INT" for i in range(len(genres)))
        items = spark.read.csv(
            str(source / "u.item"), sep="|", encoding="ISO-8859-1",
            schema=f"movie_id INT, title STRING, released STRING, video STRING, url STRING, {flags}",
        )  # fmt: skip
        named = F.array(*(F.when(F.col(f"g{i}") == 1, F.lit(g)) for i, g in enumerate(genres)))
        movies = items.select("movie_id", "title", F.filter(named, lambda g: g.isNotNull()).alias("genres"))
        point = DEFAULT_GRID["ranking"]
    else:
        release = work / f"synth-{n_ratings}"
        ratings = spark.read.csv(str(release / "ratings.csv"), header=True, schema=schema)
        movies = spark.read.csv(
            str(release / "movies.csv"), header=True, escape='"', schema="movie_id INT, title STRING, genres STRING"
        ).withColumn("genres", F.split("genres", r"\|"))
        point = SCALE_GRID["ranking"]
    params = RankingParams.from_dict({name: values[0] for name, values in point.items()})
    ratings = ratings.select("user_id", "movie_id", "rating").cache()
    factors = fit_ranking_model(ratings, params, seed=DEFAULT_GRID["seed"])
    artifacts, model = work / f"artifacts-{size}", work / f"model-{size}"
    shutil.rmtree(artifacts, ignore_errors=True)
    save_recommender(artifacts, factors, ratings, movies, recommender_params(params, "bench-serve"), work / "scratch")
    spark.stop()
    shutil.rmtree(model, ignore_errors=True)
    mlflow.pyfunc.save_model(
        str(model), python_model=RecommenderPyfunc(), artifacts={"model": str(artifacts)}, signature=SIGNATURE
    )


def load(model: Path) -> None:
    """In a fresh process: time the load and print it with the ids the requests draw from, as JSON."""
    import mlflow

    started = time.monotonic()
    loaded = mlflow.pyfunc.load_model(str(model))
    seconds = time.monotonic() - started
    rec = loaded.unwrap_python_model().recommender
    users = rec.user_ids[np.diff(rec.seen_indptr) >= rec.params["min_ratings"]]
    scale = [rec.params["rating_min"], rec.params["rating_max"]]
    print(json.dumps({"load_s": seconds, "users": users.tolist(), "movies": rec.item_ids.tolist(), "scale": scale}))


def serve(model: Path, port: int, logged: bool = True) -> None:
    import mlflow
    import uvicorn

    from movielens_als.serving.inference import InferenceLog
    from movielens_als.serving.server import create_app

    # As `serve` runs: every request logged to an inference table (here beside the model), flushed each second.
    log = InferenceLog(model.parent / f"{model.name}_payload", "recommender-bench") if logged else None
    try:
        uvicorn.run(create_app(mlflow.pyfunc.load_model(str(model)), log), host="127.0.0.1", port=port,
                    log_level="warning")  # fmt: skip
    finally:
        if log is not None:
            log.close()


def run(*args: str, log: Path, env: dict | None = None) -> str:
    """This script (or the CLI) in a subprocess; its stdout, or exit with the log's tail on failure."""
    command = [sys.executable, *args]
    with log.open("w") as err:
        done = subprocess.run(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=err, text=True, check=False)
    if done.returncode:
        tail = "".join(log.read_text().splitlines(keepends=True)[-40:])
        raise SystemExit(f"{' '.join(args[:3])} failed ({done.returncode}):\n{done.stdout[-2000:]}{tail}")
    return done.stdout


def bodies(info: dict, rng: np.random.Generator) -> dict[str, list[bytes]]:
    users, movies = np.array(info["users"]), np.array(info["movies"])
    low, high = int(np.ceil(info["scale"][0])), int(np.floor(info["scale"][1]))
    known = [{"user_id": int(u), "n": 10} for u in rng.choice(users, BODIES)]
    folded = [
        {"movie_ids": rng.choice(movies, FOLD_IN_RATINGS, replace=False).tolist(),
         "ratings": rng.integers(low, high + 1, FOLD_IN_RATINGS).astype(float).tolist(), "n": 10}
        for _ in range(BODIES)
    ]  # fmt: skip
    return {w: [json.dumps({"dataframe_records": [r]}).encode() for r in rows] for w, rows in
            (("known user", known), ("fold-in 20", folded))}  # fmt: skip


def client(port: int, payloads: list[bytes], start: int, count: int, deadline: float, out: list) -> None:
    """Up to ``count`` requests until ``deadline`` on one keep-alive connection: appends (latencies, errors)."""
    conn, latencies, errors = http.client.HTTPConnection("127.0.0.1", port, timeout=30), [], 0
    for i in range(count):
        if time.monotonic() >= deadline:
            break
        started = time.perf_counter()
        try:
            conn.request("POST", "/invocations", payloads[(start + i) % len(payloads)], HEADERS)
            response = conn.getresponse()
            response.read()
            errors += response.status != 200
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        latencies.append(time.perf_counter() - started)
    conn.close()
    out.append((latencies, errors))


def measure(port: int, payloads: list[bytes], clients: int, count: int, seconds: float) -> dict:
    client(port, payloads, len(payloads) - WARMUP, WARMUP, time.monotonic() + 60, [])
    out: list = []
    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(port, payloads, i * 97, count, started + seconds, out))
               for i in range(clients)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    latencies = np.concatenate([np.array(lat) for lat, _ in out]) * 1000
    p50, p99 = np.percentile(latencies, [50, 99]) if len(latencies) else (np.nan, np.nan)
    errors = sum(e for _, e in out)
    return {"requests": len(latencies), "p50": p50, "p99": p99, "rps": len(latencies) / elapsed, "errors": errors}


def wait_for_ping(port: int, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited ({server.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"no /ping answer on port {port} within 300 s")


def bench_size(size: str, work: Path, n_ratings: int, args: argparse.Namespace) -> list[dict]:
    label = "ml-100k" if size == "100k" else f"synth {n_ratings:,}"
    release = work / f"synth-{n_ratings}"
    if size != "100k" and not (release / "ratings.csv").exists():
        print(f"{label}: movielens-als synth into {release}", flush=True)
        synth = ("synth", "--ratings", str(n_ratings), "--out", str(release))
        run("-m", "movielens_als.cli", *synth, log=work / "synth.log")
    script = str(Path(__file__).resolve())
    model = work / f"model-{size}"
    if args.reuse_model and (model / "MLmodel").exists():
        print(f"{label}: reusing the model in {model} (--reuse-model)", flush=True)
    else:
        print(f"{label}: fitting and saving the model (Spark, in a subprocess)", flush=True)
        env = {**os.environ, "MOVIELENS_ALS_DRIVER_MEMORY": "6g"}
        env.pop("SPARK_REMOTE", None)
        build_args = ("--build", size, "--work", str(work), "--ratings-25m", str(n_ratings))
        run(script, *build_args, log=work / "build.log", env=env)
    info = json.loads(run(script, "--load", str(model), log=work / "load.log").splitlines()[-1])
    megabytes = sum(f.stat().st_size for f in model.rglob("*") if f.is_file()) / 1e6
    print(f"{label}: loaded in {info['load_s']:.1f} s, {megabytes:.1f} MB; serving", flush=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port, log = s.getsockname()[1], work / f"server-{size}.log"
    with log.open("w") as out:
        command = [sys.executable, script, "--serve", str(model), "--port", str(port)]
        command += ["--without-log"] if args.without_log else []
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    rows = []
    try:
        wait_for_ping(port, server, log)
        for workload, payloads in bodies(info, np.random.default_rng(0)).items():
            for mode, clients, count, seconds in (("sequential", 1, args.requests, 600.0),
                                                  (f"{CLIENTS} clients", CLIENTS, 10**7, args.seconds)):  # fmt: skip
                result = measure(port, payloads, clients, count, seconds)
                rows.append({"size": label, "ratings": n_ratings, "load_s": info["load_s"], "mb": megabytes,
                             "workload": workload, "mode": mode, **result})  # fmt: skip
                print(f"  {workload}, {mode}: {result['requests']} requests, p99 {result['p99']:.1f} ms", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    return rows


def report(rows: list[dict]) -> str:
    head = ["size", "model load s", "artifact MB", "workload", "mode", "requests", "p50 ms", "p99 ms", "req/s",
            "errors"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["size"], f"{r['load_s']:.1f}", f"{r['mb']:.1f}", r["workload"], r["mode"], f"{r['requests']:,}",
                 f"{r['p50']:.1f}", f"{r['p99']:.1f}", f"{r['rps']:,.0f}", str(r["errors"])]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    verdict = {True: "met", False: "MISSED"}
    at_25m = [r for r in rows if r["ratings"] == 25_000_000 and r["mode"] == "sequential"]
    if at_25m:
        worst = max(r["p99"] for r in at_25m)
        shown = ", ".join(f"{r['workload']} {r['p99']:.1f} ms" for r in at_25m)
        p99 = f"{shown}: {verdict[worst <= P99_MS]}"
    else:
        p99 = "not measured (needs --sizes 25m)"
    concurrent = [r for r in rows if r["mode"] != "sequential"]
    errors = sum(r["errors"] for r in concurrent)
    loads = {r["size"]: r["load_s"] for r in rows}
    lines += [
        "",
        f"targets ({os.cpu_count()} cores):",
        f"- p99 <= {P99_MS:.0f} ms for one request at 25M scale: {p99}",
        f"- zero errors under {CLIENTS} concurrent clients: {errors} errors: {verdict[errors == 0]}",
        f"- model load <= {LOAD_S:.0f} s: {', '.join(f'{s} {v:.1f} s' for s, v in loads.items())}: "
        f"{verdict[max(loads.values()) <= LOAD_S]}",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(SIZES), help=f"comma-separated subset of {', '.join(SIZES)}")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "movielens-als-bench-serve"))
    parser.add_argument("--seconds", type=float, default=30.0, help="duration of the concurrent load")
    parser.add_argument("--requests", type=int, default=2000, help="sequential requests per workload")
    parser.add_argument("--reuse-model", action="store_true", help="serve the model a previous run built")
    parser.add_argument("--without-log", action="store_true", help="serve without the inference table (as before)")
    parser.add_argument("--ratings-25m", type=int, default=25_000_000, help=argparse.SUPPRESS)
    for internal in ("--build", "--load", "--serve"):
        parser.add_argument(internal, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = Path(args.work)
    if args.build:
        return build(args.build, work, args.ratings_25m) or 0
    if args.load:
        return load(Path(args.load)) or 0
    if args.serve:
        return serve(Path(args.serve), args.port, not args.without_log) or 0
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    if unknown := [s for s in sizes if s not in SIZES]:
        parser.error(f"unknown sizes {unknown}: choose from {', '.join(SIZES)}")
    if "100k" in sizes and not (Path(os.environ.get("MOVIELENS_100K", "")) / "u.data").is_file():
        parser.error("size 100k needs MOVIELENS_100K: the folder of the real ml-100k (u.data, u.item)")
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in sizes:
        rows += bench_size(size, work, 100_000 if size == "100k" else args.ratings_25m, args)
    print(f"\n{time.strftime('%Y-%m-%d')}, {platform.platform()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}; work folder {work}\n")  # fmt: skip
    print(report(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
