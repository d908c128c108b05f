"""Drop rows that ask for the opposite of their task: "darken it" or "it's too bright" labelled low light,
"make it smaller" labelled super-resolution. Small generators write such self-contradicting rows often, fluently
enough that the learned quality stage keeps some; each task's opposite phrases live in the registry."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from instructir.prompts.filters.stage import Row, StageResult
from instructir.tasks import all_tasks


def opposite_patterns() -> dict[str, re.Pattern[str]]:
    """One compiled pattern per task with opposites, matching any of them (case-insensitive)."""
    return {
        task.name: re.compile("|".join(f"(?:{pattern})" for pattern in task.opposites), re.IGNORECASE)
        for task in all_tasks()
        if task.opposites
    }


@dataclass
class OppositeRequest:
    """Drop a row whose text matches one of its own task's opposite phrases, naming the phrase."""

    name: str = "opposite"
    patterns: dict[str, re.Pattern[str]] = field(default_factory=opposite_patterns)

    def run(self, rows: list[Row]) -> StageResult:
        result = StageResult()
        for row in rows:
            pattern = self.patterns.get(row["task"])
            found = pattern.search(row["text"]) if pattern else None
            if found:
                result.drop(row, "asks_for_the_opposite", opposite=found.group(0))
            else:
                result.kept.append(row)
        return result
