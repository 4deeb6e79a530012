"""The app's routes: ``/`` draws a view (``?user=196`` opens *For you*, ``?movie=<title>`` *Similar movies*),
``/api/search`` and ``/api/rate`` serve *Rate and see*'s script, ``/healthz`` says the process is up.

A failure the person can cause or meet is an :class:`AppError` shown as one line in the page (status 200, so the
browser console stays clean); anything else is logged here with its traceback and shown as one generic line.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from movielens_als.app import page, views
from movielens_als.app.backend import AppError, Backend

log = logging.getLogger("movielens_als.app")
_SCRIPT = (Path(__file__).parent / "rate.js").read_text()
UNEXPECTED = "something went wrong on the server; the app keeps serving, try again"


def create_app(backend: Backend) -> FastAPI:
    app = FastAPI(title="MovieLens ALS", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse)
    async def index(view: str | None = None, user: str | None = None, movie: str | None = None) -> HTMLResponse:
        view = view if view in page.VIEWS else "similar" if movie is not None and user is None else "foryou"
        if view == "rate":
            html = await run_in_threadpool(_draw, backend, lambda: page.rate(backend.scale(), backend.min_ratings()))
        else:
            html = await run_in_threadpool(_draw_view, backend, view, user, movie)
        return HTMLResponse(html)

    @app.get("/api/search")
    async def search(q: str = "") -> JSONResponse:
        return await run_in_threadpool(_json, lambda: {"movies": [vars(m) for m in views.search(backend, q)]})

    @app.post("/api/rate")
    async def rate(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": 'the request body must be JSON: {"ratings": {"<movie id>": <rating>}}'})
        ratings = body.get("ratings") if isinstance(body, dict) else None
        return await run_in_threadpool(_json, lambda: {"html": page.picks(views.rate_and_see(backend, ratings))})

    @app.post("/api/save")
    async def save(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": 'the request body must be JSON: {"ratings": {"<movie id>": <rating>}}'})
        ratings = body.get("ratings") if isinstance(body, dict) else None

        def saved() -> dict:
            user_id, answer = views.save(backend, ratings)
            return {"user_id": user_id, "html": page.saved(user_id) + page.picks(answer)}

        return await run_in_threadpool(_json, saved)

    @app.get("/static/rate.js")
    async def script() -> PlainTextResponse:
        return PlainTextResponse(_SCRIPT, media_type="text/javascript")

    @app.get("/healthz", response_class=PlainTextResponse)
    async def healthz() -> str:
        return "ok"

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("%s %s failed", request.method, request.url.path)
        return PlainTextResponse(UNEXPECTED, status_code=500)

    return app


def _draw_view(backend: Backend, view: str, user: str | None, movie: str | None) -> str:
    def body() -> str:
        if view == "foryou":
            form = page.for_you_form(user or "")
            if user is None:
                return form + "<p>Pick a MovieLens user to see what the champion serves them.</p>"
            user_id, answer = _shown(lambda: views.for_you(backend, user), form)
            return form + f"<h2>Top {len(answer.picks)} for user {user_id}</h2>" + page.picks(answer)
        if view == "similar":
            form = page.similar_form(movie or "")
            if movie is None:
                return form + "<p>Give a title exactly as listed, e.g. from Rate and see's search.</p>"
            return form + page.similar_list(*_shown(lambda: views.similar(backend, movie), form))
        return page.health(views.health(backend))

    return _draw(backend, body, view)


class _ShownError(Exception):
    """An AppError with the markup to draw above its message (the view's form, so the person can try again)."""

    def __init__(self, message: str, markup: str) -> None:
        super().__init__(message)
        self.markup = markup


def _shown(call, markup: str):
    try:
        return call()
    except AppError as exc:
        raise _ShownError(str(exc), markup) from None


def _draw(backend: Backend, body, view: str = "rate") -> str:
    footer = _footer(backend)
    try:
        return page.page(view, body(), footer)
    except _ShownError as shown:
        return page.page(view, shown.markup, footer, str(shown))
    except AppError as exc:
        return page.page(view, "", footer, str(exc))
    except Exception:
        log.exception("drawing %s failed", view)
        return page.page(view, "", footer, UNEXPECTED)


def _json(call) -> JSONResponse:
    try:
        return JSONResponse(call())
    except AppError as exc:
        return JSONResponse({"error": str(exc)})
    except Exception:
        log.exception("an API call failed")
        return JSONResponse({"error": UNEXPECTED})


def _footer(backend: Backend) -> str:
    try:
        return f"Answers from {backend.describe()}."
    except Exception:  # noqa: BLE001 - a footer never fails the page
        return ""
