"""MovieLens release formats as data: each release's files, delimiters, encodings, headers and rating scale."""

from __future__ import annotations

import csv
from dataclasses import dataclass

from movielens_als.errors import LandingError

# ml-100k's u.genre order; used when an archive lacks u.genre.
GENRES_100K = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
# ml-1m users.dat codes occupations (its README).
OCCUPATIONS_1M = (
    "other",
    "academic/educator",
    "artist",
    "clerical/admin",
    "college/grad student",
    "customer service",
    "doctor/health care",
    "executive/managerial",
    "farmer",
    "homemaker",
    "K-12 student",
    "lawyer",
    "programmer",
    "retired",
    "sales/marketing",
    "scientist",
    "self-employed",
    "technician/engineer",
    "tradesman/craftsman",
    "unemployed",
    "writer",
)
DELIMITER_NAMES = {"\t": "tab", "|": "pipe", "::": "'::'", ",": "comma"}


@dataclass(frozen=True)
class FileFormat:
    name: str
    delimiter: str
    fields: int
    encoding: str
    header: tuple[str, ...] | None = None

    @property
    def is_csv(self) -> bool:
        return self.delimiter == ","

    @property
    def delimiter_name(self) -> str:
        return DELIMITER_NAMES.get(self.delimiter, repr(self.delimiter))

    def split(self, line: str) -> list[str]:
        if self.is_csv and '"' in line:
            return next(csv.reader([line]))
        return line.split(self.delimiter)


@dataclass(frozen=True)
class Layout:
    """The files of one MovieLens release format and its rating scale."""

    name: str
    ratings: FileFormat
    movies: FileFormat
    users: FileFormat | None
    rating_min: float
    rating_max: float
    rating_step: float


LAYOUTS = (
    Layout(
        "100k",
        FileFormat("u.data", "\t", 4, "ascii"),
        FileFormat("u.item", "|", 24, "latin-1"),
        FileFormat("u.user", "|", 5, "ascii"),
        1.0,
        5.0,
        1.0,
    ),
    Layout(
        "dat",
        FileFormat("ratings.dat", "::", 4, "latin-1"),
        FileFormat("movies.dat", "::", 3, "latin-1"),
        FileFormat("users.dat", "::", 5, "latin-1"),
        0.5,
        5.0,
        0.5,
    ),
    Layout(
        "csv",
        FileFormat("ratings.csv", ",", 4, "utf-8", ("userId", "movieId", "rating", "timestamp")),
        FileFormat("movies.csv", ",", 3, "utf-8", ("movieId", "title", "genres")),
        None,
        0.5,
        5.0,
        0.5,
    ),
)


def detect_layout(members: dict[str, str], origin: str) -> Layout:
    """The layout whose ratings file the source holds."""
    for layout in LAYOUTS:
        if layout.ratings.name in members:
            if layout.movies.name not in members:
                raise LandingError(f"{origin}: has {layout.ratings.name} but no {layout.movies.name}")
            return layout
    expected = ", ".join(layout.ratings.name for layout in LAYOUTS)
    raise LandingError(f"{origin}: no ratings file found (expected one of {expected})")
