"""Draw the audit sample: generated candidates picked at random (seeded) from corpus/runs/, before filtering.

The pool is every line a generation run accepted as a candidate, whatever the filter later did with it: the
rows of candidates.parquet plus the rejects the filter stages dropped (not_a_request, off_topic,
label_mismatch, near/semantic duplicates) and the lines past a task's quota. Lines the parser or the format
rules refused, and exact copies, are not candidates. The sample is stratified by generated task (the same
number per task), drawn uniformly over runs within a task, without repeating a normalised text already drawn.

    python corpus/audit/draw.py --runs 'seed-000*' --per-task 150 --seed 0 --out corpus/audit/unlabelled.jsonl
    python corpus/audit/draw.py --runs 'seed-000*' --per-task 150 --seed 1 --exclude corpus/audit/unlabelled.jsonl \
        --out corpus/audit/unlabelled-2.jsonl
    python corpus/audit/draw.py --runs "mode-*" --each-run --per-task 13 --seed 21 \
        --out corpus/audit/unlabelled-modes.jsonl \
        --exclude corpus/audit/unlabelled.jsonl corpus/audit/unlabelled-2.jsonl
    python corpus/audit/draw.py --runs "grounded-*" --per-task 60 --seed 31 \
        --out corpus/audit/unlabelled-grounded.jsonl \
        --exclude corpus/audit/unlabelled.jsonl corpus/audit/unlabelled-2.jsonl corpus/audit/unlabelled-modes.jsonl
    python corpus/audit/draw.py --runs "gemma-0201" --per-task 40 --seed 41 \
        --out corpus/audit/unlabelled-gemma.jsonl \
        --exclude corpus/audit/unlabelled.jsonl corpus/audit/unlabelled-2.jsonl corpus/audit/unlabelled-modes.jsonl \
        corpus/audit/unlabelled-grounded.jsonl
    python corpus/audit/draw.py --runs "seed-*" "gemma-02*" "grounded-*" "mode-*" --per-task 100 --seed 81 \
        --min-fast-quality 0.3 --quality-model FAST.safetensors --exclude corpus/audit/unlabelled*.jsonl \
        --out corpus/audit/unlabelled-scored.jsonl
    python corpus/audit/draw.py --runs "seed-*" "gemma-02*" "grounded-*" "mode-*" --per-task 100 --seed 91 \
        --min-fast-quality 0.3 --quality-model FAST.safetensors --exclude corpus/audit/unlabelled*.jsonl \
        --out corpus/audit/unlabelled-scored-2.jsonl --parts t1 t2 t3 t4
    python corpus/audit/draw.py --runs "seed-000*" "seed-001*" "seed-002*" "seed-003*" "seed-0040" "gemma-02*" \
        "grounded-*" "mode-*" --per-task 100 --seed 111 --min-fast-quality 0.3 \
        --exclude corpus/audit/unlabelled*.jsonl --out corpus/audit/unlabelled-scored-3.jsonl --parts v1 v2 v3 v4
    python corpus/audit/draw.py --runs "seed-000*" "seed-001*" "seed-002*" "seed-003*" "seed-0040" "gemma-02*" \
        "grounded-*" "mode-*" --per-task 100 --seed 121 --min-fast-quality 0.3 \
        --exclude corpus/audit/unlabelled*.jsonl --out corpus/audit/unlabelled-scored-4.jsonl --parts w1 w2 w3 w4
    python corpus/audit/draw.py --runs "seed-0041" "seed-0051" --per-task 120 --seed 131 --min-fast-quality 0.3 \
        --exclude corpus/audit/unlabelled*.jsonl --out corpus/audit/unlabelled-targeted-2.jsonl --parts x1 x2 x3 x4

--min-fast-quality draws only among candidates that pass the quality rules and that a fast quality model scores at
that floor or above: where the learned stage decides. Every corpus row lies there, so a corpus's precision measured
on such a draw stays unbiased, while far more of the drawn rows land in the corpus than in a draw from all candidates.

--parts writes the labellers' blind files as sample_corpus.py does (corpus/audit/work/part-NAME.jsonl, the first
--shared rows in every part, shuffled with seed + 1).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sample_corpus import WORK, blind_parts, write_jsonl

from instructir.prompts.candidates import read_run_pool
from instructir.prompts.embed import Embedder
from instructir.prompts.filters.quality import QualityRules
from instructir.prompts.filters.quality_model import FAST_FILE, load_quality_model, shipped_model_path
from instructir.prompts.rules import normalise
from instructir.tasks import task_names

ROOT = Path(__file__).resolve().parents[2]
RUNS = ROOT / "corpus" / "runs"


def draw(
    runs: list[Path],
    per_task: int,
    seed: int,
    exclude: set[str],
    each_run: bool = False,
    eligible: Callable[[list[dict]], np.ndarray] | None = None,
) -> list[dict]:
    """``per_task`` rows per task drawn at random from the pooled runs (or from each run in turn, to compare
    runs), skipping texts in ``exclude`` and, with ``eligible``, the rows it marks False."""
    rng = np.random.default_rng(seed)
    pools = [read_run_pool(run) for run in runs] if each_run else [[row for run in runs for row in read_run_pool(run)]]
    if eligible is not None:
        pools = [[row for row, ok in zip(pool, eligible(pool), strict=True) if ok] for pool in pools]
    sample = []
    seen = set(exclude)
    for pool, task in ((pool, task) for pool in pools for task in task_names()):
        rows = [row for row in pool if row["task"] == task]
        taken = 0
        for index in rng.permutation(len(rows)):
            key = normalise(rows[index]["text"])
            if key in seen:
                continue
            seen.add(key)
            sample.append(rows[index])
            taken += 1
            if taken == per_task:
                break
    order = rng.permutation(len(sample))
    keep = ("text", "task", "fate", "run")
    return [{"audit_id": f"a{seed:02d}-{n:04d}", **{k: sample[i][k] for k in keep}} for n, i in enumerate(order)]


def scored_above(floor: float, model_path: Path | None) -> Callable[[list[dict]], np.ndarray]:
    """Rows that pass the quality rules and that the fast quality model scores at ``floor`` or above."""
    model = load_quality_model(model_path or shipped_model_path(FAST_FILE))
    rules, embedder = QualityRules(), Embedder(dtype="float32")

    def eligible(rows: list[dict]) -> np.ndarray:
        passing = np.array([rules.reason(row["text"]) is None for row in rows], dtype=bool)
        chosen = [row for row, ok in zip(rows, passing, strict=True) if ok]
        texts = [row["text"] for row in chosen]
        passing[passing] = model.score(embedder.encode(texts), [row["task"] for row in chosen], texts) >= floor
        return passing

    return eligible


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=["seed-000*"], help="globs of run folders under corpus/runs/")
    parser.add_argument(
        "--min-fast-quality",
        type=float,
        default=None,
        help="draw only rows that pass the rules and score this or more under the fast quality model",
    )
    parser.add_argument("--quality-model", type=Path, default=None, help="that model's file (default: the shipped)")
    parser.add_argument("--per-task", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--exclude", type=Path, nargs="*", default=[], help="JSONL files whose texts to skip")
    parser.add_argument("--each-run", action="store_true", help="draw --per-task rows from each run, not the pool")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--parts", nargs="*", default=[], help="names of the labellers' blind files to write")
    parser.add_argument("--shared", type=int, default=40, help="rows every labeller reads")
    parser.add_argument("--parts-dir", type=Path, default=WORK, help="where the blind files go")
    args = parser.parse_args()
    runs = sorted({path for glob in args.runs for path in RUNS.glob(glob) if (path / "candidates.parquet").is_file()})
    excluded = [json.loads(line) for path in args.exclude for line in path.read_text().splitlines()]
    prefix = f"a{args.seed:02d}-"
    if any(row["audit_id"].startswith(prefix) for row in excluded):
        parser.error(f"--seed {args.seed} was used by an earlier draw (its rows are {prefix}*); pick an unused seed")
    exclude = {normalise(row["text"]) for row in excluded}
    eligible = None if args.min_fast_quality is None else scored_above(args.min_fast_quality, args.quality_model)
    sample = draw(runs, args.per_task, args.seed, exclude, args.each_run, eligible)
    write_jsonl(sample, args.out)
    print(f"{len(sample)} rows from {len(runs)} runs -> {args.out}")
    for name, part in zip(args.parts, blind_parts(sample, len(args.parts), args.shared, args.seed + 1), strict=True):
        write_jsonl(part, args.parts_dir / f"part-{name}.jsonl")
        print(f"{len(part)} rows -> {args.parts_dir / f'part-{name}.jsonl'}")


if __name__ == "__main__":
    main()
