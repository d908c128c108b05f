"""Compare quality models on the same held-out rows: the audit test half's rows that pass the quality rules.

Retraining changes the fit and test halves' mix (each draw adds rows where the corpus is decided), so the figures
each model's training.json reports are not comparable across retrainings; this scores both on today's test half.
For each model: ROC AUC, and the recall at the lowest cut whose kept rows reach each target precision.

    git show de91ed1~1:instructir/data/quality/quality-v1.safetensors > /tmp/old.safetensors  # the models before
    python corpus/quality/compare.py /tmp/old.safetensors instructir/data/quality/quality-v1.safetensors
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from instructir.prompts.audit import read_audit
from instructir.prompts.embed import DEFAULT_ENCODER, Embedder
from instructir.prompts.filters.quality import QualityRules
from instructir.prompts.filters.quality_model import choose_threshold, load_quality_model
from instructir.prompts.lm_embed import LMEmbedder

LABELS = Path(__file__).resolve().parents[2] / "corpus" / "audit" / "labels.jsonl"
TARGETS = (0.90, 0.92, 0.95)


def recall_at_precision(scores: np.ndarray, right: np.ndarray, precision: float) -> float:
    """Recall at the lowest cut whose kept rows reach ``precision`` (train.py's rule, ``choose_threshold``); 0 when
    no cut reaches it."""
    try:
        return choose_threshold(scores, right, precision)[1]["cv_recall"]
    except ValueError:
        return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--labels", type=Path, default=LABELS)
    args = parser.parse_args()
    rules = QualityRules()
    rows = [r for r in read_audit(args.labels) if r["split"] == "test" and rules.reason(r["text"]) is None]
    texts = [r["text"] for r in rows]
    vectors = Embedder(DEFAULT_ENCODER, dtype="float32").encode(texts)
    lm = LMEmbedder().encode(texts)
    right = np.array([r["right"] for r in rows], dtype=np.float64)
    print(f"{len(rows)} test-half rows pass the rules, {int(right.sum())} right")
    print("model | ROC AUC | " + " | ".join(f"recall at precision {p}" for p in TARGETS))
    for path in args.models:
        model = load_quality_model(path)
        scores = model.score(vectors, [r["task"] for r in rows], texts, lm if model.lm_encoder else None)
        recalls = " | ".join(f"{recall_at_precision(scores, right, p):.3f}" for p in TARGETS)
        print(f"{path} | {roc_auc_score(right, scores):.4f} | {recalls}")


if __name__ == "__main__":
    main()
