"""Tiny MovieLens releases written by the tests (the real files may not be redistributed)."""

from __future__ import annotations

import datetime as dt
import os
import zipfile
from pathlib import Path

GENRES = (
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


def item_line(movie_id: int, title: str, release: str, genres: tuple[str, ...]) -> str:
    """One u.item line: id|title|release|video release|IMDb URL|19 genre flags."""
    flags = "|".join("1" if g in genres else "0" for g in GENRES)
    return f"{movie_id}|{title}|{release}||http://us.imdb.com/M/title-exact?{movie_id}|{flags}"


MOVIES_100K = [
    item_line(1, "Toy Story (1995)", "01-Jan-1995", ("Animation", "Children's", "Comedy")),
    item_line(2, "GoldenEye (1995)", "01-Jan-1995", ("Action", "Adventure", "Thriller")),
    item_line(3, "Misérables, Les (1995)", "01-Jan-1995", ("Drama", "Musical")),  # Latin-1 on disk
    item_line(4, "Contempt (Mépris, Le) (1963)", "27-Jun-1997", ("Drama",)),
]
USERS_100K = ["1|24|M|technician|85711", "2|53|F|other|94043", "3|23|M|writer|32067"]
RATINGS_100K = [
    "1\t1\t5\t874965758",
    "1\t2\t3\t876893171",
    "2\t1\t4\t888550871",
    "2\t3\t2\t888551001",
    "3\t4\t1\t889237455",
    "3\t2\t5\t889237460",
]


def write_ml100k(
    folder: Path,
    *,
    ratings: list[str] | None = None,
    movies: list[str] | None = None,
    users: list[str] | None = None,
    genres: bool = True,
) -> Path:
    """Write an ml-100k-format folder (u.data, u.item in Latin-1, u.user, u.genre); return it."""
    folder.mkdir(parents=True, exist_ok=True)
    _write(folder / "u.data", RATINGS_100K if ratings is None else ratings, "ascii")
    _write(folder / "u.item", MOVIES_100K if movies is None else movies, "latin-1")
    _write(folder / "u.user", USERS_100K if users is None else users, "ascii")
    if genres:
        _write(folder / "u.genre", [f"{g}|{i}" for i, g in enumerate(GENRES)] + [""], "ascii")
    return folder


def write_csv_release(folder: Path, *, ratings: list[str] | None = None, movies: list[str] | None = None) -> Path:
    """Write a csv-format release (ratings.csv, movies.csv, UTF-8, with headers) like ml-25m."""
    folder.mkdir(parents=True, exist_ok=True)
    _write(
        folder / "ratings.csv",
        ["userId,movieId,rating,timestamp"]
        + (
            ratings
            if ratings is not None
            else ["1,1,4.0,1147880044", "1,2,3.5,1147868817", "2,1,0.5,1147868828", "2,3,5.0,1147878820"]
        ),
        "utf-8",
    )
    _write(
        folder / "movies.csv",
        ["movieId,title,genres"]
        + (
            movies
            if movies is not None
            else [
                "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy",
                '2,"American President, The (1995)",Comedy|Drama|Romance',
                '3,"Amélie (Fabuleux destin d\'Amélie Poulain, Le) (2001)",Comedy|Romance',
                "4,Dilwale Dulhania Le Jayenge (1995),(no genres listed)",
            ]
        ),
        "utf-8",
    )
    return folder


def zip_folder(folder: Path, target: Path, top: str = "ml-100k") -> Path:
    """Zip ``folder`` the way GroupLens does: every file under one top-level directory."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.iterdir()):
            zf.write(path, f"{top}/{path.name}")
    return target


def _write(path: Path, lines: list[str], encoding: str) -> None:
    path.write_bytes(("\n".join(lines) + ("\n" if lines else "")).encode(encoding))


T0 = dt.datetime(2020, 1, 1)


def small_ratings(spark, n_users=12, n_items=6):
    """(user_id, movie_id, rating, rated_at) of a small grid of users and movies, a third of the pairs left out."""
    rows = [
        (u, i, float(1 + (u * i) % 5), T0 + dt.timedelta(days=u + 3 * i))
        for u in range(1, n_users + 1)
        for i in range(1, n_items + 1)
        if (u + i) % 3 != 0
    ]
    return spark.createDataFrame(rows, "user_id INT, movie_id INT, rating DOUBLE, rated_at TIMESTAMP")


JDK_TOOLS = {"java", "javac", "jar", "jshell", "keytool", "jcmd", "jps", "jstack", "jmap", "jinfo", "jstat", "jfr",
             "jrunscript", "jdb", "javap", "jlink", "jwebserver"}  # fmt: skip


def no_java_path(folder: Path) -> str:
    """A PATH holding every command of this one but Java's: what a machine without Java looks like."""
    folder.mkdir(parents=True, exist_ok=True)
    for directory in os.environ["PATH"].split(os.pathsep):
        for entry in Path(directory).glob("*") if Path(directory).is_dir() else []:
            link = folder / entry.name
            if entry.name not in JDK_TOOLS and os.access(entry, os.X_OK) and not link.exists():
                link.symlink_to(entry)
    return str(folder)
