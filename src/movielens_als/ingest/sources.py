"""Where MovieLens comes from: GroupLens URLs, downloads with checks, and a landing area.

A source is a URL, a local ``.zip`` or an extracted folder. Downloads are kept in the landing
area (a UC volume on Databricks, a folder under the lakehouse home locally) so a re-run needs
no network, and are checked against the ``.md5`` GroupLens publishes beside each zip.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from movielens_als.config import SIZES
from movielens_als.errors import LandingError

log = logging.getLogger(__name__)

GROUPLENS_BASE_URL = "https://files.grouplens.org/datasets/movielens"
_MD5 = re.compile(r"\b([0-9a-fA-F]{32})\b")
_CHUNK = 1 << 20


def dataset_url(size: str, base_url: str = GROUPLENS_BASE_URL) -> str:
    """GroupLens zip URL for a dataset size such as ``100k`` or ``25m``."""
    try:
        return f"{base_url.rstrip('/')}/{SIZES[size]}.zip"
    except KeyError:
        raise LandingError(f"unknown dataset size {size!r}: choose one of {', '.join(SIZES)}") from None


@dataclass(frozen=True)
class Source:
    """A local copy of a MovieLens release: a zip archive or an extracted folder."""

    path: Path
    origin: str  # what the user asked for: URL, zip path or folder
    dataset: str  # e.g. ml-100k

    @property
    def is_zip(self) -> bool:
        return self.path.is_file()

    def members(self) -> dict[str, str]:
        """Base file name -> member name (zip) or relative path (folder), for the files present."""
        if self.is_zip:
            try:
                with zipfile.ZipFile(self.path) as zf:
                    names = [n for n in zf.namelist() if not n.endswith("/")]
            except (zipfile.BadZipFile, OSError) as exc:
                raise LandingError(f"{self.path}: not a readable zip archive (truncated or corrupt): {exc}") from None
        else:
            names = [p.relative_to(self.path).as_posix() for p in sorted(self.path.rglob("*")) if p.is_file()]
        found: dict[str, str] = {}
        for name in sorted(names, key=lambda n: (n.count("/"), n)):  # the shallowest copy wins
            found.setdefault(PurePosixPath(name).name, name)
        return found

    @contextmanager
    def open(self, member: str) -> Iterator[IO[bytes]]:
        """Binary stream of one member."""
        if not self.is_zip:
            with open(self.path / member, "rb") as f:
                yield f
            return
        with zipfile.ZipFile(self.path) as zf, zf.open(member) as f:
            yield f

    def checksum(self) -> str:
        """sha256 of the zip, or of the folder's files (names and bytes) in a stable order."""
        digest = hashlib.sha256()
        if self.is_zip:
            _hash_file(self.path, digest)
        else:
            for rel in sorted(self.members().values()):
                digest.update(rel.encode() + b"\0")
                _hash_file(self.path / rel, digest)
        return digest.hexdigest()


def _hash_file(path: Path, digest) -> None:
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    _hash_file(path, digest)
    return digest.hexdigest()


def resolve_source(
    source: str | None,
    size: str,
    landing: Path,
    *,
    base_url: str = GROUPLENS_BASE_URL,
    timeout: float = 60.0,
    retries: int = 4,
    backoff: float = 2.0,
) -> Source:
    """Turn ``--source``/``--size`` into a local Source, downloading into ``landing`` if needed."""
    origin = source or dataset_url(size, base_url)
    if re.match(r"^https?://", origin):
        name = PurePosixPath(origin.split("?", 1)[0]).name or f"{SIZES.get(size, size)}.zip"
        target = landing / name
        if target.is_file() and _verified_copy(target):
            log.info("using the landed copy %s", target)
        else:
            download(origin, target, timeout=timeout, retries=retries, backoff=backoff)
        return Source(target, origin, _dataset_name(target))
    path = Path(origin).expanduser()
    if not path.exists():
        raise LandingError(f"{path}: no such file or folder")
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise LandingError(f"{path}: not a readable zip archive (truncated or corrupt)")
        _check_sidecar_md5(path)
    return Source(path.resolve(), str(path.resolve()), _dataset_name(path.resolve()))


