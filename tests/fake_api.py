"""A local HTTP server that speaks a Databricks REST API for the real SDK, and a clean SDK configuration."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextmanager
def running(fake) -> Iterator:
    """Serve ``fake.handler()`` on a free 127.0.0.1 port for the block; ``fake.host`` is its URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    fake.host = f"http://127.0.0.1:{httpd.server_port}"
    try:
        yield fake
    finally:
        httpd.shutdown()
        httpd.server_close()


def isolate_databricks_config(monkeypatch, home) -> None:
    """Only what a test sets: no DATABRICKS_* variables or ~/.databrickscfg of the machine running it."""
    for name in [n for n in os.environ if n.startswith("DATABRICKS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))


def json_handler(fake) -> type[BaseHTTPRequestHandler]:
    """A handler that passes each GET/POST's (method, path, JSON body) to ``fake.answer`` and sends its
    (status, JSON payload) back."""

    class Handler(BaseHTTPRequestHandler):
        def _reply(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            code, payload = fake.answer(self.command, self.path, body)
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = _reply  # noqa: N815 - http.server's names

        def log_message(self, *args) -> None:  # keep the test output quiet
            pass

    return Handler


@contextmanager
def cli_server(args: list[str], ready_path: str, cwd) -> Iterator[tuple[subprocess.Popen, str]]:
    """``movielens-als <args> --port <free port>`` as a user starts it, once ``ready_path`` answers 200:
    (process, base URL); killed at the end if still running."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "movielens_als.cli", *args, "--port", str(port)]
    process = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}{ready_path}", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            time.sleep(0.3)
    assert process.poll() is None, process.stdout.read()
    try:
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
