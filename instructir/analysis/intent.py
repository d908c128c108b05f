"""Intent classifiers trained on cached sentence embeddings, and the metrics that judge them on held-out requests.

Two classifiers: the model's own ``TextHead`` (projection to the unit vector ``e``, then a linear classifier),
trained alone with class-weighted cross-entropy; and a logistic-regression probe on the raw embeddings, which
says what a linear read-out of the frozen encoder can do without the head's projection.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from instructir.model.text import TextHead
from instructir.tasks import all_tasks


@dataclass(frozen=True)
class HeadTraining:
    """How the text head is trained: AdamW for ``epochs`` passes, but never fewer than ``min_steps`` updates."""

    epochs: int = 20
    min_steps: int = 300
    batch: int = 256
    lr: float = 2e-3
    weight_decay: float = 0.01
    embed_dim: int = 256


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Inverse-frequency weights (mean 1 over the classes present); absent classes get 0."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(num_classes)
    weights[present] = counts[present].sum() / (present.sum() * counts[present])
    return weights


def train_head(
    vectors: np.ndarray,
    labels: np.ndarray,
    seed: int,
    num_classes: int | None = None,
    settings: HeadTraining | None = None,
) -> TextHead:
    """A ``TextHead`` trained on (N, in_dim) embeddings with class-balanced cross-entropy; same seed, same head.

    Small sets get ``min_steps`` updates so that 100 seeds and 17k corpus requests are both trained to a plateau.
    """
    settings = settings or HeadTraining()
    num_classes = num_classes or len(all_tasks())
    x = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    weight = torch.from_numpy(class_weights(np.asarray(labels), num_classes)).float()
    batch = min(settings.batch, len(x))
    per_epoch = math.ceil(len(x) / batch)
    steps = max(settings.epochs * per_epoch, settings.min_steps)
    rng = np.random.default_rng(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = TextHead(in_dim=x.shape[1], embed_dim=settings.embed_dim, num_classes=num_classes)
    optimizer = torch.optim.AdamW(head.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    head.train()
    order = np.zeros(0, dtype=np.int64)
    with _one_thread():
        for _ in range(steps):
            if len(order) < batch:
                order = np.concatenate([order, rng.permutation(len(x))])
            rows, order = torch.from_numpy(order[:batch]), order[batch:]
            _, logits = head(x[rows])
            loss = F.cross_entropy(logits, y[rows], weight=weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return head.eval()


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one thread: a head this small trains 20x faster than with threads contending for cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def head_predict(head: TextHead, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predicted task ids and softmax probabilities (N, K) of a text head on sentence embeddings."""
    with torch.inference_mode():
        _, logits = head(torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)))
        probabilities = torch.softmax(logits, dim=-1).numpy()
    return probabilities.argmax(axis=1), probabilities


def train_probe(vectors: np.ndarray, labels: np.ndarray, seed: int, strength: float = 1.0) -> LogisticRegression:
    """A class-balanced multinomial logistic regression on the raw embeddings (``strength`` is sklearn's C)."""
    probe = LogisticRegression(C=strength, class_weight="balanced", max_iter=2000, random_state=seed)
    return probe.fit(vectors, labels)


def probe_predict(probe: LogisticRegression, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predicted task ids and probabilities (N, K over the registry, 0 for tasks unseen in training)."""
    probabilities = np.zeros((len(vectors), len(all_tasks())))
    probabilities[:, probe.classes_] = probe.predict_proba(vectors)
    return probabilities.argmax(axis=1), probabilities


def classification_metrics(truth: np.ndarray, predicted: np.ndarray) -> dict[str, Any]:
    """Accuracy, macro-F1 over the tasks present in ``truth``, per-task precision/recall/F1, registry confusion."""
    tasks = all_tasks()
    present = sorted({int(label) for label in truth})
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=[task.id for task in tasks], zero_division=0
    )
    per_task = {
        task.name: {
            "precision": float(precision[task.id]),
            "recall": float(recall[task.id]),
            "f1": float(f1[task.id]),
            "support": int(support[task.id]),
        }
        for task in tasks
    }
    return {
        "accuracy": float(accuracy_score(truth, predicted)),
        "accuracy_ci95": wilson_interval(int(np.sum(truth == predicted)), len(truth)),
        "macro_f1": float(f1_score(truth, predicted, labels=present, average="macro", zero_division=0)),
        "per_task": per_task,
        "confusion": confusion_matrix(truth, predicted, labels=[task.id for task in tasks]).tolist(),
        "count": len(truth),
    }


def wilson_interval(correct: int, total: int, z: float = 1.96) -> list[float]:
    """The Wilson score interval (95% by default) of an accuracy of ``correct`` out of ``total``."""
    if total == 0:
        return [0.0, 1.0]
    rate = correct / total
    centre = (rate + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(rate * (1 - rate) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return [max(0.0, centre - half), min(1.0, centre + half)]
