"""Implicit ALS with a frequency-scaled regulariser (Rendle et al. 2022, "Revisiting the Performance of iALS"),
solved on Spark with the DataFrame API and pandas UDFs: classic Spark and Spark Connect alike.

The loss, over every (user, item) pair::

    sum_{u,i} c_ui (p_ui - x_u . y_i)^2
        + lambda sum_u (n_u + beta mean_n_users) |x_u|^2 + lambda sum_i (n_i + beta mean_n_items) |y_i|^2

with ``p_ui = 1, c_ui = 1 + alpha |r_ui|`` for a positive rating and ``c_ui = 1`` elsewhere; ``n_u`` counts
``u``'s positive ratings and ``mean_n_users`` is their mean over users. Each half-step solves, for every user
(items first, as Spark does), the system of :mod:`.implicit`. ``beta = 0`` is Spark's implicit ALS-WR; Spark has
no place for the ``beta`` term, hence this solver. The paper writes that term ``beta' N_items``; ``beta' = beta *
density`` is the same loss, but a fixed ``beta'`` regularises sparser data ever harder (at 5M ratings, ``beta'`` 0.1
ranks like popularity), while ``beta`` keeps its meaning from ml-100k to ml-25m.

Scaling, as Spark's own ALS does it: each side's ratings are grouped once into rows (one per id: what it rated and
the values), in ``B`` blocks, ``block = id mod B``, and block ``b`` is partition ``b``: the rows are hash
partitioned on a key chosen per block so that Spark's partitioner sends it to its own partition (a block number
hashed again would share partitions and leave cores idle), then cached. A half-step is one shuffle: the task that
solved a block ships each solved factor (float32, as Spark keeps them) to the other side's blocks whose rows
rated it, with the block's partial ``Y'Y``, and the next half-step's task of each block receives exactly what its
rows read. No ratings-sized collect, no users x items product, nothing to the driver between half-steps; each
half-step's output is checkpointed (one Spark job), so the lineage stays one step deep however many iterations
run. The grouped rows do not depend on the hyperparameters: a grid's fits of the same ratings share them
(:class:`Blocked`). ``start``: factors to begin from (a warm start, e.g. the refit from the tuning fit's users).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from movielens_als.columns import ITEM, USER
from movielens_als.ml.als import als_blocks
from movielens_als.ml.factors import Factors
from movielens_als.ml.implicit import beta_terms, gram, initial_factors, solve_rows

# A half-step's output rows: a factor shipped to block ``pkey`` of the other side, a partial Y'Y (id GRAM) shipped
# there, or a final factor (pkey PLAIN).
_OUT = "pkey INT, id INT, features ARRAY<FLOAT>, gram ARRAY<DOUBLE>"
GRAM, PLAIN = -1, -1


@dataclass
class _Side:
    """One side's ratings: ``rows`` (pkey, id, others, values), one row per id, partition ``b`` holding block
    ``b``; ``count`` its ids, ``positives`` its positive ratings."""

    rows: DataFrame
    count: int
    positives: int


@dataclass
class Blocked:
    """A ratings frame grouped into both sides' blocks, cached: what every fit of the same rows reads, built once
    (:func:`block_ratings`) and shared by a grid's fits; :meth:`release` frees it."""

    users: _Side
    items: _Side
    keys: tuple[int, ...]

    def release(self) -> None:
        self.users.rows.unpersist()
        self.items.rows.unpersist()


def block_ratings(df: DataFrame, blocks: int | None = None) -> Blocked:
    """``df`` (user_id, movie_id, value) as both sides' cached blocks; ``blocks`` defaults to the cores."""
    spark = df.sparkSession
    keys = partition_keys(spark, blocks or max(2, als_blocks(spark)))
    ratings = _ratings(df)
    return Blocked(_side(ratings, "u", "i", keys), _side(ratings, "i", "u", keys), keys)


