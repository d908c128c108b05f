"""Train the learned quality stage on the audit set's fit half and ship it in the package.

Two models, both learning each fit row's true class (a task or none, read by hand) plus the hand-written requests
(the registry's seeds and the template vocabulary):
- ``quality-v1-fast``: the sentence embedding and text signals. Cheap; it runs first as a prefilter, at the
  threshold that keeps 95% of the right rows (out of fold), and alone when the LLM is not wanted.
- ``quality-v1``: the same plus the generator's hidden-state vector (instructir/prompts/lm_embed.py); its threshold
  is the lowest whose out-of-fold precision reaches the target on the rows that pass the quality rules.
C and the thresholds come from cross-validation on the fit half; the test half is only scored for the report.

    python corpus/quality/train.py [--target-precision 0.92]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from instructir.analysis.templates import seed_requests, template_requests
from instructir.io import write_json
from instructir.prompts.audit import read_audit
from instructir.prompts.embed import DEFAULT_ENCODER, Embedder
from instructir.prompts.filters.quality import QualityRules
from instructir.prompts.filters.quality_model import FAST_FILE, NONE, SHIPPED_FILE, QualityModel, fit_quality_model
from instructir.prompts.lm_embed import LM_ENCODER, LMEmbedder
from instructir.tasks import task_names

ROOT = Path(__file__).resolve().parents[2]
LABELS = ROOT / "corpus" / "audit" / "labels.jsonl"
TARGET = ROOT / "instructir" / "data" / "quality"
PREFILTER_RECALL = 0.95


def true_class(row: dict) -> str:
    """The class a labelled row belongs to: the task it asks for, or none."""
    return row["true_task"] if row["request"] and row["true_task"] in task_names() else NONE


def fit_inputs(fit: list[dict], embedder: Embedder, lm_embedder: LMEmbedder, rules: QualityRules) -> tuple[dict, tuple]:
    """The arguments fit_quality_model takes for the fit rows (besides lm), and the lm triple the full model adds.

    The hand-written requests (the registry's seeds and the template vocabulary) join every fit as known-right rows.
    """
    written = [seed_requests(), template_requests()]
    written_texts = [text for part in written for text in part.texts]
    written_tasks = [task_names()[int(i)] for part in written for i in part.labels]
    texts = [r["text"] for r in fit]
    common = {
        "vectors": embedder.encode(texts),
        "texts": texts,
        "classes": [true_class(r) for r in fit],
        "labels": [r["task"] for r in fit],
        "passes_rules": np.array([rules.reason(t) is None for t in texts]),
        "written": (embedder.encode(written_texts), written_texts, written_tasks),
        "encoder": DEFAULT_ENCODER,
    }
    return common, (LM_ENCODER, lm_embedder.encode(texts), lm_embedder.encode(written_texts))


def recall_threshold(scores: np.ndarray, right: np.ndarray, recall: float) -> float:
    """The highest cut that keeps at least ``recall`` of the right rows."""
    ranked = np.sort(scores[right.astype(bool)])[::-1]
    return float(ranked[min(int(np.ceil(recall * len(ranked))) - 1, len(ranked) - 1)])


def test_report(model: QualityModel, rows: list[dict], vectors: np.ndarray, lm: np.ndarray | None, rules) -> dict:
    """ROC AUC, and precision and recall at the model's threshold, on held-out labelled rows."""
    texts = [r["text"] for r in rows]
    scores = model.score(vectors, [r["task"] for r in rows], texts, lm)
    truth = np.array([r["right"] for r in rows])
    seen = np.array([rules.reason(t) is None for t in texts])
    kept = seen & (scores >= model.threshold)
    return {
        "rows": len(rows),
        "roc_auc": round(float(roc_auc_score(truth, scores)), 4),
        "right_share_passing_rules": round(float(truth[seen].mean()), 4),
        "kept": int(kept.sum()),
        "precision_at_threshold": round(float(truth[kept].mean()), 4) if kept.any() else None,
        "recall_at_threshold": round(float(truth[kept].sum() / truth[seen].sum()), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=Path, default=LABELS)
    parser.add_argument("--target-precision", type=float, default=0.92)
    parser.add_argument("--out", type=Path, default=TARGET)
    args = parser.parse_args()
    embedder, lm_embedder = Embedder(DEFAULT_ENCODER, dtype="float32"), LMEmbedder()
    rules = QualityRules()
    rows = read_audit(args.labels)
    fit = [r for r in rows if r["split"] == "fit"]
    test = [r for r in rows if r["split"] == "test"]
    common, lm = fit_inputs(fit, embedder, lm_embedder, rules)
    fast, fast_cv = fit_quality_model(**common, target_precision=args.target_precision, cs=(0.03, 0.1, 0.3))
    right = np.array([r["right"] for r in fit])
    fast.threshold = recall_threshold(fast_cv.pop("out_of_fold"), right, PREFILTER_RECALL)
    full, full_cv = fit_quality_model(**common, target_precision=args.target_precision, lm=lm)
    full_cv.pop("out_of_fold")
    test_vectors = embedder.encode([r["text"] for r in test])
    test_lm = lm_embedder.encode([r["text"] for r in test])
    report = {
        "lm_dtype": lm_embedder.dtype,
        "fast": {"cv": fast_cv, "prefilter_threshold": round(fast.threshold, 4), "prefilter_recall": PREFILTER_RECALL},
        "full": {"cv": full_cv},
    }
    report["fast"]["test_half"] = test_report(fast, test, test_vectors, None, rules)
    report["full"]["test_half"] = test_report(full, test, test_vectors, test_lm, rules)
    for model, name, part in ((fast, FAST_FILE, "fast"), (full, SHIPPED_FILE, "full")):
        model.info.update(report[part], lm_dtype=lm_embedder.dtype)
        model.save(args.out / name)
    write_json(report, args.out / "training.json")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
