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

_state = {"requested": False, "raised": False}


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
        while not _state["raised"]:
            time.sleep(0.5)
            os.kill(os.getpid(), signal.SIGINT)

    def handler(signum: int, frame: FrameType | None) -> None:
        first = not _state["requested"]
        _state["requested"] = True
        if _state["raised"] or sys.exc_info()[0] is not None:
            return  # already stopping: let the task's cleanup run
        if not _in_jvm_call(frame):
            _state["raised"] = True
            raise KeyboardInterrupt
        threading.Thread(target=cancel, name="cancel-spark-jobs", daemon=True).start()
        if first:
            threading.Thread(target=repeat, name="repeat-interrupt", daemon=True).start()

    signal.signal(signal.SIGINT, handler)


def _in_jvm_call(frame: FrameType | None) -> bool:
    while frame is not None:
        if "py4j" in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False
