"""Benchmark: the learned quality stage scoring 20,000 candidates whose vectors are cached (target: under 60 s).

Rows: a seeded sample of the candidates in corpus/runs/ that pass the quality rules (what the stage sees in the
corpus build). A first, untimed pass fills the caches: sentence embeddings for every row, and the LLM's hidden
states for the rows the embedding-only prefilter keeps (the corpus build fills the same default cache, so after
`python corpus/build_corpus.py` this pass computes little). Then three timed passes of each, median reported:
- the stage as the cascade builds it (embedding-only prefilter, then the model that also reads the LLM);
- the embedding-only model alone (`--no-quality-lm`);
- the topic stage (cosine to the task's seeds) on the same rows, the cheapest embedding stage, as the baseline.

    python bench/bench_quality.py [--rows 20000] [--seed 0]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from common import REPO, print_table, write_results

from instructir.hardware import best_cpu_dtype
from instructir.prompts.candidates import read_run_pool
from instructir.prompts.embed import Embedder
from instructir.prompts.filters.cascade import FilterConfig, learned_quality_stage
from instructir.prompts.filters.quality import QualityRules
from instructir.prompts.filters.topic import TopicRelevance

TARGET_SECONDS = 60.0


def sample_rows(count: int, seed: int) -> list[dict]:
    """``count`` candidates from every run in corpus/runs/ that pass the quality rules, drawn with ``seed``."""
    rules = QualityRules()
    runs = sorted(path.parent for path in (REPO / "corpus" / "runs").glob("*/candidates.parquet"))
    pool = [row for run in runs for row in read_run_pool(run) if rules.reason(row["text"]) is None]
    picked = np.random.default_rng(seed).choice(len(pool), size=min(count, len(pool)), replace=False)
    return [pool[i] for i in sorted(picked)]


def timed(stage, rows: list[dict], repeats: int = 3) -> tuple[float, int]:
    """Median seconds of ``repeats`` runs of ``stage`` on fresh copies of ``rows``, and the rows it kept."""
    seconds, kept = [], 0
    for _ in range(repeats):
        copies = [dict(row) for row in rows]
        start = time.perf_counter()
        kept = len(stage.run(copies).kept)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = sample_rows(args.rows, args.seed)
    embedder = Embedder(dtype="float32")
    stages = {
        "learned quality (prefilter + LLM model)": learned_quality_stage(embedder, FilterConfig()),
        "learned quality, embedding-only (--no-quality-lm)": learned_quality_stage(
            embedder, FilterConfig(quality_lm=False)
        ),
        "topic (baseline)": TopicRelevance(embedder),
    }
    start = time.perf_counter()
    for stage in stages.values():
        stage.run([dict(row) for row in rows])
    warm_up = time.perf_counter() - start
    lm = stages["learned quality (prefilter + LLM model)"].lm_embedder
    table = []
    baseline, _ = timed(stages["topic (baseline)"], rows)
    for name, stage in stages.items():
        seconds, kept = timed(stage, rows) if "baseline" not in name else (baseline, None)
        table.append(
            {
                "stage": name,
                "rows": len(rows),
                "seconds (median of 3)": round(seconds, 2),
                "rows/s": round(len(rows) / seconds),
                "x topic": round(seconds / baseline, 2),
                "kept": kept if kept is not None else "-",
                "target": f"< {TARGET_SECONDS:.0f} s" if "prefilter" in name else "",
            }
        )
    print_table(table, f"learned quality stage, vectors cached ({best_cpu_dtype()} CPU, LLM vectors in {lm.dtype})")
    print(f"warm-up pass (fills the caches; {lm.computed} LLM vectors computed): {warm_up:.0f} s")
    write_results("bench_quality", table, warm_up_seconds=round(warm_up, 1), llm_vectors_computed=lm.computed)


if __name__ == "__main__":
    main()
