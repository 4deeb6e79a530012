"""A local HTTP server that speaks a Databricks REST API for the real SDK, and a clean SDK configuration."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer


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
