"""Progress lines: rewritten in place on a terminal, one per update in a log."""

from __future__ import annotations

import io
import re

from movielens_als.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_one_plain_line_per_update():
    log = io.StringIO()
    with Progress("train", log) as progress:
        progress.update("ranking grid point 1 of 2: fit 3 of 6")
        progress.update("ranking grid point 2 of 2: fit 4 of 6")
    lines = log.getvalue().splitlines()
    assert [re.sub(r" \(\d+s\)$", "", line) for line in lines] == [
        "[train] ranking grid point 1 of 2: fit 3 of 6",
        "[train] ranking grid point 2 of 2: fit 4 of 6",
    ]
    assert "\r" not in log.getvalue()


def test_a_terminal_gets_one_line_rewritten_then_cleared():
    tty = Terminal()
    with Progress("evaluate", tty) as progress:
        progress.update("model 1 of 4: rating")
        progress.update("model 2 of 4: ranking")
    out = tty.getvalue()
    assert "\n" not in out
    assert out.startswith("\r\x1b[K[evaluate] model 1 of 4: rating (")
    assert "\r\x1b[K[evaluate] model 2 of 4: ranking (" in out
    assert out.endswith("\r\x1b[K")  # nothing left on the line for the task's summary
    quiet = Terminal()
    Progress("recommend", quiet).close()
    assert quiet.getvalue() == ""
