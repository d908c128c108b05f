"""What a filtering stage is: a named step that splits rows into kept and dropped, with a reason for each drop."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

Row = dict[str, Any]


@dataclass
class StageResult:
    """Rows a stage kept, in input order, and the rows it dropped, each with ``reason`` and maybe ``duplicate_of``."""

    kept: list[Row] = field(default_factory=list)
    dropped: list[Row] = field(default_factory=list)

    def drop(self, row: Row, reason: str, **extra: Any) -> None:
        """Record one dropped row with its reason and any details (the row it duplicates, a predicted task)."""
        self.dropped.append({**row, "reason": reason, **extra})


class Stage(Protocol):
    """One step of the cascade."""

    name: str

    def run(self, rows: list[Row]) -> StageResult:
        """Split ``rows`` into kept and dropped."""
        ...
