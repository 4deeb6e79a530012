"""Fold-in and top-n in numpy: a user's vector from their ratings against fixed item factors, then their best movies.

``fold_in`` is the ranking model's implicit least-squares update of one user, the very function each iALS half-step
solves its rows with (:mod:`movielens_als.ml.implicit`; Spark's ``ALS.computeFactors`` with ``implicitPrefs`` when
``beta`` is 0). Training's last
half-iteration solves every user this way against the final item factors, so folding in a training
user's own ratings gives back their trained factor, and a new user is solved as if trained.
"""

from __future__ import annotations

import numpy as np

from movielens_als.ml.implicit import implicit_update


def fold_in(
    items: np.ndarray,
    item_gram: np.ndarray,
    rows: np.ndarray,
    values: np.ndarray,
    alpha: float,
    reg_param: float,
    beta_n: float = 0.0,
) -> np.ndarray:
    """The user vector the implicit ALS update gives for ``values`` on the items at ``rows`` of ``items``;
    ``beta_n``: the fit's ``beta`` term, ``beta`` times its mean positive ratings per user."""
    return implicit_update(item_gram, items[rows], values, alpha, reg_param, beta_n)


def top_n(scores: np.ndarray, ids: np.ndarray, excluded: np.ndarray, n: int) -> np.ndarray:
    """Positions of the ``n`` best scores, ``excluded`` positions left out; ties by score desc, then id asc."""
    allowed = np.ones(len(scores), dtype=bool)
    allowed[excluded] = False
    candidates = np.flatnonzero(allowed)
    if len(candidates) > n:
        # Everything tied with the n-th best stays a candidate, so the id order among ties is exact.
        kth = np.partition(scores[candidates], len(candidates) - n)[len(candidates) - n]
        candidates = candidates[scores[candidates] >= kth]
    order = np.lexsort((ids[candidates], -scores[candidates]))
    return candidates[order[:n]]
