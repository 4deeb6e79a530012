"""The --grid JSON: defaults filled in, each bad value one clear error."""

from __future__ import annotations

import json

import pytest

from movielens_als.errors import MovieLensAlsError
from movielens_als.ml.grid import parse_grid

TINY_GRID = {
    "rating": {"rank": [2], "reg_param": [0.1], "max_iter": [2], "passes": [1]},
    "ranking": {"rank": [2], "reg_param": [0.1, 1.0], "alpha": [1.0], "max_iter": [2]},
    "k": 3,
}


def test_parse_grid_defaults_and_errors():
    g = parse_grid(json.dumps({"ranking": {"rank": 8}}))
    assert g["ranking"]["rank"] == [8] and g["rating"]["rank"] and g["k"] == 10
    assert g["ranking"]["beta"] == [2.3] and parse_grid('{"ranking": {"beta": [0, 0.5]}}')["ranking"]["beta"] == [
        0.0,
        0.5,
    ]
    for bad, message in [
        ("{", "not valid JSON"),
        ('{"x": 1}', "unknown keys"),
        ('{"ranking": {"rank": [0]}}', ">= 1"),
        ('{"ranking": {"rank": [1.5]}}', "ints"),
        ('{"ranking": {"implicit_value": ["x"]}}', "implicit_value"),
        ('{"ranking": {"beta": [-0.1]}}', ">= 0"),
        ('{"rating": {"alpha": [1]}}', "unknown rating parameters"),
    ]:
        with pytest.raises(MovieLensAlsError, match=message):
            parse_grid(bad)
