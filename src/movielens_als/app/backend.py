"""What the app's views need from a backend, and the answers they show, as plain dataclasses."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from movielens_als.errors import MovieLensAlsError

# New people's user ids start here: above every MovieLens release's (ml-32m's largest is 200,948), below 2^31.
NEW_USER_BASE = 1_000_000_000


class AppError(MovieLensAlsError):
    """Something the person can fix or wait out (a bad id, an unknown title, a backend down): one line on the page."""


@dataclass(frozen=True)
class Movie:
    movie_id: int
    title: str
    year: int | None = None
    genres: tuple[str, ...] = ()


@dataclass(frozen=True)
class Scale:
    """The ratings the model was trained on: what a person may give (half stars when the release has them)."""

    low: float
    high: float

    @property
    def step(self) -> float:
        # MovieLens releases with half stars (ml-10m on) start at 0.5; the others rate 1 to 5 in whole stars.
        return 0.5 if self.low % 1 else 1.0

    @property
    def values(self) -> list[float]:
        count = round((self.high - self.low) / self.step) + 1
        return [self.low + i * self.step for i in range(count)]


@dataclass(frozen=True)
class Health:
    """The champion served, its training run, the latest gate decision and the latest serving_health row."""

    champion_version: int | None
    training_run: dict | None
    decision: dict | None
    serving: dict | None


class Backend(Protocol):
    """Where answers come from: the model's answer rows (the pyfunc's output columns) and the tables."""

    def describe(self) -> str:
        """One line: what this backend serves from (shown in the page's footer)."""

    def scale(self) -> Scale: ...

    def min_ratings(self) -> int: ...

    def query(self, records: list[dict]) -> list[dict]:
        """The served model's answer rows (request, rank, movie_id, title, score, source, because)."""

    def movies(self, ids: Iterable[int]) -> dict[int, Movie]: ...

    def search(self, text: str, limit: int) -> list[Movie]:
        """Movies whose title contains ``text`` (any case), most rated first."""

    def similar(self, title: str, n: int) -> tuple[Movie, list[tuple[Movie, float]]] | None:
        """The movie titled ``title`` exactly and its ``similar_movies`` rows, or None when no movie has that title."""

    def health(self) -> Health: ...

    def new_user_id(self) -> int:
        """An id no MovieLens user and no other new person has, also when two people save at once."""
