"""One table comparing generation recipes: the four modes on one budget (corpus/runs/mode-*), and the pooled runs
of the recipes that made the corpus (SmolLM2 seed runs, SmolLM2 grounded on hand-written examples, Gemma 3 270M
completing a document of the same examples). For each: how many candidates it made and how fast, the share the
learned quality stage keeps (after the quality rules), label precision on its hand-labelled audit rows (with a 95%
Wilson interval; the rows of draws conditioned on a quality score left out), and diversity (distinct-1/2, Vendi)
of its candidates and of the rows the stage keeps.

Precision is the share of a recipe's labelled sample (drawn before any filtering) that is a coherent request with
the right label: it measures the generator, not the filter. Diversity depends on how many texts are compared, so
each recipe's is measured on the same number of texts drawn at random (seeded).

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
# Draws made only among candidates the fast quality model already favours (draw.py --min-fast-quality): their rows
# are not a sample of a recipe's candidates, so a recipe's precision leaves them out.
CONDITIONED_DRAWS = ("unlabelled-scored*.jsonl", "unlabelled-targeted*.jsonl")


def conditioned_ids() -> set[str]:
    """The audit ids of the conditioned draws."""
    files = [path for pattern in CONDITIONED_DRAWS for path in AUDIT.parent.glob(pattern)]
    return {json.loads(line)["audit_id"] for path in files for line in path.read_text().splitlines() if line.strip()}


def diversity(texts: list[str], vectors: np.ndarray) -> dict[str, float]:
    """distinct-1, distinct-2 and the Vendi score of one set of texts."""
    if len(texts) < 2:
        return {"distinct_1": None, "distinct_2": None, "vendi": None}
    return {
        "distinct_1": round(distinct_n(texts, 1), 3),
        "distinct_2": round(distinct_n(texts, 2), 3),
        "vendi": round(vendi_score(vectors), 1),
    }


RECIPES = {
    "seed runs (SmolLM2, seeds as examples)": "seed-*",
    "grounded (SmolLM2, hand-written examples)": "grounded-*",
    "gemma (Gemma 3 270M base, complete style)": "gemma-0*",
    "gemma-seeds (the same, registry seeds shown too)": "gemma-seeds-*",
}
DIVERSITY_SAMPLE = 500


def sampled(count: int, size: int, seed: int = 0) -> np.ndarray:
    """``size`` indices of ``count`` drawn at random (all of them when there are fewer), in order."""
    if count <= size:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size=size, replace=False))


def recipe_row(name: str, runs: list[Path], labelled: list[dict], embedder: Embedder, rules, stage) -> dict:
    """The table's row for one recipe: its runs pooled."""
    pool = [row for run in runs for row in read_run_pool(run)]
    passing = [row for row in pool if rules.reason(row["text"]) is None]
    kept_ids = {row["id"] for row in stage.run(passing).kept}
    kept = np.array([row["id"] in kept_ids for row in pool])
    summaries = [json.loads((run / "summary.json").read_text()) for run in runs]
    config = summaries[0]["config"]
    right = sum(row["right"] for row in labelled)
    texts = [row["text"] for row in pool]
    every, among_kept = sampled(len(pool), DIVERSITY_SAMPLE), np.flatnonzero(kept)
    among_kept = among_kept[sampled(len(among_kept), DIVERSITY_SAMPLE)]
    return {
        "run": name,
        "runs": [run.name for run in runs],
        "model": summaries[0].get("model"),
        "mode": config.get("mode", "plain"),
        "examples": config.get("examples", 0),
        "candidates": len(pool),
        "wall_seconds": round(sum(s["wall_seconds"] for s in summaries), 1),
        "kept_by_quality": int(kept.sum()),
        "kept_share": round(float(kept.mean()), 3),
        "audit_rows": len(labelled),
        "label_precision": round(right / len(labelled), 3) if labelled else None,
        "label_precision_95": wilson_interval(right, len(labelled)) if labelled else None,
        "all": diversity([texts[i] for i in every], embedder.encode([texts[i] for i in every])),
        "kept": diversity([texts[i] for i in among_kept], embedder.encode([texts[i] for i in among_kept])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=ROOT / "corpus" / "modes" / "report.json")
    args = parser.parse_args()
    conditioned = conditioned_ids()
    labels = [row for row in read_audit(AUDIT) if row["audit_id"] not in conditioned]
    embedder = Embedder(dtype="float32")
    rules, stage = QualityRules(), learned_quality_stage(embedder, FilterConfig())

    def finished(pattern: str) -> list[Path]:
        return sorted(path.parent for path in (ROOT / "corpus" / "runs").glob(f"{pattern}/candidates.parquet"))

    recipes = {run.name: [run] for run in finished("mode-*")}
    pooled = {name: finished(pattern) for name, pattern in RECIPES.items()}
    recipes.update({name: runs for name, runs in pooled.items() if runs})
    table = [
        recipe_row(name, runs, [r for r in labels if r["run"] in {run.name for run in runs}], embedder, rules, stage)
        for name, runs in recipes.items()
    ]
    write_json(table, args.json)
    print(f"Diversity on {DIVERSITY_SAMPLE} texts drawn at random from each recipe's candidates and kept rows.")
    print("| recipe | candidates | s | kept by quality | label precision (95% CI) | distinct-2 all / kept | Vendi |")
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
