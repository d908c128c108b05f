"""Exact duplicates after normalisation (case, punctuation, whitespace): the first occurrence is kept."""

from __future__ import annotations

from dataclasses import dataclass

from instructir.prompts.filters.stage import Row, StageResult
from instructir.prompts.rules import normalise


@dataclass
class ExactDedup:
    """Drop rows whose normalised text was already seen."""

    name: str = "exact"

    def run(self, rows: list[Row]) -> StageResult:
        result = StageResult()
        first: dict[str, str] = {}
        for row in rows:
            key = normalise(row["text"])
            if key in first:
                result.drop(row, "exact_duplicate", duplicate_of=first[key])
            else:
                first[key] = row["id"]
                result.kept.append(row)
        return result
