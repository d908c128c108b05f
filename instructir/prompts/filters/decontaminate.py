"""Decontamination: drop rows that repeat a request of an evaluation set, so the set stays unseen by training.

Short generic requests ("Fix it.") are written by generators and by people alike; a corpus that holds one of its
test set's requests makes the synthetic-to-real figure a little easier than it is. Matching is on the
exact-duplicate key (case, punctuation and spacing ignored).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from instructir.prompts.filters.stage import Row, StageResult
from instructir.prompts.rules import normalise


@dataclass
class Decontaminate:
    """Drop rows whose text is, up to case, punctuation and spacing, one of ``texts``."""

    texts: Iterable[str]
    name: str = "decontaminate"
    _keys: frozenset[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._keys = frozenset(normalise(text) for text in self.texts)

    def run(self, rows: list[Row]) -> StageResult:
        result = StageResult()
        for row in rows:
            if normalise(row["text"]) in self._keys:
                result.drop(row, "in_evaluation_set")
            else:
                result.kept.append(row)
        return result
