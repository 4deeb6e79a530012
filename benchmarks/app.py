"""App benchmark: page latency of ``movielens-als app`` on a lakehouse ``movielens-als run`` left, and screenshots.

Usage: python benchmarks/app.py [--home DIR] [--requests 200] [--screenshots DIR]

Starts ``movielens-als app`` on a free 127.0.0.1 port (the champion loaded in process, tables through delta-rs),
times start-up to the first ``/healthz``, then sends ``--requests`` sequential requests per view over one keep-alive
connection, after 10 uncounted ones: *For you* for random known users, *Rate and see* (``/api/rate``, five of the
most-rated movies with random ratings), *Similar movies* for random titles, *Health*, and the title search. The table
shows p50/p99 per view against the 300 ms target. ``--screenshots`` also writes each view as Debian's Chromium shows
it (user 196, five ratings, Star Wars) into DIR.
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
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote, urlencode

import numpy as np
from deltalake import DeltaTable

REPO = Path(__file__).resolve().parents[1]
TARGET_MS = 300.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def table(home: Path, name: str):
    return DeltaTable(str(home / "warehouse" / "movielens.db" / name)).to_pandas()


def start(home: Path) -> tuple[subprocess.Popen, int, float]:
    port = free_port()
    began = time.perf_counter()
    cmd = [sys.executable, "-m", "movielens_als.cli", "app", "--home", str(home), "--port", str(port)]
    process = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    while process.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return process, port, time.perf_counter() - began
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"error: the app did not start: {process.stdout.read()}")


def timed(connection: http.client.HTTPConnection, method: str, path: str, body: dict | None) -> float:
    began = time.perf_counter()
    data = json.dumps(body).encode() if body is not None else None
    connection.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
    response = connection.getresponse()
    payload = response.read()
    elapsed = time.perf_counter() - began
    if response.status != 200 or b'id="message"' in payload or b'"error"' in payload:
        raise SystemExit(f"error: {method} {path} answered {response.status}: {payload[:300]!r}")
    return elapsed * 1000


def workloads(home: Path, rng: np.random.Generator) -> dict:
    users = table(home, "user_recommendations")["user_id"].unique()
    movies = table(home, "movies")
    similar_ids = table(home, "similar_movies")["movie_id"].unique()
    titles = movies[movies["movie_id"].isin(similar_ids)]["title"].tolist()
    popular = table(home, "popular_movies")
    top = popular[popular["genre"] == "All"].sort_values("num_ratings", ascending=False)["movie_id"].head(50).tolist()
    words = [t.split(" ")[0] for t in titles if len(t.split(" ")[0]) > 3]

    def rate():
        picked = rng.choice(top, 5, replace=False)
        return {"ratings": {str(m): float(rng.integers(3, 6)) for m in picked}}

    return {
        "For you (/?user=)": lambda: ("GET", f"/?user={rng.choice(users)}", None),
        "Rate and see (/api/rate)": lambda: ("POST", "/api/rate", rate()),
        "Similar movies (/?movie=)": lambda: ("GET", f"/?movie={quote(rng.choice(titles))}", None),
        "Health (/?view=health)": lambda: ("GET", "/?view=health", None),
        "Search (/api/search)": lambda: ("GET", "/api/search?" + urlencode({"q": rng.choice(words)}), None),
    }


def screenshots(port: int, folder: Path) -> None:
    from playwright.sync_api import sync_playwright

    folder.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), headless=True)
        page = browser.new_page(viewport={"width": 1000, "height": 800})
        page.goto(f"{url}/?user=196")
        page.screenshot(path=str(folder / "app-for-you.png"), full_page=True)
        page.goto(f"{url}/?view=rate")
        for title in ("Star Wars (1977)", "Fargo (1996)", "Toy Story (1995)", "Contact (1997)", "Titanic (1997)"):
            page.fill("#search", title)
            row = page.locator("#results li", has_text=title).first
            row.locator("select").select_option("5")
            row.locator("button").click()
        page.wait_for_function("document.querySelectorAll('#answer #picks li').length === 10")
        page.wait_for_timeout(300)
        page.fill("#search", "")
        page.wait_for_timeout(400)  # the search list empties after its 150 ms debounce
        page.screenshot(path=str(folder / "app-rate-and-see.png"), full_page=True)
        page.goto(f"{url}/?movie={quote('Star Wars (1977)')}")
        page.screenshot(path=str(folder / "app-similar.png"), full_page=True)
        page.goto(f"{url}/?view=health")
        page.screenshot(path=str(folder / "app-health.png"), full_page=True)
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", default=os.environ.get("MOVIELENS_ALS_HOME", str(REPO / ".lakehouse")))
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--screenshots", default=None)
    args = parser.parse_args()
    home = Path(args.home).resolve()
    rng = np.random.default_rng(7)
    process, port, startup = start(home)
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        rows = []
        for name, make in workloads(home, rng).items():
            for _ in range(10):
                timed(connection, *make())
            times = np.array([timed(connection, *make()) for _ in range(args.requests)])
            rows.append((name, np.percentile(times, 50), np.percentile(times, 99), times.max()))
        if args.screenshots:
            screenshots(port, Path(args.screenshots))
    finally:
        process.terminate()
        process.wait(timeout=30)
    print(f"app on {home} ({platform.machine()}, {os.cpu_count()} cores), {time.strftime('%Y-%m-%d')}")
    print(f"start-up to first answer: {startup:.1f} s")
    print(f"{'view':28} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  target p99 <= {TARGET_MS:g} ms")
    for name, p50, p99, top in rows:
        print(f"{name:28} {p50:8.1f} {p99:8.1f} {top:8.1f}  {'met' if p99 <= TARGET_MS else 'MISSED'}")


if __name__ == "__main__":
    main()
