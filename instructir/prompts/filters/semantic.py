"""Semantic duplicates: rows whose sentence embeddings are within a cosine threshold of an earlier kept row.

Exact and greedy: each row is compared with every earlier kept row, blockwise with matrix products. Rows are
visited in input order, or best first when ``prefer`` names a score column (seeds always first), so each group of
paraphrases keeps its best row; the kept rows come out in input order either way. Beyond ``partition_above`` rows
the set is first split by k-means (SemDeDup style) and deduplicated within each cluster, which keeps the work
near-linear; paraphrases almost always share a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from instructir.prompts.embed import Embedder
from instructir.prompts.filters.stage import Row, StageResult


def greedy_dedup(vectors: np.ndarray, threshold: float, block_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """For unit vectors in order: the index of the kept row each one duplicates (-1 if kept) and that cosine."""
    count = len(vectors)
    duplicate_of = np.full(count, -1, dtype=np.int64)
    similarity = np.zeros(count, dtype=np.float32)
    kept = np.empty((0,), dtype=np.int64)
    for start in range(0, count, block_size):
        block = vectors[start : start + block_size]
        earlier = block @ vectors[kept].T if len(kept) else np.zeros((len(block), 0), dtype=np.float32)
        within = block @ block.T
        kept_here: list[int] = []
        for offset in range(len(block)):
            best, best_index = -1.0, -1
            if earlier.shape[1]:
                column = int(np.argmax(earlier[offset]))
                best, best_index = float(earlier[offset, column]), int(kept[column])
            if kept_here:
                local = within[offset, kept_here]
                column = int(np.argmax(local))
                if local[column] > best:
                    best, best_index = float(local[column]), start + kept_here[column]
            if best >= threshold:
                duplicate_of[start + offset] = best_index
                similarity[start + offset] = best
            else:
                kept_here.append(offset)
        kept = np.concatenate([kept, start + np.asarray(kept_here, dtype=np.int64)])
    return duplicate_of, similarity


def partitions(vectors: np.ndarray, rows_per_cluster: int, seed: int) -> list[np.ndarray]:
    """Row indices grouped by k-means cluster, each group in input order."""
    from sklearn.cluster import MiniBatchKMeans

    clusters = max(1, len(vectors) // rows_per_cluster)
    labels = MiniBatchKMeans(n_clusters=clusters, random_state=seed, batch_size=4096, n_init=1).fit_predict(vectors)
    return [np.flatnonzero(labels == label) for label in range(clusters)]


@dataclass
class SemanticDedup:
    """Drop rows within ``threshold`` cosine similarity of an earlier kept row."""

    embedder: Embedder
    threshold: float = 0.85
    partition_above: int = 100_000
    rows_per_cluster: int = 5_000
    seed: int = 0
    prefer: str | None = None
    name: str = "semantic_duplicate"

    def visit_order(self, rows: list[Row]) -> np.ndarray:
        """The order rows are compared in: input order, or seeds then the highest ``prefer`` score first."""
        if self.prefer is None:
            return np.arange(len(rows))
        keys = [(row.get("source") != "seed", -float(row.get(self.prefer) or 0.0)) for row in rows]
        return np.array(sorted(range(len(rows)), key=keys.__getitem__), dtype=np.int64)

    def run(self, rows: list[Row]) -> StageResult:
        vectors = self.embedder.encode([row["text"] for row in rows])
        return self.run_on_vectors(rows, vectors)

    def run_on_vectors(self, rows: list[Row], vectors: np.ndarray) -> StageResult:
        """The stage on precomputed unit vectors (one per row)."""
        duplicate_of = np.full(len(rows), -1, dtype=np.int64)
        similarity = np.zeros(len(rows), dtype=np.float32)
        order = self.visit_order(rows)
        groups = (
            [order[group] for group in partitions(vectors[order], self.rows_per_cluster, self.seed)]
            if len(rows) > self.partition_above
            else [order]
        )
        for group in groups:
            local, cosine = greedy_dedup(vectors[group], self.threshold)
            hit = local >= 0
            duplicate_of[group[hit]] = group[local[hit]]
            similarity[group] = cosine
        result = StageResult()
        for index, row in enumerate(rows):
            if duplicate_of[index] >= 0:
                result.drop(
                    row,
                    "semantic_duplicate",
                    duplicate_of=rows[duplicate_of[index]]["id"],
                    similarity=round(float(similarity[index]), 4),
                )
            else:
                result.kept.append(row)
        return result
