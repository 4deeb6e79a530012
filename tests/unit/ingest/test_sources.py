"""Downloads against a local HTTP server that serves a release the test zipped: retries, size, md5, reuse."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from movielens_als.errors import LandingError
from movielens_als.ingest.sources import dataset_url, resolve_source
from tests.fixtures import write_ml100k, zip_folder


class FakeGroupLens:
    """Serves /ml-100k.zip and /ml-100k.zip.md5 on 127.0.0.1 with scripted faults."""

    def __init__(self, payload: bytes):
        self.payload = payload
        self.md5: str | None = hashlib.md5(payload).hexdigest()
        self.failures_before_success = 0
        self.truncate = False
        self.zip_requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                if self.path == "/ml-100k.zip.md5":
                    if server.md5 is None:
                        self.send_error(404)
                        return
                    self._reply(f"MD5 (ml-100k.zip) = {server.md5}\n".encode())
                elif self.path == "/ml-100k.zip":
                    server.zip_requests += 1
                    if server.zip_requests <= server.failures_before_success:
                        self.send_error(503)
                        return
                    body = server.payload
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2] if server.truncate else body)
                else:
                    self.send_error(404)

            def _reply(self, body: bytes):
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def grouplens(tmp_path):
    archive = zip_folder(write_ml100k(tmp_path / "release"), tmp_path / "release.zip")
    server = FakeGroupLens(archive.read_bytes())
    yield server
    server.httpd.shutdown()


def fetch(server, landing, **kwargs):
    return resolve_source(None, "100k", landing, base_url=server.base_url, timeout=5, backoff=0.01, **kwargs)


def test_dataset_url_follows_grouplens_names():
    assert dataset_url("100k") == "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
    assert dataset_url("latest-small", "http://x/") == "http://x/ml-latest-small.zip"
    with pytest.raises(LandingError, match="unknown dataset size '7k'"):
        dataset_url("7k")


def test_download_retries_transient_errors_verifies_md5_and_keeps_the_archive(grouplens, tmp_path):
    grouplens.failures_before_success = 2

    source = fetch(grouplens, tmp_path / "landing")

    assert source.path == tmp_path / "landing" / "ml-100k.zip"
    assert source.path.read_bytes() == grouplens.payload
    assert (tmp_path / "landing" / "ml-100k.zip.md5").read_text().split()[0] == grouplens.md5
    assert source.dataset == "ml-100k" and grouplens.zip_requests == 3


def test_rerun_uses_the_landed_archive_without_downloading(grouplens, tmp_path):
    fetch(grouplens, tmp_path / "landing")
    fetch(grouplens, tmp_path / "landing")
    assert grouplens.zip_requests == 1


def test_md5_mismatch_is_a_hard_error_and_leaves_no_archive(grouplens, tmp_path):
    grouplens.md5 = "0" * 32
    with pytest.raises(LandingError, match=r"ml-100k.zip: checksum mismatch: md5 [0-9a-f]{32}, published 0{32}"):
        fetch(grouplens, tmp_path / "landing")
    assert list((tmp_path / "landing").iterdir()) == []


def test_truncated_download_is_retried_then_fails_with_the_size(grouplens, tmp_path):
    grouplens.truncate = True
    with pytest.raises(LandingError, match=r"download failed after 3 attempts: received \d+ of \d+ bytes"):
        fetch(grouplens, tmp_path / "landing", retries=3)
    assert grouplens.zip_requests == 3
    assert not (tmp_path / "landing" / "ml-100k.zip").exists()


def test_missing_md5_falls_back_to_the_size_check(grouplens, tmp_path):
    grouplens.md5 = None
    source = fetch(grouplens, tmp_path / "landing")
    assert source.path.read_bytes() == grouplens.payload


def test_not_found_fails_at_once(grouplens, tmp_path):
    with pytest.raises(LandingError, match="HTTP 404"):
        resolve_source(grouplens.base_url + "/ml-7k.zip", "100k", tmp_path, timeout=5, backoff=0.01)
