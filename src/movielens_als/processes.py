"""This process as a training run's owner (``host:pid:start``), and whether an owner is still alive."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def owner_tag() -> str:
    """``host:pid:start`` of this process; the start time tells a reused pid apart."""
    return f"{socket.gethostname()}:{os.getpid()}:{started_at(os.getpid()) or ''}"


def started_at(pid: int) -> str | None:
    """A process's start time in clock ticks since boot (Linux ``/proc``), or None."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def alive(owner: str | None) -> bool | None:
    """Whether the process that owns a ``running`` row still runs: None when it ran on another host."""
    host, _, rest = (owner or "").partition(":")
    pid, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    if int(pid) == os.getpid():
        return False  # this process: an earlier attempt whose failed row never landed, not a live trainer
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not started or started_at(int(pid)) == started