def fit_ials(
    df: DataFrame | Blocked,
    rank: int,
    reg_param: float,
    alpha: float,
    beta: float,
    max_iter: int,
    seed: int,
    blocks: int | None = None,
    start: Factors | None = None,
) -> Factors:
    """Implicit ALS on ``df`` (user_id, movie_id, value) with regulariser ``reg_param * (n + beta * mean n)``;
    ``df`` may be already :func:`block_ratings` (then ``blocks`` is its own and the blocks stay cached)."""
    if max_iter < 1:
        raise ValueError(f"fit_ials needs max_iter >= 1, got {max_iter}")
    blocked = df if isinstance(df, Blocked) else block_ratings(df, blocks)
    users, items, keys = blocked.users, blocked.items, blocked.keys
    try:
        user_beta, item_beta = beta_terms(beta, users.positives, users.count, items.count)
        shipped = _checkpoint(_initial(users, start, rank, seed, keys))
        for i in range(max_iter):
            last = i == max_iter - 1
            item_out = _half_step(items, shipped, keys, reg_param, alpha, item_beta, ship=True, final=last)
            shipped = _half_step(users, item_out, keys, reg_param, alpha, user_beta, ship=not last, final=last)
    finally:
        if blocked is not df:
            blocked.release()
    return Factors(_final(shipped), _final(item_out))


_KEYS: dict[int, tuple[int, ...]] = {}


def partition_keys(spark: SparkSession, blocks: int) -> tuple[int, ...]:
    """For each block ``b``, an int that Spark's hash partitioner (``pmod(hash(key), blocks)``) sends to partition
    ``b``: the smallest such. Asked of Spark once per block count (its Murmur3, not a copy of it)."""
    if blocks not in _KEYS:
        key = F.col("id").cast("int")
        found = (
            spark.range(64 * blocks)
            .select(key.alias("key"), F.pmod(F.hash(key), F.lit(blocks)).alias("part"))
            .groupBy("part")
            .agg(F.min("key").alias("key"))
            .collect()
        )
        by_part = {r["part"]: r["key"] for r in found}
        _KEYS[blocks] = tuple(by_part[b] for b in range(blocks))
    return _KEYS[blocks]


def _ratings(df: DataFrame) -> DataFrame:
    return df.select(
        F.col(USER).cast("int").alias("u"), F.col(ITEM).cast("int").alias("i"), F.col("value").cast("double").alias("v")
    )


def block_key(id_col, keys: tuple[int, ...]):
    """The partition key (of :func:`partition_keys`) of an id's block, ``id mod B``."""
    return F.element_at(F.array(*[F.lit(k) for k in keys]), F.pmod(id_col, F.lit(len(keys))) + 1)


def _side(ratings: DataFrame, key: str, other: str, keys: tuple[int, ...]) -> _Side:
    pairs = F.sort_array(F.collect_list(F.struct(other, "v")))  # sorted: the same row whatever the shuffle order
    rows = (
        ratings.groupBy(key)
        .agg(pairs.alias("p"))
        .select(
            block_key(F.col(key), keys).alias("pkey"),
            F.col(key).alias("id"),
            F.col(f"p.{other}").alias("others"),
            F.col("p.v").alias("values"),
        )
        .repartition(len(keys), "pkey")
        .cache()
    )
    # One pass over the cached rows (it fills the cache) for both counts.
    totals = rows.agg(F.count(F.lit(1)), F.sum(F.size(F.filter("values", lambda v: v > 0)))).first()
    return _Side(rows, totals[0], totals[1] or 0)


def _checkpoint(df: DataFrame) -> DataFrame:
    # Local (executor storage, no checkpoint dir needed; Spark Connect has it too): each half-step's plan
    # starts from the last one's result, not from the whole history.
    return df.localCheckpoint(eager=True)


def _final(out: DataFrame) -> DataFrame:
    """The final factors among a half-step's output, as Spark's ALSModel holds them."""
    return out.where(F.col("pkey") == PLAIN).select("id", F.col("features").cast("array<float>"))


