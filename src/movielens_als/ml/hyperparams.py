"""The two models' hyperparameters as train searches, chooses, records and reuses them.

Grid points are dicts (:mod:`grid`); a point becomes one of these where a model is fitted. ``training_runs``
records them as flat JSON (:meth:`as_dict`), from which a later run reuses them (:meth:`from_dict`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class RatingParams:
    """The rating model's: bias regularisers, the residual explicit ALS refitted ``passes`` times with the biases,
    and the neighbour feature (``knn_k`` neighbours, similarity ``power``), chosen with the blend after the ALS."""

    reg_user: float
    reg_item: float
    rank: int
    reg_param: float
    max_iter: int
    passes: int = 1
    knn_k: int | None = None  # None until the blend's search chooses it
    knn_power: float | None = None

    # The search's stages, in order: each chooses its names with the earlier stages' choice fixed.
    BIAS: ClassVar[tuple[str, ...]] = ("reg_user", "reg_item")
    ALS: ClassVar[tuple[str, ...]] = ("rank", "reg_param", "max_iter", "passes")
    KNN: ClassVar[tuple[str, ...]] = ("knn_k", "knn_power")

    def as_dict(self) -> dict[str, Any]:
        return {name: value for name, value in dataclasses.asdict(self).items() if value is not None}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RatingParams:
        """From a recorded or grid dict; other keys (a record's ``blend``) are not hyperparameters."""
        return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values})

    def with_knn(self, knn_k: int, knn_power: float) -> RatingParams:
        return dataclasses.replace(self, knn_k=knn_k, knn_power=knn_power)


@dataclass(frozen=True)
class RankingParams:
    """The ranking model's implicit ALS: confidence ``1 + alpha * value`` (``value`` 1 or the rating, by
    ``implicit_value``), regulariser ``reg_param * (n + beta * N)``."""

    rank: int
    reg_param: float
    alpha: float
    beta: float
    max_iter: int
    implicit_value: str

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The fields, in the order a grid's points enumerate them."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RankingParams:
        return cls(**{name: values[name] for name in cls.names()})
