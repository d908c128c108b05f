"""Label consistency: drop a row whose content points to another task than its label.

An out-of-fold logistic-regression probe on sentence embeddings, trained on the registry's seed requests
(always in training, weighted up because they are clean) and on the other folds of the candidates, predicts each
row's task. A row is dropped when the probe prefers another task by at least ``margin`` in probability; the
predicted task is recorded. A row's fold comes from a hash of its normalised text, so a verdict does not depend on
the order of the rows, and removing some rows does not reshuffle the folds of all the others.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from instructir.prompts.embed import Embedder
from instructir.prompts.filters.stage import Row, StageResult
from instructir.prompts.rules import normalise
from instructir.tasks import all_tasks, get_task


def text_folds(texts: list[str], folds: int, seed: int = 0) -> np.ndarray:
    """Each text's fold in [0, folds): a keyed hash of its normalised form, independent of position."""
    key = str(seed).encode()
    return np.array(
        [
            int.from_bytes(hashlib.blake2b(normalise(text).encode(), key=key, digest_size=8).digest(), "big") % folds
            for text in texts
        ]
    )


def out_of_fold_probabilities(
    vectors: np.ndarray,
    labels: np.ndarray,
    anchor_vectors: np.ndarray,
    anchor_labels: np.ndarray,
    classes: np.ndarray,
    fold_ids: np.ndarray,
    anchor_weight: float = 5.0,
) -> np.ndarray:
    """Each row's class probabilities from a probe that never saw that row's fold; anchors are always in
    training, so a fold with no other rows to learn from still gets a probe."""
    from sklearn.linear_model import LogisticRegression

    probabilities = np.zeros((len(vectors), len(classes)), dtype=np.float64)
    for fold in np.unique(fold_ids):
        test = np.flatnonzero(fold_ids == fold)
        train = np.flatnonzero(fold_ids != fold)
        features = np.concatenate([vectors[train], anchor_vectors])
        targets = np.concatenate([labels[train], anchor_labels])
        weights = np.concatenate([np.ones(len(train)), np.full(len(anchor_labels), anchor_weight)])
        probe = LogisticRegression(max_iter=2000, C=4.0)
        probe.fit(features, targets, sample_weight=weights)
        columns = np.searchsorted(classes, probe.classes_)
        probabilities[np.ix_(test, columns)] = probe.predict_proba(vectors[test])
    return probabilities


@dataclass
class LabelConsistency:
    """Drop rows that an out-of-fold probe assigns to another task with a clear margin."""

    embedder: Embedder
    margin: float = 0.3
    folds: int = 5
    anchor_weight: float = 5.0
    seed: int = 0
    name: str = "label_consistency"

    def run(self, rows: list[Row]) -> StageResult:
        result = StageResult()
        if len(rows) < self.folds:
            result.kept.extend(rows)
            return result
        labels = np.array([get_task(row["task"]).id for row in rows])
        anchors = [(seed, task.id) for task in all_tasks() for seed in task.seeds]
        texts = [row["text"] for row in rows]
        vectors = self.embedder.encode(texts)
        anchor_vectors = self.embedder.encode([text for text, _ in anchors])
        classes = np.array(sorted({task.id for task in all_tasks()}))
        probabilities = out_of_fold_probabilities(
            vectors,
            labels,
            anchor_vectors,
            np.array([label for _, label in anchors]),
            classes,
            text_folds(texts, self.folds, self.seed),
            self.anchor_weight,
        )
        for row, label, row_probabilities in zip(rows, labels, probabilities, strict=True):
            own = row_probabilities[np.searchsorted(classes, label)]
            best = int(np.argmax(row_probabilities))
            if classes[best] != label and row_probabilities[best] - own >= self.margin:
                predicted = get_task(int(classes[best])).name
                result.drop(row, "label_mismatch", predicted_task=predicted, own_probability=round(float(own), 3))
            else:
                result.kept.append(row)
        return result
