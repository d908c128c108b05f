"""Candidates per hour of the offline default generation (embedded model, every task), end to end.

Target (issue 2): at least 10,000 parsed, distinct, rule-valid candidates per hour of this machine. The clock
includes loading the model; the reply cache starts empty. Besides the accepted candidates (capped at
--per-task), it counts the valid, distinct ones that arrived after a task's quota was met (over_quota), which a
longer run would keep. Prints 10 random accepted candidates per task.

    python bench/bench_generation_yield.py [--per-task 150] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from common import print_table, write_results

from instructir.prompts.cache import ReplyCache
from instructir.prompts.generate import GenerationConfig, generate_candidates
from instructir.prompts.local_backend import LocalBackend
from instructir.tasks import all_tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-task", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config = GenerationConfig(per_task=args.per_task, seed=args.seed, style="continue")
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        backend = LocalBackend()
        result = generate_candidates(backend, all_tasks(), config, ReplyCache(Path(scratch) / "cache.sqlite"))
        seconds = time.perf_counter() - start
    rows = []
    for name, task in result.summary["tasks"].items():
        surplus = task["rejects_by_reason"].get("over_quota", 0)
        rows.append(
            {
                "task": name,
                "accepted": task["candidates"],
                "valid_surplus": surplus,
                "calls": task["calls"],
                "tokens_out": task["completion_tokens"],
                "rejected": sum(task["rejects_by_reason"].values()) - surplus,
            }
        )
    accepted = sum(r["accepted"] for r in rows)
    valid = accepted + sum(r["valid_surplus"] for r in rows)
    totals = {
        "model": backend.model,
        "wall_s": round(seconds, 1),
        "accepted": accepted,
        "accepted_per_hour": round(accepted * 3600 / seconds),
        "valid_distinct_per_hour": round(valid * 3600 / seconds),
        "generated_tokens_per_s": round(result.summary["new_completion_tokens"] / seconds, 1),
    }
    print_table(rows, "offline default generation, per task")
    print_table([totals], "totals (clock includes model load)")
    rng = random.Random(args.seed)
    samples = {}
    for task in all_tasks():
        texts = [c["text"] for c in result.candidates if c["task"] == task.name]
        samples[task.name] = rng.sample(texts, min(10, len(texts)))
        print(f"\n{task.name}:")
        for text in samples[task.name]:
            print(f"  - {text}")
    write_results(
        "generation_yield", rows, totals=totals, samples=samples, per_task=args.per_task, target_per_hour=10_000
    )


if __name__ == "__main__":
    main()
