"""Topic relevance: drop a row that resembles none of its own task's hand-written seed requests.

The small embedded LLM drifts into stories and chatter that the quality rules cannot catch when they happen to
contain an editing verb. The largest cosine similarity between a row and its task's seeds separates on-topic
rows from the rest well (ROC AUC 0.88 on corpus/dev/task_labels.jsonl); the threshold trades corpus size for
precision.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from instructir.prompts.embed import Embedder
from instructir.prompts.filters.stage import Row, StageResult
from instructir.tasks import get_task


@dataclass
class TopicRelevance:
    """Drop rows whose best cosine similarity to their own task's seed requests is below ``min_similarity``."""

    embedder: Embedder
    min_similarity: float = 0.4
    name: str = "topic"

    def run(self, rows: list[Row]) -> StageResult:
        result = StageResult()
        if not rows:
            return result
        vectors = self.embedder.encode([row["text"] for row in rows])
        anchors = {name: self.embedder.encode(list(get_task(name).seeds)) for name in {row["task"] for row in rows}}
        for row, vector in zip(rows, vectors, strict=True):
            best = float(np.max(anchors[row["task"]] @ vector))
            if best < self.min_similarity:
                result.drop(row, "off_topic", similarity=round(best, 4))
            else:
                result.kept.append(row)
        return result
