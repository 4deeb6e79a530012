"""The app's HTML: one page, four views, drawn on the server so a shared link opens a view with its answer.

Every value is escaped here, the one place text becomes HTML. *Rate and see* adds a little script (``rate.js``): it
searches titles and posts the ratings to ``/api/rate``, which answers with the same list markup the other views use.
"""

from __future__ import annotations

import json
from html import escape
from urllib.parse import urlencode

from movielens_als.app.backend import Health, Movie, Scale
from movielens_als.app.views import Answer

VIEWS = {"foryou": "For you", "rate": "Rate and see", "similar": "Similar movies", "health": "Health"}

_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;color:#1b1b1b;background:#fafafa}
header{background:#1b3139;color:#fff;padding:12px 24px}header h1{font-size:20px;margin:0}
nav{display:flex;gap:4px;padding:0 24px;background:#eef1f2}nav a{padding:10px 14px;color:#1b3139;text-decoration:none}
nav a.active{border-bottom:3px solid #ff3621;font-weight:600}main{padding:16px 24px;max-width:900px}
form{margin:8px 0 16px}input,select,button{font-size:15px;padding:5px 8px}
ol.picks li{margin:6px 0}.meta{color:#5a6b73;font-size:13px}.because{color:#2a6f4e;font-size:13px}
#message{background:#fdecea;border:1px solid #f5c2bd;padding:8px 12px;margin:8px 0}
.source{font-size:13px;color:#5a6b73}table{border-collapse:collapse}td,th{padding:3px 10px;text-align:left;
border-bottom:1px solid #e2e6e8;font-size:14px}footer{color:#8a989e;font-size:12px;padding:16px 24px}
#results li button{margin-left:8px}
"""


def page(view: str, body: str, footer: str, message: str | None = None) -> str:
    tabs = "".join(
        f'<a href="/?{urlencode({"view": key})}" class="{"active" if key == view else ""}" id="tab-{key}">{name}</a>'
        for key, name in VIEWS.items()
    )
    shown = f'<div id="message" role="alert">{escape(message)}</div>' if message else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="icon" href="data:,"><title>MovieLens ALS: {escape(VIEWS[view])}</title><style>{_STYLE}</style>'
        f"</head><body><header><h1>MovieLens ALS recommendations</h1></header><nav>{tabs}</nav>"
        f'<main id="view-{view}">{shown}{body}</main><footer>{escape(footer)}</footer></body></html>'
    )


def picks(answer: Answer) -> str:
    """The answer as an ordered list; each item carries its movie id for scripts and tests."""
    items = []
    for pick in answer.picks:
        because = f'<div class="because">because you rated {escape(pick.because.title)}</div>' if pick.because else ""
        items.append(
            f'<li data-movie-id="{pick.movie.movie_id}"><span class="title">{escape(pick.movie.title)}</span> '
            f'<span class="meta">{escape(_meta(pick.movie))} · score {pick.score:.3f}</span>{because}</li>'
        )
    source = f'<p class="source" id="source" data-source="{escape(answer.source)}">{_SOURCES[answer.source]}'
    return f'{source}</p><ol class="picks" id="picks">{"".join(items)}</ol>'


_SOURCES = {
    "personal": "Served from the user's own factors: the same movies as user_recommendations.",
    "folded": "Your ratings folded into the champion's item factors, rated movies left out.",
    "popular": "Popular movies (too few of your ratings are known to the model to personalise yet).",
}


def for_you_form(user: str) -> str:
    return (
        '<form method="get" action="/"><input type="hidden" name="view" value="foryou">'
        f'<label>User id <input name="user" id="user" value="{escape(user)}" inputmode="numeric" size="8"></label> '
        '<button type="submit">Show</button></form>'
    )


def similar_form(title: str) -> str:
    return (
        '<form method="get" action="/"><input type="hidden" name="view" value="similar">'
        f'<label>Title <input name="movie" id="movie" value="{escape(title)}" size="40"></label> '
        '<button type="submit">Similar</button></form>'
    )


def similar_list(movie: Movie, others: list[tuple[Movie, float]]) -> str:
    items = "".join(
        f'<li data-movie-id="{m.movie_id}"><span class="title">{escape(m.title)}</span> '
        f'<span class="meta">{escape(_meta(m))} · cosine {s:.3f}</span></li>'
        for m, s in others
    )
    return f'<h2 id="movie-title">{escape(movie.title)}</h2><ol class="picks" id="picks">{items}</ol>'


def rate(scale: Scale, min_ratings: int) -> str:
    options = "".join(f'<option value="{v:g}">{v:g}</option>' for v in reversed(scale.values))
    return (
        f"<p>Search a title, rate a few movies ({scale.low:g} to {scale.high:g} stars), and the champion folds your "
        f"ratings in: from {min_ratings} known ratings on, the list is yours.</p>"
        '<form id="search-form" onsubmit="return false"><input id="search" placeholder="Title, e.g. Star Wars" '
        'size="40" autocomplete="off"></form><ul id="results"></ul><h3>Your ratings</h3><ul id="rated"></ul>'
        '<p><button type="button" id="save" disabled>Save my ratings</button> '
        '<span class="meta">gives you a user id; the next run trains on your ratings</span></p>'
        '<h3>Recommended for you</h3><div id="answer"></div>'
        f'<script>const STARS={json.dumps(options)};</script><script src="/static/rate.js"></script>'
    )


def saved(user_id: int) -> str:
    return (
        f'<p id="saved" data-user-id="{user_id}">Saved as user {user_id}. After the next run, '
        f'<a href="/?user={user_id}">/?user={user_id}</a> shows recommendations of your own.</p>'
    )


def health(health: Health) -> str:
    sections = [
        ("Champion", {"recommender model version": health.champion_version}),
        ("Its training run", health.training_run),
        ("Latest gate decision", health.decision),
        ("Latest serving health", health.serving),
    ]
    out = []
    for title, row in sections:
        if not row:
            out.append(f"<h3>{title}</h3><p>none yet</p>")
            continue
        cells = "".join(f"<tr><th>{escape(str(k))}</th><td>{escape(_cell(v))}</td></tr>" for k, v in row.items())
        out.append(f'<h3>{title}</h3><table class="health">{cells}</table>')
    return "".join(out)


def _meta(movie: Movie) -> str:
    parts = [str(movie.year)] if movie.year else []
    return " · ".join(parts + ([", ".join(movie.genres)] if movie.genres else []))


def _cell(value) -> str:
    if value is None or value != value:  # NaN
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)[:300]
