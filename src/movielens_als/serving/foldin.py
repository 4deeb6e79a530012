"""Fold-in and top-n in numpy: a user's vector from their ratings against fixed item factors, then their best movies.

``fold_in`` is the ranking model's implicit least-squares update of one user (:mod:`movielens_als.ml.ials`,
Spark's ``ALS.computeFactors`` with ``implicitPrefs`` when ``beta`` is 0):
``(YtY + sum_i c1_i y_i y_i^T + lambda I) x = sum_{i: r_i > 0} (1 + c1_i) y_i`` with ``c1_i = alpha * |r_i|``
and ``lambda = regParam * (number of positive ratings + beta * the trained users' mean)``. Training's last
half-iteration solves every user this way against the final item factors, so folding in a training
user's own ratings gives back their trained factor, and a new user is solved as if trained.
"""

from __future__ import annotations

import numpy as np


def gram(items: np.ndarray) -> np.ndarray:
    """``Y^T Y`` over every item factor, in float64: the implicit term every user's system shares."""
    y = items.astype(np.float64, copy=False)
    return y.T @ y


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
    y = items[rows].astype(np.float64, copy=False)
    values = np.asarray(values, dtype=np.float64)
    c1 = alpha * np.abs(values)
    positive = values > 0
    a = item_gram + (y * c1[:, None]).T @ y
    b = np.where(positive, 1.0 + c1, 0.0) @ y
    a[np.diag_indices_from(a)] += reg_param * (positive.sum() + beta_n)
    return np.linalg.solve(a, b)


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
