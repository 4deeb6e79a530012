"""``serve``'s inference table: every request it answers, in the columns Model Serving's AI Gateway writes.

On Databricks the endpoint's inference table (``<endpoint>_payload``) is Model Serving's; locally ``serve`` appends
the same columns with delta-rs, so ``land`` harvests feedback from either the same way. Rows are buffered and
written by a background thread about once a second (and on shutdown): a request never waits for a Delta commit.
"""

from __future__ import annotations

import logging
import threading
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


class InferenceLog:
    """Appends answered requests to the Delta table at ``path``; :meth:`close` writes what is still buffered."""

    def __init__(self, path: Path, served_entity: str, flush_seconds: float = 1.0) -> None:
        self.path, self.served_entity, self.flush_seconds = path, served_entity, flush_seconds
        self._rows: list[dict] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inference-log", daemon=True)
        self._thread.start()

    def record(self, received: datetime, status: int, duration_ms: int, request: str, response: str,
               client_request_id: str | None = None, request_id: str | None = None) -> str:  # fmt: skip
        """Buffer one answered request; its request id (a new UUID unless given)."""
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

    def flush(self) -> int:
        """Write the buffered rows in one Delta commit; how many."""
        from deltalake import write_deltalake

        with self._write_lock:
            with self._lock:
                rows, self._rows = self._rows, []
            if not rows:
                return 0
            try:
                write_deltalake(str(self.path), pa.Table.from_pylist(rows, schema=SCHEMA), mode="append")
            except Exception:
                with self._lock:  # kept for the next flush, in order
                    self._rows[:0] = rows
                raise
            return len(rows)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            try:
                self.flush()
            except Exception:  # logging must not take the server down; the rows stay buffered
                log.exception("writing the inference table %s failed", self.path)


def now() -> datetime:
    return datetime.now(UTC)
