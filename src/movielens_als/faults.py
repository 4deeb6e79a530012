"""Failpoints: named places where the crash tests stop the process as a power cut or a Ctrl-C would, or fail
the task there as an exception would.

``MOVIELENS_ALS_KILL_AT=<point>`` sends SIGKILL to the process group when the process reaches
``point`` (the group: a local Spark JVM dies with its Python driver, as on a lost machine);
``<point>+<seconds>`` sends it that long afterwards, while the work that follows (an ALS fit, a
table write) is under way; a ``:INT`` suffix sends SIGINT to the process instead, as Ctrl-C does;
``:RAISE`` raises :class:`InjectedFailureError` at the point, which a test running the task in its own
process catches. Unset, a failpoint costs one environment lookup.
"""

from __future__ import annotations

import os
import signal
import threading

KILL_AT = "MOVIELENS_ALS_KILL_AT"


class InjectedFailureError(RuntimeError):
    """What a ``:RAISE`` failpoint raises: the task fails there, its own error handling runs."""


def failpoint(name: str) -> None:
    spec = os.environ.get(KILL_AT)
    if not spec:
        return
    spec, _, how = spec.partition(":")
    point, _, delay = spec.partition("+")
    if point != name:
        return
    if how == "RAISE":
        raise InjectedFailureError(f"failpoint {name}")
    stop = _interrupt if how == "INT" else _kill
    if delay:
        timer = threading.Timer(float(delay), stop)
        timer.daemon = True  # a task that ends first exits normally, and the harness sees it was not stopped
        timer.start()
    else:
        stop()


def _kill() -> None:
    os.killpg(os.getpgid(0), signal.SIGKILL)


def _interrupt() -> None:
    os.kill(os.getpid(), signal.SIGINT)
