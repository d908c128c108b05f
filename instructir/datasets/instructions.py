"""The requests a dataset draws its instructions from: a corpus grouped by task."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from instructir.prompts.candidates import read_candidates
from instructir.prompts.corpus import SHIPPED_CORPUS, resolve_corpus


class InstructionPool:
    """Requests of each task, drawn with an explicit generator so every sample's instruction is reproducible."""

    def __init__(self, rows: Iterable[dict]) -> None:
        self.by_task: dict[str, list[str]] = {}
        for row in rows:
            self.by_task.setdefault(row["task"], []).append(row["text"])
        for texts in self.by_task.values():
            texts.sort()

    @classmethod
    def from_corpus(cls, name_or_path: str | Path = SHIPPED_CORPUS) -> InstructionPool:
        """A pool from a shipped corpus's short name, or any Parquet or JSONL file with ``text`` and ``task``."""
        return cls(read_candidates(resolve_corpus(name_or_path)))

    def counts(self) -> dict[str, int]:
        """How many requests each task has."""
        return {task: len(texts) for task, texts in sorted(self.by_task.items())}

    def require(self, tasks: Iterable[str]) -> None:
        """Fail early, naming the tasks the corpus has no requests for."""
        missing = [task for task in tasks if not self.by_task.get(task)]
        if missing:
            raise ValueError(
                f"the corpus has no requests for {', '.join(missing)}; use a corpus that covers them "
                "or leave those tasks out with --tasks"
            )

    def draw(self, task: str, rng: np.random.Generator) -> str:
        """One request of ``task``."""
        texts = self.by_task.get(task)
        if not texts:
            self.require([task])
        return texts[int(rng.integers(len(texts)))]
