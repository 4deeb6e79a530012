"""The implicit least-squares update in numpy, once: what each iALS half-step solves for every id of a block
(:mod:`.ials`, on Spark) and what a serving endpoint solves for one user folding in (:mod:`serving.foldin`).

For an id with ratings ``values`` on the other side's factors ``Y_u`` (rows of ``Y``)::

    (Y'Y + Y_u' diag(alpha |r|) Y_u + reg_param (n_u + beta_n) I) x = sum_{r > 0} (1 + alpha r) y

with ``n_u`` its positive ratings: Spark's ``ALS.computeFactors`` with ``implicitPrefs``, plus the ``beta_n`` of
:func:`beta_terms` on the diagonal. Pure numpy (no pyspark): the serving package imports it.
"""

from __future__ import annotations

import numpy as np

SOLVE_CHUNK = 1024  # systems solved at once: 1024 rank-64 systems are 32 MB of float64


def gram(factors: np.ndarray) -> np.ndarray:
    """``Y'Y`` in float64: the term every id's system shares."""
    y = factors.astype(np.float64, copy=False)
    return y.T @ y


def beta_terms(beta: float, positives: int, users: int, items: int) -> tuple[float, float]:
    """(user, item) ``beta * mean positive ratings`` of each side: what a half-step adds to ``n`` on the diagonal."""
    return beta * positives / max(users, 1), beta * positives / max(items, 1)


def implicit_update(
    shared: np.ndarray, y: np.ndarray, values: np.ndarray, alpha: float, reg_param: float, beta_n: float = 0.0
) -> np.ndarray:
    """One id's factor: ``shared`` is ``Y'Y``, ``y`` the factors of what it rated with ``values``."""
    n = len(values)
    return solve_rows(shared, y, np.array([0, n]), np.arange(n), values, alpha, reg_param, beta_n)[0]


def solve_rows(
    shared: np.ndarray,
    factors: np.ndarray,
    indptr: np.ndarray,
    positions: np.ndarray,
    values: np.ndarray,
    alpha: float,
    reg_param: float,
    beta_n: float,
) -> np.ndarray:
    """Each row's factor (float64): row ``r`` rated ``factors[positions[indptr[r]:indptr[r + 1]]]`` with
    ``values[indptr[r]:indptr[r + 1]]`` (the CSR layout).

    Per row, its factors are gathered (a block small enough to stay in cache: one gather of a whole chunk is
    slower) and ``Y_u' diag(alpha |r|) Y_u`` and the right-hand side are two float32 BLAS products, the precision
    the factors travel in; the systems are then solved stacked in float64, ``SOLVE_CHUNK`` rows at a time.
    """
    rank = shared.shape[0]
    factors = np.asarray(factors, dtype=np.float32)
    indptr = np.asarray(indptr, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    confidence = alpha * np.abs(values)
    positive = values > 0
    weight = confidence.astype(np.float32)
    target = np.where(positive, 1.0 + confidence, 0.0).astype(np.float32)
    diagonal = reg_param * (np.diff(np.concatenate(([0], np.cumsum(positive)))[indptr]) + beta_n)
    diag = np.arange(rank)
    rows = len(indptr) - 1
    out = np.empty((rows, rank))
    for start in range(0, rows, SOLVE_CHUNK):
        stop = min(start + SOLVE_CHUNK, rows)
        products = np.empty((stop - start, rank, rank), dtype=np.float32)
        b = np.empty((stop - start, rank), dtype=np.float32)
        bounds = indptr[start : stop + 1].tolist()
        for k in range(stop - start):
            lo, hi = bounds[k], bounds[k + 1]
            y = factors[positions[lo:hi]]
            np.matmul((y * weight[lo:hi, None]).T, y, out=products[k])
            np.matmul(target[lo:hi], y, out=b[k])
        a = products.astype(np.float64)
        a += shared
        a[:, diag, diag] += diagonal[start:stop, None]
        out[start:stop] = np.linalg.solve(a, b[..., None].astype(np.float64))[..., 0]
    return out


def initial_factors(ids: np.ndarray, rank: int, seed: int) -> np.ndarray:
    """Unit vectors of standard normals, as Spark initialises ALS, but a function of (seed, id) alone: the same
    start whatever the partitioning, the block count or the order of ``ids``."""
    key = _splitmix(np.array([seed], dtype=np.int64).astype(np.uint64))
    streams = _splitmix(key ^ np.asarray(ids, dtype=np.int64).astype(np.uint64))[:, None]
    bits = _splitmix(streams + np.arange(2 * rank, dtype=np.uint64) * _GOLDEN)
    uniform = ((bits >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53  # in (0, 1): log is finite
    normal = np.sqrt(-2.0 * np.log(uniform[:, :rank])) * np.cos(2.0 * np.pi * uniform[:, rank:])  # Box-Muller
    return normal / np.linalg.norm(normal, axis=1, keepdims=True)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser, elementwise on uint64 (wrapping arithmetic): a counter-based random stream."""
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))
