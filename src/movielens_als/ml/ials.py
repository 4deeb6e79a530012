"""Implicit ALS with a frequency-scaled regulariser (Rendle et al. 2022, "Revisiting the Performance of iALS"),
solved on Spark with the DataFrame API and pandas UDFs: classic Spark and Spark Connect alike.

The loss, over every (user, item) pair::

    sum_{u,i} c_ui (p_ui - x_u . y_i)^2
        + lambda sum_u (n_u + beta mean_n_users) |x_u|^2 + lambda sum_i (n_i + beta mean_n_items) |y_i|^2

with ``p_ui = 1, c_ui = 1 + alpha |r_ui|`` for a positive rating and ``c_ui = 1`` elsewhere; ``n_u`` counts
``u``'s positive ratings and ``mean_n_users`` is their mean over users. Each half-step solves, for every user
(items first, as Spark does)::

    (Y'Y + sum_{i in I_u} alpha |r_ui| y_i y_i' + lambda (n_u + beta mean_n_users) I) x_u
        = sum_{i in I_u} (1 + alpha r_ui) y_i

``beta = 0`` is Spark's implicit ALS-WR; Spark has no place for the ``beta`` term, hence this solver. The paper
writes that term ``beta' N_items``; ``beta' = beta * density`` is the same loss, but a fixed ``beta'`` regularises
sparser data ever harder (at 5M ratings, ``beta'`` 0.1 ranks like popularity), while ``beta`` keeps its meaning
from ml-100k to ml-25m: each user is shrunk as if it had ``beta`` times the mean user's ratings more.

Scaling: the ratings are grouped once per side into blocks (one row per user: its items and values), hash
partitioned by block and cached: a cached frame keeps its partitioning (a checkpointed one does not), so the
half-steps never shuffle the ratings again. A half-step ships each block only the other side's factors its rows
touch (the distinct (block, other id) pairs, also computed once: at most blocks x ids rows), sums the Gram ``Y'Y``
per partition (rank x rank to the driver), and solves each block's rows in one pandas call (a cogroup of the
block's rows and its shipped factors). No ratings-sized collect, no users x items product; the factors are
checkpointed every half-step so the lineage stays one step deep however many iterations run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from movielens_als.columns import ITEM, USER
from movielens_als.ml.als import als_blocks
from movielens_als.ml.factors import Factors

SOLVE_CHUNK = 1024  # rows per stacked solve: 1024 rank-64 systems are 32 MB of float64
_SOLVED = "id INT, features ARRAY<DOUBLE>"


@dataclass
class _Side:
    """One side's ratings in blocks: ``rows`` (block, id, others, values), one row per id; ``needs`` the distinct
    (block, other) pairs, which of the other side's factors a block's rows read; ``count`` its ids, ``positives``
    its positive ratings."""

    rows: DataFrame
    needs: DataFrame
    count: int
    positives: int


def fit_ials(
    df: DataFrame,
    rank: int,
    reg_param: float,
    alpha: float,
    beta: float,
    max_iter: int,
    seed: int,
    blocks: int | None = None,
) -> Factors:
    """Implicit ALS on ``df`` (user_id, movie_id, value) with regulariser ``reg_param * (n + beta * mean n)``."""
    if max_iter < 1:
        raise ValueError(f"fit_ials needs max_iter >= 1, got {max_iter}")
    blocks = blocks or max(2, als_blocks(df.sparkSession))
    ratings = _ratings(df)
    users, items = _side(ratings, "u", "i", blocks), _side(ratings, "i", "u", blocks)
    try:
        user_beta, item_beta = beta_terms(beta, users.positives, users.count, items.count)
        user_factors = _checkpoint(users.rows.select("id").mapInPandas(_initialiser(rank, seed), _SOLVED))
        for _ in range(max_iter):
            item_factors = _half_step(items, user_factors, rank, reg_param, alpha, item_beta)
            user_factors = _half_step(users, item_factors, rank, reg_param, alpha, user_beta)
    finally:
        users.rows.unpersist()
        items.rows.unpersist()
    features = F.col("features").cast("array<float>")  # what Spark's ALSModel factors hold
    return Factors(user_factors.select("id", features.alias("features")), item_factors.select("id", features))


def beta_terms(beta: float, positives: int, users: int, items: int) -> tuple[float, float]:
    """(user, item) ``beta * mean positive ratings`` of each side: what a half-step adds to ``n`` on the diagonal."""
    return beta * positives / max(users, 1), beta * positives / max(items, 1)


def _ratings(df: DataFrame) -> DataFrame:
    return df.select(
        F.col(USER).cast("int").alias("u"), F.col(ITEM).cast("int").alias("i"), F.col("value").cast("double").alias("v")
    )


def _side(ratings: DataFrame, key: str, other: str, blocks: int) -> _Side:
    block = F.pmod(F.hash(key), F.lit(blocks)).alias("block")
    pairs = F.sort_array(F.collect_list(F.struct(other, "v")))  # sorted: the same row whatever the shuffle order
    rows = (
        ratings.groupBy(key)
        .agg(pairs.alias("p"))
        .select(block, F.col(key).alias("id"), F.col(f"p.{other}").alias("others"), F.col("p.v").alias("values"))
        .repartition(blocks, "block")
        .cache()
    )
    needs = _checkpoint(ratings.select(block, F.col(other).alias("id")).distinct())
    # One pass over the cached rows (it fills the cache) for both counts.
    totals = rows.agg(F.count(F.lit(1)), F.sum(F.size(F.filter("values", lambda v: v > 0)))).first()
    return _Side(rows, needs, totals[0], totals[1] or 0)


def _half_step(side: _Side, other: DataFrame, rank: int, reg_param: float, alpha: float, beta_n: float) -> DataFrame:
    """``side``'s factors solved against the ``other`` side's current ones."""
    return _checkpoint(_solved(side, other, _gram(other, rank), reg_param, alpha, beta_n))


def _solved(side: _Side, other: DataFrame, gram: np.ndarray, reg_param: float, alpha: float, beta_n: float):
    shipped = side.needs.join(other, "id")
    return (
        side.rows.groupBy("block")
        .cogroup(shipped.groupBy("block"))
        .applyInPandas(_solver(gram, reg_param, alpha, beta_n), _SOLVED)
    )


def _checkpoint(df: DataFrame) -> DataFrame:
    # Local (executor storage, no checkpoint dir needed; Spark Connect has it too): each half-step's plan
    # starts from the last one's result, not from the whole history.
    return df.localCheckpoint(eager=True)


def _gram(factors: DataFrame, rank: int) -> np.ndarray:
    """``Y'Y`` over every row of ``factors``: one partial sum per partition, summed on the driver."""

    def partial(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        total = np.zeros((rank, rank))
        for batch in batches:
            if len(batch):
                y = np.stack(batch["features"].to_numpy())
                total += y.T @ y
        yield pd.DataFrame({"gram": [total.ravel()]})

    parts = factors.select("features").mapInPandas(partial, "gram ARRAY<DOUBLE>").toArrow()
    sums = [np.asarray(p, dtype=np.float64) for p in parts["gram"].to_pylist()]
    return np.sum(sums, axis=0).reshape(rank, rank) if sums else np.zeros((rank, rank))


def _solver(gram: np.ndarray, reg_param: float, alpha: float, beta_n: float):
    """The pandas function solving one block: its rows against the factors shipped to it."""

    def solve(rows: pd.DataFrame, shipped: pd.DataFrame) -> pd.DataFrame:
        if rows.empty:
            return pd.DataFrame({"id": pd.Series([], dtype="int32"), "features": pd.Series([], dtype=object)})
        order = np.argsort(shipped["id"].to_numpy())
        ids = shipped["id"].to_numpy()[order]
        factors = np.stack(shipped["features"].to_numpy())[order]
        out = []
        others, values = rows["others"].to_numpy(), rows["values"].to_numpy()
        for start in range(0, len(rows), SOLVE_CHUNK):
            chunk = range(start, min(start + SOLVE_CHUNK, len(rows)))
            a = np.empty((len(chunk), *gram.shape))
            b = np.empty((len(chunk), gram.shape[0]))
            for k, row in enumerate(chunk):
                y = factors[np.searchsorted(ids, others[row])]
                a[k], b[k] = normal_equations(gram, y, values[row], alpha, reg_param, beta_n)
            out.extend(np.linalg.solve(a, b[..., None])[..., 0])
        return pd.DataFrame({"id": rows["id"].to_numpy(), "features": out})

    return solve


def normal_equations(
    gram: np.ndarray, y: np.ndarray, values: np.ndarray, alpha: float, reg_param: float, beta_n: float
) -> tuple[np.ndarray, np.ndarray]:
    """(A, b) of one id's least squares against the factors ``y`` of what it rated with ``values``:
    Spark's implicit update (``ALS.computeFactors``) plus ``reg_param * beta_n`` on the diagonal."""
    values = np.asarray(values, dtype=np.float64)
    c1 = alpha * np.abs(values)
    positive = values > 0
    a = gram + (y * c1[:, None]).T @ y
    a[np.diag_indices_from(a)] += reg_param * (positive.sum() + beta_n)
    return a, np.where(positive, 1.0 + c1, 0.0) @ y


def _initialiser(rank: int, seed: int):
    def init(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            ids = batch["id"].to_numpy()
            yield pd.DataFrame({"id": ids, "features": list(initial_factors(ids, rank, seed))})

    return init


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
