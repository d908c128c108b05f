"""Build the shipped request corpus from the generation runs in corpus/runs/: filter, then write the package data.

Reads every corpus/runs/seed-*/candidates.parquet (and its summary.json), puts the registry's seed requests
first, runs the full filter cascade, and writes instructir/data/instructir-requests/{corpus.parquet,
summary.json, README.md}; the rejects go to corpus/build/rejects.parquet for inspection.

    python corpus/build_corpus.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from instructir.io import write_json
from instructir.prompts.candidates import read_many, write_rows
from instructir.prompts.corpus import SHIPPED_CORPUS, write_card
from instructir.prompts.embed import Embedder
from instructir.prompts.filters.cascade import FilterConfig, default_stages, filter_candidates, seed_rows
from instructir.tasks import all_tasks

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "corpus" / "runs"
TARGET = ROOT / "instructir" / "data" / SHIPPED_CORPUS
MINIMUMS = {"total": 10_000, "per_restoration_task": 1_000, "ambiguous": 300}


def main() -> int:
    runs = sorted(path.parent for path in RUNS.glob("seed-*/candidates.parquet"))
    if not runs:
        print(f"no finished generation runs in {RUNS}; run corpus/generate_runs.sh first", file=sys.stderr)
        return 2
    config = FilterConfig()
    rows = seed_rows(all_tasks()) + read_many([run / "candidates.parquet" for run in runs])
    result = filter_candidates(rows, default_stages(config, Embedder(dtype="float32")))
    generation = [{"name": run.name, **json.loads((run / "summary.json").read_text())} for run in runs]
    TARGET.mkdir(parents=True, exist_ok=True)
    write_rows(result.kept, TARGET / "corpus.parquet")
    write_rows(result.rejects, ROOT / "corpus" / "build" / "rejects.parquet")
    write_json(
        {"runs": [run.name for run in runs], "config": config.__dict__, **result.funnel}, TARGET / "summary.json"
    )
    command = "bash corpus/generate_runs.sh 1 N && python corpus/build_corpus.py"
    write_card(result.kept, result.funnel, generation, TARGET / "README.md", "instructir-requests", command)
    counts = result.funnel["out_by_task"]
    print(json.dumps({"rows": len(result.kept), "per_task": counts, "minimums": MINIMUMS}, indent=2))
    short = [
        t.name
        for t in all_tasks()
        if t.name != "ambiguous" and counts.get(t.name, 0) < MINIMUMS["per_restoration_task"]
    ]
    if len(result.kept) < MINIMUMS["total"] or short or counts.get("ambiguous", 0) < MINIMUMS["ambiguous"]:
        print(f"below the corpus minimums (short tasks: {short}); generate more runs", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
