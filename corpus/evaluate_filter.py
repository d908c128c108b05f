"""Precision and recall of each filtering stage on the hand-labelled development set in corpus/dev/.

Duplicates: for every pair (a, b) in pairs.jsonl, a stage "flags" the pair when it drops b after keeping a.
Positives are pairs labelled duplicate or near_duplicate; distinct pairs are negatives.

Task labels: the cascade runs over the whole generation runs the labelled rows come from (as when the corpus is
built), and each labelled row's fate is looked up. A drop is correct when the row is off topic or its generator
label is wrong (true_task differs from task); the kept rows' precision is the share whose label is right.

    python corpus/evaluate_filter.py [--json corpus/dev/filter_metrics.json]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from instructir.prompts.candidates import read_many
from instructir.prompts.embed import Embedder
from instructir.prompts.filters.cascade import FilterConfig, default_stages, filter_candidates, seed_rows
from instructir.prompts.filters.exact import ExactDedup
from instructir.prompts.filters.near_duplicates import NearDuplicates
from instructir.prompts.filters.semantic import SemanticDedup
from instructir.tasks import all_tasks

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT / "corpus" / "dev"


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def scores(flagged: list[bool], positive: list[bool]) -> dict[str, float | int]:
    """Precision, recall and counts of a binary decision against labels."""
    tp = sum(f and p for f, p in zip(flagged, positive, strict=True))
    fp = sum(f and not p for f, p in zip(flagged, positive, strict=True))
    fn = sum(p and not f for f, p in zip(flagged, positive, strict=True))
    return {
        "precision": round(tp / (tp + fp), 3) if tp + fp else None,
        "recall": round(tp / (tp + fn), 3) if tp + fn else None,
        "flagged": tp + fp,
        "positives": tp + fn,
        "n": len(flagged),
    }


def evaluate_pairs(pairs: list[dict], embedder: Embedder, config: FilterConfig) -> dict[str, dict]:
    """Each dedup stage alone and all three together, on every labelled pair."""
    stages = {
        "exact": [ExactDedup()],
        "near_duplicate": [NearDuplicates(threshold=config.near_threshold)],
        "semantic_duplicate": [SemanticDedup(embedder, threshold=config.semantic_threshold)],
    }
    stages["combined"] = [stage for group in stages.values() for stage in group]
    positive = [pair["label"] in ("duplicate", "near_duplicate") for pair in pairs]
    results = {}
    for name, group in stages.items():
        flagged = []
        for pair in pairs:
            rows = [
                {"id": "a", "text": pair["a"], "task": "ambiguous"},
                {"id": "b", "text": pair["b"], "task": "ambiguous"},
            ]
            flagged.append(len(filter_candidates(rows, group).kept) == 1)
        by_label = Counter(pair["label"] for pair, hit in zip(pairs, flagged, strict=True) if hit)
        results[name] = {**scores(flagged, positive), "flagged_by_label": dict(by_label)}
    return results


def evaluate_task_labels(labels: list[dict], embedder: Embedder, config: FilterConfig) -> dict[str, dict]:
    """Fate of each labelled row when the cascade runs over the generation runs it came from."""
    runs = sorted(ROOT.glob("corpus/runs/seed-*/candidates.parquet"))
    rows = seed_rows(all_tasks()) + read_many(runs)
    result = filter_candidates(rows, default_stages(config, embedder))
    fate = {row["id"]: row["stage"] for row in result.rejects}
    by_text = {(row["text"], row["task"]): row["id"] for row in rows}
    found = [label for label in labels if (label["text"], label["task"]) in by_text]
    stages_seen = [step["stage"] for step in result.funnel["stages"]]
    wrong = [label["true_task"] != label["task"] for label in found]
    dropped_at = [fate.get(by_text[(label["text"], label["task"])]) for label in found]
    report: dict[str, dict] = {}
    for stage in stages_seen:
        report[stage] = scores([at == stage for at in dropped_at], wrong)
    report["whole_cascade"] = scores([at is not None for at in dropped_at], wrong)
    kept_right = [not bad for bad, at in zip(wrong, dropped_at, strict=True) if at is None]
    report["kept"] = {
        "rows": len(kept_right),
        "label_correct_share": round(sum(kept_right) / len(kept_right), 3) if kept_right else None,
        "labelled_rows_matched": len(found),
        "labelled_rows_total": len(labels),
        "wrong_or_off_topic_before": sum(wrong),
    }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=DEV / "filter_metrics.json")
    args = parser.parse_args()
    config = FilterConfig()
    embedder = Embedder(dtype="float32")  # as corpus/build_corpus.py builds the shipped corpus
    report = {
        "config": config.__dict__,
        "pairs": evaluate_pairs(read_jsonl(DEV / "pairs.jsonl"), embedder, config),
        "task_labels": evaluate_task_labels(read_jsonl(DEV / "task_labels.jsonl"), embedder, config),
    }
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