def _initial(users: _Side, start: Factors | None, rank: int, seed: int, keys: tuple[int, ...]) -> DataFrame:
    """The users' first factors shipped to the item blocks: ``start``'s where it has the user, else
    :func:`initial_factors`."""
    rows = users.rows.select("id", "others")
    if start is not None:
        rows = rows.join(start.users.select("id", F.col("features").alias("start")), "id", "left")
    else:
        rows = rows.withColumn("start", F.lit(None).cast("array<float>"))

    def init(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            ids = batch["id"].to_numpy()
            factors = initial_factors(ids, rank, seed)
            given = batch["start"].notna().to_numpy()
            if given.any():
                factors[given] = np.stack(batch["start"].to_numpy()[given])
            yield _emitted(ids, factors, batch["others"].to_numpy(), keys, ship=True, final=False)

    return rows.mapInPandas(init, _OUT)


def _half_step(
    side: _Side,
    other_out: DataFrame,
    keys: tuple[int, ...],
    reg_param: float,
    alpha: float,
    beta_n: float,
    *,
    ship: bool,
    final: bool,
) -> DataFrame:
    """``side``'s factors solved against what the other side's last half-step shipped to its blocks."""
    shipped = other_out.where(F.col("pkey") >= 0).repartition(len(keys), "pkey")  # the half-step's one shuffle
    solve = _solver(keys, reg_param, alpha, beta_n, ship, final)
    solved = side.rows.groupBy("pkey").cogroup(shipped.groupBy("pkey")).applyInPandas(solve, _OUT)
    return _checkpoint(solved)


def _solver(keys: tuple[int, ...], reg_param: float, alpha: float, beta_n: float, ship: bool, final: bool):
    """The pandas function of one block: its rows against the factors and partial Grams shipped to it."""

    def solve(rows: pd.DataFrame, shipped: pd.DataFrame) -> pd.DataFrame:
        if rows.empty:
            return _emitted(np.empty(0, np.int32), np.empty((0, 0)), np.empty(0, object), keys, False, False)
        grams = shipped["gram"].notna().to_numpy()
        shared = np.sum(np.stack(shipped["gram"].to_numpy()[grams]), axis=0)
        rank = int(round(np.sqrt(shared.size)))
        shared = shared.reshape(rank, rank)
        factors_of = shipped[~grams]
        factors = np.stack(factors_of["features"].to_numpy())
        others = rows["others"].to_numpy()
        positions = pd.Index(factors_of["id"]).get_indexer(np.concatenate(others))  # a hash lookup per rating
        indptr = np.concatenate(([0], np.cumsum([len(o) for o in others])))
        values = np.concatenate(rows["values"].to_numpy())
        solved = solve_rows(shared, factors, indptr, positions, values, alpha, reg_param, beta_n)
        return _emitted(rows["id"].to_numpy(), solved, others, keys, ship, final)

    return solve


def _emitted(
    ids: np.ndarray, factors: np.ndarray, others: np.ndarray, keys: tuple[int, ...], ship: bool, final: bool
) -> pd.DataFrame:
    """A block's output rows (``_OUT``): with ``ship``, each factor once per other-side block that rated it and the
    block's partial Y'Y once per block; with ``final``, each factor once as a plain row."""
    blocks = len(keys)
    parts = []
    if ship and len(ids):
        lengths = np.fromiter((len(o) for o in others), dtype=np.int64, count=len(others))
        row = np.repeat(np.arange(len(ids)), lengths)
        block = np.concatenate(others).astype(np.int64) % blocks
        pair = np.unique(row * blocks + block)  # each (factor, destination block) once
        row, block = pair // blocks, pair % blocks
        parts.append(_rows(np.asarray(keys)[block], ids[row], factors[row], None))
        partial = gram(factors).ravel()
        parts.append(_rows(np.asarray(keys), np.full(blocks, GRAM), None, [partial] * blocks))
    if final and len(ids):
        parts.append(_rows(np.full(len(ids), PLAIN), ids, factors, None))
    if not parts:
        return _rows(np.empty(0, np.int32), np.empty(0, np.int32), np.empty((0, 0)), None)
    return pd.concat(parts, ignore_index=True)


def _rows(pkey: np.ndarray, ids: np.ndarray, factors: np.ndarray | None, grams: list | None) -> pd.DataFrame:
    n = len(ids)
    return pd.DataFrame(
        {
            "pkey": np.asarray(pkey, dtype=np.int32),
            "id": np.asarray(ids, dtype=np.int32),
            "features": pd.Series([None] * n if factors is None else list(factors.astype(np.float32)), dtype=object),
            "gram": pd.Series([None] * n if grams is None else grams, dtype=object),
        }
    )
