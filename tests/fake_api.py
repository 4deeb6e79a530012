"""A local HTTP server that speaks a Databricks REST API for the real SDK, and a clean SDK configuration."""

from __future__ import annotations

import json
import os
import threading
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

        def do_GET(self) -> None:
            self._reply()

        def do_POST(self) -> None:
            self._reply()

        def log_message(self, *args) -> None:  # keep the test output quiet
            pass

    return Handler
