"""What every task returns: rows written per table and a few facts worth printing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TaskResult:
    task: str
    rows: dict[str, int] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    headline: str | None = None  # one line worth printing on its own (the gate's decision)

    def summary(self) -> str:
        """One line: ``land: ratings=100000 movies=1682 ...; run_id=...`` (``deploy: version=3 ...`` without rows)."""
        rows = " ".join(f"{table}={n}" for table, n in self.rows.items())
        facts = " ".join(f"{k}={v}" for k, v in self.details.items() if not isinstance(v, (dict, list)))
        return f"{self.task}: " + "; ".join(part for part in (rows, facts) if part)
