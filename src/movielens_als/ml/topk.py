"""Exact top-k by factor dot product (or cosine), excluded pairs masked: the one ranking path.

Tuning, evaluation and the serving tables all rank through :func:`top_k_fn`, so the metrics
measure what is served.

Why blocks instead of ``ALSModel.recommendForAllUsers``: items a user rated must be excluded,
and the ALS API can only over-fetch ``k + seen`` items for *every* user, where ``seen`` is the
largest rating count of any user (hundreds in ml-100k, 32,202 in ml-25m), then filter. Here left
ids (users) and right ids (movies) are numbered densely and cut into blocks of at most
``block_size``; each (left block, right block) pair is one task. It scores ``ROWS_PER_STEP`` left
rows against the right block at a time, masks the excluded entries that fall in this pair (a
user's history reaches only the pairs holding its movies, so it costs its own length once), and
keeps each left id's exact top k, ties broken by right id. A window merges the k candidates of
each right block. Memory per task is bounded by the block size whatever the history or the
catalogue, and the full users x items product is never built.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from movielens_als.config import RECOMMEND
from movielens_als.errors import MovieLensAlsError

ROWS_PER_STEP = 256  # left rows scored at once: ROWS_PER_STEP x block_size doubles in memory
_CANDIDATES = "left_id INT, right_id INT, score DOUBLE, block_rank INT"


def top_k_indices(scores: np.ndarray, right_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) indices of each row's top ``k`` finite scores, ordered by score desc, right id asc.

    ``-inf`` marks an excluded entry. argpartition finds k candidates per row in linear time; a row
    whose k-th best score is tied beyond the k picked (argpartition chooses among ties arbitrarily)
    or that has fewer than k finite scores is redone exactly on its own.
    """
    n, m = scores.shape
    kk = min(k, m)
    if n == 0 or kk == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    if m > kk:
        picked = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        threshold = np.take_along_axis(scores, picked, axis=1).min(axis=1)
        redo = np.flatnonzero((scores >= threshold[:, None]).sum(axis=1) > kk)
    else:
        picked = np.broadcast_to(np.arange(m), (n, m)).copy()
        redo = np.flatnonzero(~np.isfinite(scores).all(axis=1))
    values = np.take_along_axis(scores, picked, axis=1)
    order = np.lexsort((right_ids[picked], -values), axis=-1)
    picked = np.take_along_axis(picked, order, axis=1)
    keep = np.ones(picked.shape, dtype=bool)
    rows, cols = np.repeat(np.arange(n), kk).reshape(n, kk), picked
    exact_rows, exact_cols = [], []
    for r in redo:
        cand = np.flatnonzero(np.isfinite(scores[r]) & (scores[r] >= (threshold[r] if m > kk else -np.inf)))
        best = cand[np.lexsort((right_ids[cand], -scores[r, cand]))[:kk]]
        exact_rows.append(np.full(len(best), r))
        exact_cols.append(best)
        keep[r] = False
    rows = np.concatenate([rows[keep], *exact_rows])
    cols = np.concatenate([cols[keep], *exact_cols])
    # Redone rows were appended at the end: restore row order, keeping each row's ranked order.
    stable = np.argsort(rows, kind="stable")
    return rows[stable], cols[stable]


def _matrix(factor_lists, cosine: bool) -> np.ndarray:
    m = np.stack([np.asarray(f, dtype=np.float64) for f in factor_lists])
    if cosine:
        norms = np.linalg.norm(m, axis=1, keepdims=True)
        m = np.divide(m, norms, out=np.zeros_like(m), where=norms > 0)
    return m


def _score_pair(row, k: int, cosine: bool) -> pd.DataFrame | None:
    left_ids = np.asarray(row.left_ids, dtype=np.int64)
    right_ids = np.asarray(row.right_ids, dtype=np.int64)
    left, right = _matrix(row.left_factors, cosine), _matrix(row.right_factors, cosine)
    packed = np.asarray(row.excluded if row.excluded is not None else [], dtype=np.int64)
    packed = np.sort(packed)  # by left position first: each step's entries are one slice
    ex_left, ex_right = packed >> 32, packed & 0xFFFFFFFF
    out = []
    for start in range(0, len(left_ids), ROWS_PER_STEP):
        stop = min(start + ROWS_PER_STEP, len(left_ids))
        scores = left[start:stop] @ right.T
        lo, hi = np.searchsorted(ex_left, [start, stop])
        scores[ex_left[lo:hi] - start, ex_right[lo:hi]] = -np.inf
        rows, cols = top_k_indices(scores, right_ids, k)
        if len(rows) == 0:
            continue
        first = np.r_[True, rows[1:] != rows[:-1]]
        starts = np.flatnonzero(first)
        rank = np.arange(len(rows)) - np.repeat(starts, np.diff(np.r_[starts, len(rows)])) + 1
        out.append(
            pd.DataFrame(
                {
                    "left_id": left_ids[start + rows].astype(np.int32),
                    "right_id": right_ids[cols].astype(np.int32),
                    "score": scores[rows, cols],
                    "block_rank": rank.astype(np.int32),
                }
            )
        )
    return pd.concat(out, ignore_index=True) if out else None


def _scorer(k: int, cosine: bool):
    def score(batches):
        for pdf in batches:
            for row in pdf.itertuples(index=False):
                frame = _score_pair(row, k, cosine)
                if frame is not None:
                    yield frame

    return score


@dataclass(frozen=True)
class Layout:
    """Where each left and right id sits (block, position) and the excluded pairs packed per block pair: what top-k
    passes over the same ids and exclusions share (a tuning grid's fits). Built by :func:`top_k_layout`."""

    left: DataFrame  # (left_id, left_block, left_pos)
    right: DataFrame  # (right_id, right_block, right_pos)
    n_left: int
    n_right: int
    excluded: DataFrame | None  # (left_block, right_block, excluded ARRAY<BIGINT>: left_pos << 32 | right_pos)
    block_size: int


