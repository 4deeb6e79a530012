"""Where a long task is: one updating line on a terminal, plain lines in a job's log (stderr either way)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``[train] ranking grid point 2/4 ...`` as the work moves; cleared from a terminal when the task ends."""

    def __init__(self, task: str, stream: TextIO | None = None):
        self.task, self.stream = task, stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self.shown = False

    def update(self, message: str) -> None:
        line = f"[{self.task}] {message} ({time.monotonic() - self.started:.0f}s)"
        # A terminal gets the line rewritten in place; a job's log keeps each line.
        self.stream.write(f"\r\033[K{line}" if self.tty else f"{line}\n")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.tty and self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