def _dataset_name(path: Path) -> str:
    return path.name[:-4] if path.name.endswith(".zip") else path.name


def _verified_copy(path: Path) -> bool:
    """A landed zip is reused when it opens and matches its kept md5 (if one was fetched)."""
    if not zipfile.is_zipfile(path):
        return False
    sidecar = path.with_name(path.name + ".md5")
    return not sidecar.is_file() or _parse_md5(sidecar.read_text(errors="replace")) == md5_of(path)


def _check_sidecar_md5(path: Path) -> None:
    sidecar = path.with_name(path.name + ".md5")
    if sidecar.is_file():
        expected = _parse_md5(sidecar.read_text(errors="replace"))
        actual = md5_of(path)
        if expected and expected != actual:
            raise LandingError(f"{path}: checksum mismatch: md5 {actual}, {sidecar.name} says {expected}")


def _parse_md5(text: str) -> str | None:
    match = _MD5.search(text)
    return match.group(1).lower() if match else None


def download(url: str, target: Path, *, timeout: float = 60.0, retries: int = 4, backoff: float = 2.0) -> None:
    """Download ``url`` to ``target`` with retries, a size check and the published md5.

    The file appears under its final name only once complete and verified, so a crash never
    leaves a partial archive that a re-run would trust.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    last_error: Exception | None = None
    for attempt in range(1, retries + 1):
        try:
            _fetch(url, partial, timeout)
            break
        except LandingError:
            raise
        except (urllib.error.URLError, OSError, TimeoutError, _IncompleteDownloadError) as exc:
            last_error = exc
            if isinstance(exc, urllib.error.HTTPError) and 400 <= exc.code < 500 and exc.code != 429:
                raise LandingError(f"{url}: HTTP {exc.code} {exc.reason}") from None
            if attempt < retries:
                delay = backoff * 2 ** (attempt - 1)
                log.warning("download of %s failed (%s), retry %d/%d in %.1fs", url, exc, attempt, retries - 1, delay)
                time.sleep(delay)
    else:
        partial.unlink(missing_ok=True)
        raise LandingError(f"{url}: download failed after {retries} attempts: {last_error}")

    expected = _fetch_md5(url, timeout)
    if expected is not None:
        actual = md5_of(partial)
        if actual != expected:
            partial.unlink(missing_ok=True)
            raise LandingError(f"{url}: checksum mismatch: md5 {actual}, published {expected}")
        target.with_name(target.name + ".md5").write_text(f"{expected}  {target.name}\n")
    if not zipfile.is_zipfile(partial):
        partial.unlink(missing_ok=True)
        raise LandingError(f"{url}: downloaded file is not a zip archive")
    partial.replace(target)


class _IncompleteDownloadError(Exception):
    pass


def _fetch(url: str, path: Path, timeout: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "movielens-als"})
    with urllib.request.urlopen(request, timeout=timeout) as response, open(path, "wb") as out:
        expected = response.headers.get("Content-Length")
        received = 0
        while chunk := response.read(_CHUNK):
            out.write(chunk)
            received += len(chunk)
    if expected is not None and received != int(expected):
        raise _IncompleteDownloadError(f"received {received} of {expected} bytes")
    if received == 0:
        raise _IncompleteDownloadError("empty response")


def _fetch_md5(url: str, timeout: float) -> str | None:
    """The md5 GroupLens publishes at ``<url>.md5``, or None when it cannot be fetched."""
    try:
        with urllib.request.urlopen(url + ".md5", timeout=timeout) as response:
            return _parse_md5(response.read(4096).decode("ascii", errors="replace"))
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        log.warning("no md5 published for %s (%s); relying on the size check", url, exc)
        return None
