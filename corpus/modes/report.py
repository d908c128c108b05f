"""One table comparing the generation modes on the same budget (corpus/runs/mode-*): how many candidates each
makes, the share the learned quality stage keeps (after the quality rules), label precision on its hand-labelled
audit rows (with a 95% Wilson interval), and diversity (distinct-1/2, Vendi) of all its candidates and of the rows
the stage keeps.

Precision is the share of a mode's labelled sample (drawn before any filtering) that is a coherent request with
the right label: it measures the generator, not the filter.

    python corpus/modes/report.py [--json corpus/modes/report.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from instructir.analysis.diversity import distinct_n, vendi_score
from instructir.analysis.intent import wilson_interval
from instructir.io import write_json
from instructir.prompts.audit import read_audit
from instructir.prompts.candidates import read_run_pool
from instructir.prompts.embed import Embedder
from instructir.prompts.filters.cascade import FilterConfig, learned_quality_stage
from instructir.prompts.filters.quality import QualityRules

ROOT = Path(__file__).resolve().parents[2]
AUDIT = ROOT / "corpus" / "audit" / "labels.jsonl"


def diversity(texts: list[str], vectors: np.ndarray) -> dict[str, float]:
    """distinct-1, distinct-2 and the Vendi score of one set of texts."""
    if len(texts) < 2:
        return {"distinct_1": None, "distinct_2": None, "vendi": None}
    return {
        "distinct_1": round(distinct_n(texts, 1), 3),
        "distinct_2": round(distinct_n(texts, 2), 3),
        "vendi": round(vendi_score(vectors), 1),
    }


def mode_row(run: Path, labelled: list[dict], embedder: Embedder, rules: QualityRules, stage) -> dict:
    """The table's row for one generation run."""
    pool = read_run_pool(run)
    texts = [row["text"] for row in pool]
    vectors = embedder.encode(texts)
    passing = [row for row in pool if rules.reason(row["text"]) is None]
    kept_ids = {row["id"] for row in stage.run(passing).kept}
    kept = np.array([row["id"] in kept_ids for row in pool])
    summary = json.loads((run / "summary.json").read_text())
    right = sum(row["right"] for row in labelled)
    return {
        "run": run.name,
        "mode": summary["config"].get("mode", "plain"),
        "examples": summary["config"].get("examples", 0),
        "candidates": len(pool),
        "wall_seconds": summary["wall_seconds"],
        "kept_by_quality": int(kept.sum()),
        "kept_share": round(float(kept.mean()), 3),
        "audit_rows": len(labelled),
        "label_precision": round(right / len(labelled), 3) if labelled else None,
        "label_precision_95": wilson_interval(right, len(labelled)) if labelled else None,
        "all": diversity(texts, vectors),
        "kept": diversity([t for t, k in zip(texts, kept, strict=True) if k], vectors[kept]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default="mode-*")
    parser.add_argument("--json", type=Path, default=ROOT / "corpus" / "modes" / "report.json")
    args = parser.parse_args()
    labels = read_audit(AUDIT)
    embedder = Embedder(dtype="float32")
    rules, stage = QualityRules(), learned_quality_stage(embedder, FilterConfig())
    runs = sorted(path.parent for path in (ROOT / "corpus" / "runs").glob(f"{args.runs}/candidates.parquet"))
    table = [mode_row(run, [r for r in labels if r["run"] == run.name], embedder, rules, stage) for run in runs]
    write_json(table, args.json)
    print("| run | candidates | s | kept by quality | label precision (95% CI) | distinct-2 all / kept | Vendi |")
    print("|---|---|---|---|---|---|---|")
    for row in table:
        low, high = (round(x, 2) for x in row["label_precision_95"] or (0, 1))
        diverse = row["all"], row["kept"]
        print(
            f"| {row['run']} | {row['candidates']} | {row['wall_seconds']:.0f} | {row['kept_by_quality']} "
            f"({row['kept_share']:.1%}) | {row['label_precision']} ({low}-{high}, n={row['audit_rows']}) | "
            f"{diverse[0]['distinct_2']} / {diverse[1]['distinct_2']} | {diverse[0]['vendi']} / {diverse[1]['vendi']} |"
        )


if __name__ == "__main__":
    main()