def _numbering(ids: DataFrame, block_size: int, side: str) -> DataFrame:
    """(id, block, pos): dense positions by id. Id sets are catalogue-sized, so one ordered window is cheap, and
    dense numbering keeps blocks full however sparse the ids are."""
    pos = F.row_number().over(Window.orderBy("id")) - 1
    numbered = ids.select(F.col("id").cast("int").alias("id")).withColumn("_n", pos)
    return numbered.select(
        F.col("id").alias(f"{side}_id"),
        F.floor(F.col("_n") / block_size).cast("int").alias(f"{side}_block"),
        (F.col("_n") % block_size).cast("int").alias(f"{side}_pos"),
    ).localCheckpoint()


def top_k_layout(
    left_ids: DataFrame,
    right_ids: DataFrame,
    excluded: DataFrame | None = None,
    block_size: int = RECOMMEND.block_size,
    keep: bool = False,
) -> Layout:
    """The :class:`Layout` of ``left_ids`` and ``right_ids`` (column ``id``) with ``excluded`` (left_id,
    right_id); ``keep``: the packed exclusions are materialised, for several :func:`top_k_fn` passes."""
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise MovieLensAlsError(f"block_size must be a positive integer, got {block_size!r}")
    left, right = _numbering(left_ids, block_size, "left"), _numbering(right_ids, block_size, "right")
    packed = None
    if excluded is not None:
        packed = (
            excluded.select(F.col("left_id").cast("int"), F.col("right_id").cast("int"))
            .join(left, "left_id")
            .join(right, "right_id")
            .groupBy("left_block", "right_block")
            .agg(
                F.collect_list(F.shiftleft(F.col("left_pos").cast("bigint"), 32) + F.col("right_pos")).alias("excluded")
            )
        )
        packed = packed.localCheckpoint() if keep else packed
    return Layout(left, right, left.count(), right.count(), packed, block_size)


def _numbered(layout_side: DataFrame, factors: DataFrame, side: str, expected: int | None) -> DataFrame:
    """(id, block, pos, features): ``factors`` placed by the layout. ``expected``: check the layout numbers exactly
    the factors' ids (a layout built elsewhere; a position off by one row would mask the wrong movies)."""
    numbered = layout_side.join(factors.select(F.col("id").cast("int").alias(f"{side}_id"), "features"), f"{side}_id")
    if expected is not None:
        numbered = numbered.localCheckpoint()
        if numbered.count() != expected:
            raise ValueError(f"the top-k layout numbers {expected} {side} ids, the factors have others")
    return numbered


def _blocks(numbered: DataFrame, side: str) -> DataFrame:
    rows = F.sort_array(F.collect_list(F.struct(f"{side}_pos", f"{side}_id", "features"))).alias("rows")
    return (
        numbered.groupBy(f"{side}_block")
        .agg(rows)
        .select(
            f"{side}_block",
            F.col(f"rows.{side}_id").alias(f"{side}_ids"),
            F.col("rows.features").alias(f"{side}_factors"),
        )
    )


def top_k_fn(
    left: DataFrame,
    right: DataFrame,
    k: int,
    *,
    excluded: DataFrame | None = None,
    cosine: bool = False,
    block_size: int = RECOMMEND.block_size,
    layout: Layout | None = None,
) -> DataFrame:
    """(left_id, right_id, score, rank): each left id's top ``k`` right ids by dot product (or cosine).

    ``left``/``right``: (id INT, features ARRAY<FLOAT|DOUBLE>); ``excluded``: (left_id, right_id)
    pairs never returned; ``layout``: their :func:`top_k_layout`, built once for several passes (then
    ``excluded`` and ``block_size`` are its own). Ranks are 1..k by score desc, right_id asc; a left id with fewer
    than k candidates left gets fewer rows.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise MovieLensAlsError(f"k must be a positive integer, got {k!r}")
    shared = layout is not None
    if layout is None:
        layout = top_k_layout(left.select("id"), right.select("id"), excluded, block_size)
    n_left, n_right, block_size = layout.n_left, layout.n_right, layout.block_size
    if n_left == 0 or n_right == 0:
        return left.sparkSession.createDataFrame([], "left_id INT, right_id INT, score DOUBLE, rank INT")
    left_n = _numbered(layout.left, left, "left", n_left if shared else None)
    right_n = _numbered(layout.right, right, "right", n_right if shared else None)
    pairs = _blocks(left_n, "left").crossJoin(_blocks(right_n, "right"))
    if layout.excluded is not None:
        pairs = pairs.join(layout.excluded, ["left_block", "right_block"], "left")
    else:
        pairs = pairs.withColumn("excluded", F.lit(None).cast("array<bigint>"))
    left_blocks, right_blocks = -(-n_left // block_size), -(-n_right // block_size)
    # One block pair per task: the cross join alone could leave them all in one partition.
    pairs = pairs.select("left_ids", "left_factors", "right_ids", "right_factors", "excluded").repartition(
        left_blocks * right_blocks
    )
    candidates = pairs.mapInPandas(_scorer(k, cosine), schema=_CANDIDATES)
    if right_blocks == 1:  # each left id's candidates are already its ranked top k
        return candidates.withColumnRenamed("block_rank", "rank")
    by_score = Window.partitionBy("left_id").orderBy(F.col("score").desc(), F.col("right_id"))
    return (
        candidates.drop("block_rank")
        .withColumn("rank", F.row_number().over(by_score).cast("int"))
        .where(F.col("rank") <= k)
    )
