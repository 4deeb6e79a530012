"""``serve``'s inference table: every request it answers, in the columns Model Serving's AI Gateway writes.

On Databricks the endpoint's inference table (``<endpoint>_payload``) is Model Serving's; locally ``serve`` appends
the same columns with delta-rs, so ``land`` harvests feedback from either the same way. Rows are queued to a writer
process that commits about once a second (and on shutdown): a request never waits for a Delta commit.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

log = logging.getLogger(__name__)

SCHEMA = pa.schema(
    [
        ("request_date", pa.date32()),
        ("databricks_request_id", pa.string()),
        ("client_request_id", pa.string()),
        ("request_time", pa.timestamp("us", tz="UTC")),
        ("status_code", pa.int32()),
        ("sampling_fraction", pa.float64()),
        ("execution_duration_ms", pa.int64()),
        ("request", pa.string()),
        ("response", pa.string()),
        ("served_entity_id", pa.string()),
        ("logging_error_codes", pa.list_(pa.string())),
        ("requester", pa.string()),
    ]
)


# A commit about once a second: the table trails the requests by seconds (Model Serving's by minutes).
FLUSH_SECONDS = 1.0


class InferenceLog:
    """Appends answered requests to the Delta table at ``path``; :meth:`close` writes what is still buffered.

    The commits happen in a child process: delta-rs takes the GIL back many times while it writes, and in the
    server's own process each of those waits would be a request's.
    """

    def __init__(self, path: Path, served_entity: str, flush_seconds: float = FLUSH_SECONDS) -> None:
        self.served_entity = served_entity
        context = multiprocessing.get_context("spawn")
        self._queue = context.Queue()
        self._writer = context.Process(
            target=_write_batches, args=(str(path), self._queue, flush_seconds, os.getpid()), daemon=True
        )
        self._writer.start()
        # Rows wait here and cross to the writer a batch per interval: one pickle per interval, not one per request.
        self._rows: list[dict] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sender = threading.Thread(target=self._send_batches, args=(flush_seconds,), daemon=True)
        self._sender.start()

    def record(self, received: datetime, status: int, duration_ms: int, request: str, response: str,
               client_request_id: str | None = None, request_id: str | None = None) -> str:  # fmt: skip
        """Queue one answered request for the next commit; its request id (a new UUID unless given)."""
        request_id = request_id or str(uuid.uuid4())
        row = {
            "request_date": received.date(), "databricks_request_id": request_id,
            "client_request_id": client_request_id, "request_time": received, "status_code": status,
            "sampling_fraction": 1.0, "execution_duration_ms": duration_ms, "request": request,
            "response": response, "served_entity_id": self.served_entity, "logging_error_codes": [],
            "requester": None,
        }  # fmt: skip
        with self._lock:
            self._rows.append(row)
        return request_id

    def _send(self) -> None:
        with self._lock:
            rows, self._rows = self._rows, []
        if rows:
            self._queue.put(rows)

    def _send_batches(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            self._send()

    def close(self, timeout: float = 60.0) -> None:
        """Commit what is queued and stop the writer."""
        self._stop.set()
        self._sender.join(timeout)
        self._send()
        self._queue.put(None)
        self._writer.join(timeout)
        self._queue.close()


def _write_batches(path: str, rows: multiprocessing.Queue, flush_seconds: float, parent: int) -> None:
    """The writer process: a commit per ``flush_seconds`` of rows; the last one when told to stop (None) or when
    the server is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the server, which then tells this to finish
    # One thread for delta-rs's runtime: a commit of a second's rows needs no more, and on a small machine each
    # extra thread is a core taken from the requests. (Not a lower priority: on a saturated machine the last
    # commit at shutdown would then wait for minutes.)
    os.environ["TOKIO_WORKER_THREADS"] = "1"
    from deltalake import DeltaTable, write_deltalake

    # The table from the start (an empty first commit): readers and harvests find it as soon as serve is up.
    try:
        if not DeltaTable.is_deltatable(path):
            write_deltalake(path, SCHEMA.empty_table(), mode="append")
    except Exception:
        log.exception("creating the inference table %s failed", path)
    batch: list[dict] = []
    deadline, done = time.monotonic() + flush_seconds, False
    while not done:
        try:
            rows_sent = rows.get(timeout=max(0.0, deadline - time.monotonic()))
            if rows_sent is None:
                done = True
            else:
                batch.extend(rows_sent)
        except queue.Empty:
            done = os.getppid() != parent  # a killed server: commit what came, then go
        if batch and (done or time.monotonic() >= deadline):
            try:
                write_deltalake(path, pa.Table.from_pylist(batch, schema=SCHEMA), mode="append")
                batch = []
            except Exception:  # logging must not take the server down; the rows wait for the next commit
                log.exception("writing the inference table %s failed", path)
        if time.monotonic() >= deadline:
            deadline = time.monotonic() + flush_seconds


def now() -> datetime:
    return datetime.now(UTC)
