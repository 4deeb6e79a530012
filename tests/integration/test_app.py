"""`movielens-als app` on the reference DAG's lakehouse, in a real browser (Debian's Chromium driven by Playwright):
each view answers as the serving tables hold, a shared link opens its view, bad input is one message in the page,
the console stays clean, and the process keeps serving and stops on Ctrl-C. A screenshot of each view is written."""

from __future__ import annotations

import json
import shutil
import signal
from urllib.parse import quote

import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from movielens_als.lakehouse.catalog import delta_path
from tests.fake_api import cli_server
from tests.optional import require, unavailable
from tests.reference import FEEDBACK_USER, REPO, SCHEMA, feedback_of

pytestmark = pytest.mark.integration
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SAVED: list[int] = []  # the user ids the save test was given


@pytest.fixture(scope="module")
def app_url(reference):
    with cli_server(["app", "--home", str(reference.home)], "/healthz", REPO) as started:
        yield started


@pytest.fixture(scope="module")
def browser():
    sync_api = require("playwright.sync_api", "the app's browser tests drive Chromium with Playwright")
    if CHROMIUM is None:
        unavailable("Debian's chromium is not installed (.ci/run installs it)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, app_url, tmp_path_factory):
    """A fresh page that records console errors and uncaught exceptions; the test asserts there are none."""
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    tab = context.new_page()
    tab.problems = []
    tab.on("console", lambda m: tab.problems.append(m.text) if m.type in ("error", "warning") else None)
    tab.on("pageerror", lambda exc: tab.problems.append(str(exc)))
    tab.shots = tmp_path_factory.mktemp("app_screenshots")
    yield tab
    context.close()


def titles(tab) -> list[str]:
    return tab.locator("#picks li .title").all_inner_texts()


def movie_ids(tab) -> list[int]:
    return [int(i) for i in tab.locator("#picks li").evaluate_all("items => items.map(i => i.dataset.movieId)")]


def test_a_shared_link_opens_for_you_with_the_users_served_titles_in_order(spark, reference, app_url, page):
    _, url = app_url
    recs = reference.table(spark, "user_recommendations")
    user = recs.agg(F.min("user_id")).first()[0]
    expected = (
        recs.where(F.col("user_id") == user).join(reference.table(spark, "movies"), "movie_id")
        .orderBy("rank").select("title").toPandas()["title"].tolist()
    )  # fmt: skip
    page.goto(f"{url}/?user={user}")
    assert page.locator("#tab-foryou").get_attribute("class") == "active"
    assert page.locator("#source").get_attribute("data-source") == "personal"
    assert titles(page) == expected and len(expected) == 10
    page.screenshot(path=str(page.shots / "for_you.png"), full_page=True)
    assert page.problems == []


def test_rating_five_movies_shows_folded_recommendations_without_them(spark, reference, app_url, page):
    _, url = app_url
    page.goto(f"{url}/?view=rate")
    wanted = (
        reference.table(spark, "ratings").groupBy("movie_id").count().join(reference.table(spark, "movies"), "movie_id")
        .orderBy(F.desc("count"), "movie_id").limit(5).select("movie_id", "title").collect()
    )  # fmt: skip
    for i, movie in enumerate(wanted):
        page.fill("#search", movie["title"])
        row = page.locator(f'#results li[data-movie-id="{movie["movie_id"]}"]')
        row.locator("select").select_option("4.5" if i % 2 else "5")  # the release has half stars
        row.locator("button").click()
        page.wait_for_function(f"document.querySelectorAll('#rated li').length === {i + 1}")
    page.wait_for_function("document.querySelector('#answer #picks li') !== null")
    page.wait_for_timeout(300)  # the answer to the last rating replaces the one before it
    rated = {movie["movie_id"] for movie in wanted}
    shown = movie_ids(page)
    assert len(shown) == 10 and not rated & set(shown)
    assert page.locator("#source").get_attribute("data-source") == "folded"
    because = page.locator("#picks .because").all_inner_texts()
    titles_rated = {movie["title"] for movie in wanted}
    assert len(because) == 10 and all(line.removeprefix("because you rated ") in titles_rated for line in because)
    page.screenshot(path=str(page.shots / "rate_and_see.png"), full_page=True)
    assert page.problems == []


def test_similar_movies_opens_from_a_title_link_as_similar_movies_holds(spark, reference, app_url, page):
    _, url = app_url
    similar = reference.table(spark, "similar_movies")
    movies = reference.table(spark, "movies")
    movie_id = similar.agg(F.min("movie_id")).first()[0]
    title = movies.where(F.col("movie_id") == movie_id).first()["title"]
    expected = similar.where(F.col("movie_id") == movie_id).orderBy("rank").toPandas()["similar_movie_id"].tolist()
    page.goto(f"{url}/?movie={quote(title)}")
    assert page.locator("#movie-title").inner_text() == title
    assert movie_ids(page) == expected
    page.screenshot(path=str(page.shots / "similar.png"), full_page=True)
    assert page.problems == []


def test_health_shows_the_champion_its_run_the_gate_and_serving_health(reference, app_url, page):
    _, url = app_url
    page.goto(f"{url}/?view=health")
    text = page.locator("main").inner_text()
    assert "recommender model version\t1" in text and reference.run_id in text
    assert "promoted" in text or "first" in text
    assert "users_served" in text
    page.screenshot(path=str(page.shots / "health.png"), full_page=True)
    assert page.problems == []


@pytest.mark.parametrize(
    ("link", "message"),
    [
        ("/?user=abc", "the user id must be a positive whole number, got 'abc'"),
        ("/?user=99999999", "user 99999999 is not known to the champion model"),
        ("/?movie=No%20Such%20Film", "no movie is titled 'No Such Film'"),
    ],
)
def test_bad_input_is_one_message_in_the_page_and_the_app_keeps_serving(app_url, page, link, message):
    _, url = app_url
    response = page.goto(url + link)
    assert response.status == 200
    assert page.locator("#message").count() == 1 and message in page.locator("#message").inner_text()
    assert "Traceback" not in page.content()
    assert page.problems == []
    assert page.goto(f"{url}/healthz").status == 200


def test_an_empty_rating_list_is_a_message(app_url, page):
    _, url = app_url
    page.goto(f"{url}/?view=rate")
    answer = page.evaluate(
        "fetch('/api/rate', {method: 'POST', body: JSON.stringify({ratings: {}})}).then(r => r.json())"
    )
    assert answer == {"error": "rate at least one movie to see recommendations"}


def test_saving_ratings_gives_new_people_distinct_ids_and_logs_them_for_the_next_run(reference, app_url, page):
    _, url = app_url
    page.goto(f"{url}/?view=rate")
    movie = feedback_of(reference.release).movies[0]
    saves = page.evaluate(
        """movie => Promise.all([0, 1].map(() => fetch('/api/save', {method: 'POST',
             headers: {'Content-Type': 'application/json'}, body: JSON.stringify({ratings: {[movie]: 4}})})
           .then(r => r.json())))""",
        movie,
    )
    ids = sorted(save["user_id"] for save in saves)
    assert len(set(ids)) == 2 and ids[0] > FEEDBACK_USER, saves  # above MovieLens's ids and the ones given before
    assert all(f"Saved as user {save['user_id']}" in save["html"] for save in saves)
    assert page.problems == []
    SAVED.extend(ids)  # checked in the inference table once Ctrl-C has flushed its log


def test_the_app_stops_cleanly_on_ctrl_c_and_logged_the_saved_ratings(reference, app_url):
    process, _ = app_url
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "app at http://127.0.0.1:" in output and "Traceback" not in output, output
    logged = DeltaTable(str(delta_path(reference.home, SCHEMA, "movielens_als_payload"))).to_pandas()
    records = [json.loads(r)["dataframe_records"][0] for r in logged["request"] if r.startswith('{"dataframe_records"')]
    users = {record.get("user_id") for record in records}
    assert SAVED and set(SAVED) <= users
