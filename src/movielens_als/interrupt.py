"""Ctrl-C on a local classic session: cancel the running Spark jobs, stop promptly, exit 130.

PySpark's own SIGINT handler calls ``cancelAllJobs`` from inside the handler, on the py4j
connection the interrupted call is still reading, which breaks it ("reentrant call inside
BufferedReader", then ``Py4JNetworkError`` and a traceback instead of a prompt stop). This handler
never touches the JVM from the interrupted thread. In Python code it raises KeyboardInterrupt;
inside a JVM call a helper thread (its own py4j connection) cancels the running jobs, and the call
fails with ``SPARK_JOB_CANCELLED``, which the CLI reports as the interrupt (:func:`requested`).
The signal repeats every half second until the main thread is back in Python; while it is handling
an exception (the task's cleanup after the cancelled job) the repeats are ignored.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from types import FrameType

from pyspark.sql import SparkSession

_state = {"requested": False, "raised_at": None}
# After KeyboardInterrupt is raised, repeats are the same Ctrl-C while the task cleans up; later ones are new.
CLEANUP_SECONDS = 10.0


def requested() -> bool:
    """True once Ctrl-C was pressed: a failure after it is the interrupt, not an error."""
    return _state["requested"]


def install(spark: SparkSession) -> None:
    """Replace PySpark's SIGINT handler for ``spark`` (classic only); a no-op off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return

    def cancel() -> None:
        spark.sparkContext.cancelAllJobs()  # classic-only: install() is called for classic sessions only

    def repeat() -> None:
        # Until the main thread is back in Python (or already failing with the cancelled job), signal again.
        while _state["raised_at"] is None:
            time.sleep(0.5)
            if _state["raised_at"] is None:
                os.kill(os.getpid(), signal.SIGINT)

    def handler(signum: int, frame: FrameType | None) -> None:
        raised_at = _state["raised_at"]
        if raised_at is not None:
            if time.monotonic() - raised_at < CLEANUP_SECONDS:
                return  # the interrupt is under way: let the task's cleanup run
            _state.update(raised_at=None, requested=False)  # a new Ctrl-C (an interactive session lives on)
        first = not _state["requested"]
        _state["requested"] = True
        if first:
            threading.Thread(target=repeat, name="repeat-interrupt", daemon=True).start()
        if sys.exc_info()[0] is not None:
            return  # handling an exception already (the cancelled job's): let its cleanup run
        if not _in_jvm_call(frame):
            _state["raised_at"] = time.monotonic()
            raise KeyboardInterrupt
        threading.Thread(target=cancel, name="cancel-spark-jobs", daemon=True).start()

    signal.signal(signal.SIGINT, handler)


def done() -> None:
    """Stop listening: the process is exiting with the interrupt (no repeat may land in its shutdown)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _state["raised_at"] = time.monotonic()


def _in_jvm_call(frame: FrameType | None) -> bool:
    while frame is not None:
        if "py4j" in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False
