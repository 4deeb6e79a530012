"""The hyperparameter grid ``train`` searches: the default, its JSON format and its validation.

Grid format (``--grid`` JSON; omitted keys keep the default grid's values; the rating model's
``knn_k``/``knn_power``, its neighbour feature, are chosen when the blend is fitted, not by an ALS fit)::

    {"rating":  {"reg_user": [3, 5], "reg_item": [3, 5], "rank": [50, 100],
                 "reg_param": [0.12, 0.15], "max_iter": [20], "passes": [1, 3],
                 "knn_k": [100], "knn_power": [3.0]},
     "ranking": {"rank": [64, 128], "reg_param": [0.1, 0.13], "alpha": [0.6, 1.0], "beta": [0, 2.3],
                 "max_iter": [10], "implicit_value": ["one", "rating"]},
     "k": 10, "seed": 42}
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from movielens_als.errors import MovieLensAlsError

# Rating: one point, the benchmark grid's winner on ml-100k (benchmarks/als_ml100k.py), so `make run` trains what
# the README's Results measured without searching again. Ranking: iALS with alpha 0.6 (it won in 9 of 10 seeds) and
# beta 2.3 (times the mean user's or movie's ratings: on ml-100k's tuning fit the same penalty as 0.1 x the other
# side's count, which at 5M ratings ranked like popularity); nDCG responds sharply to lambda, so its four values are
# searched. The measurements behind both: README, Results.
DEFAULT_GRID: dict[str, Any] = {
    "rating": {
        "reg_user": [3.0],
        "reg_item": [3.0],
        "rank": [50],
        "reg_param": [0.12],
        "max_iter": [20],
        "passes": [3],
        # On ml-100k over 6 seeds K = 100, power 3 was chosen most; the settings tried were within 0.002 RMSE.
        # In the grid so `--grid` can search them, at the cost of one blend fit per point.
        "knn_k": [100],
        "knn_power": [3.0],
    },
    "ranking": {
        "rank": [64],
        "reg_param": [0.085, 0.1, 0.115, 0.13],
        "alpha": [0.6],
        "beta": [2.3],
        "max_iter": [10],
        "implicit_value": ["rating"],
    },
    "k": 10,
    "seed": 42,
}
_NUMERIC = {
    "rating": {
        "reg_user": float,
        "reg_item": float,
        "rank": int,
        "reg_param": float,
        "max_iter": int,
        "passes": int,
        "knn_k": int,
        "knn_power": float,
    },
    "ranking": {"rank": int, "reg_param": float, "alpha": float, "beta": float, "max_iter": int},
}
IMPLICIT_VALUES = ("one", "rating")


def parse_grid(grid: str | dict | None) -> dict[str, Any]:
    """The default grid overlaid with ``grid`` (JSON text or dict), validated; lists everywhere."""
    if grid is None or grid == "":
        user: dict = {}
    elif isinstance(grid, dict):
        user = grid
    else:
        try:
            user = json.loads(grid)
        except json.JSONDecodeError as exc:
            raise MovieLensAlsError(f"--grid is not valid JSON: {exc}") from None
    if not isinstance(user, dict):
        raise MovieLensAlsError("--grid must be a JSON object with keys rating, ranking, k, seed")
    unknown = set(user) - set(DEFAULT_GRID)
    if unknown:
        raise MovieLensAlsError(f"--grid: unknown keys {sorted(unknown)}; expected {sorted(DEFAULT_GRID)}")
    out: dict[str, Any] = {}
    for model, types in _NUMERIC.items():
        section = user.get(model, {})
        if not isinstance(section, dict):
            raise MovieLensAlsError(f"--grid: {model} must be an object of parameter lists")
        allowed = set(types) | ({"implicit_value"} if model == "ranking" else set())
        bad = set(section) - allowed
        if bad:
            raise MovieLensAlsError(f"--grid: unknown {model} parameters {sorted(bad)}; expected {sorted(allowed)}")
        merged = {}
        for name in sorted(allowed):
            values = section.get(name, DEFAULT_GRID[model][name])
            values = values if isinstance(values, list) else [values]
            if not values:
                raise MovieLensAlsError(f"--grid: {model}.{name} is an empty list")
            merged[name] = [_check_value(model, name, v) for v in values]
        out[model] = merged
    for name in ("k", "seed"):
        value = user.get(name, DEFAULT_GRID[name])
        if not isinstance(value, int) or isinstance(value, bool) or value < (1 if name == "k" else 0):
            raise MovieLensAlsError(f"--grid: {name} must be a {'positive' if name == 'k' else 'non-negative'} integer")
        out[name] = value
    return out


def _check_value(model: str, name: str, value: Any) -> Any:
    if name == "implicit_value":
        if value not in IMPLICIT_VALUES:
            raise MovieLensAlsError(f"--grid: ranking.implicit_value must be one of {IMPLICIT_VALUES}, got {value!r}")
        return value
    kind = _NUMERIC[model][name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
        raise MovieLensAlsError(f"--grid: {model}.{name} values must be {kind.__name__}s, got {value!r}")
    value = kind(value)
    low = 1 if kind is int else 0
    if value < low:
        raise MovieLensAlsError(f"--grid: {model}.{name} must be >= {low}, got {value!r}")
    return value


def grid_points(section: dict[str, list], names: list[str]) -> list[dict[str, Any]]:
    """Cartesian product of the listed parameters, in a stable order."""
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(section[n] for n in names))]
