"""Generation runs that compare the modes on one budget: plain Self-Instruct prompts, attribute-conditioned
prompts, rewrites of a source request, and plain prompts grounded on a user's own examples.

Each run is a complete `instructir prompts generate` run with the embedded model (no inline filter, so every
candidate is kept for the audit), written to corpus/runs/mode-NAME-sSEED/. Finished runs are skipped; a broken
run resumes from its reply cache.

    python corpus/modes/generate.py [--per-task 60] [--seed 11] [--modes plain,attributes,rewrite,examples]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from instructir.prompts.cache import ReplyCache
from instructir.prompts.candidates import read_candidates
from instructir.prompts.generate import GenerationConfig, generate_candidates, write_generation
from instructir.prompts.local_backend import LocalBackend
from instructir.tasks import all_tasks

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "corpus" / "examples" / "handwritten.jsonl"
RECIPES = {
    "plain": {"mode": "plain"},
    "attributes": {"mode": "attributes"},
    "rewrite": {"mode": "rewrite"},
    "examples": {"mode": "plain", "examples": True},
    "attributes-examples": {"mode": "attributes", "examples": True},
}


def config_for(name: str, per_task: int, seed: int) -> GenerationConfig:
    """The settings of corpus/generate_runs.sh, with the mode (and the grounding examples) of ``name``."""
    recipe = RECIPES[name]
    examples = ()
    if recipe.get("examples"):
        examples = tuple((row["task"], row["text"]) for row in read_candidates(EXAMPLES))
    return GenerationConfig(
        per_task=per_task,
        seed=seed,
        style="continue",
        mode=recipe["mode"],
        examples=examples,
        seeds_per_prompt=4,
        generated_per_prompt=1,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-task", type=int, default=60)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--modes", default=",".join(RECIPES))
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    backend = LocalBackend(threads=args.threads)
    for name in args.modes.split(","):
        out = ROOT / "corpus" / "runs" / f"mode-{name}-s{args.seed:02d}"
        if (out / "candidates.parquet").is_file():
            print(f"{out.name}: done")
            continue
        cache = ReplyCache(out / "cache.sqlite")
        try:
            result = generate_candidates(backend, all_tasks(), config_for(name, args.per_task, args.seed), cache)
        finally:
            cache.close()
        write_generation(result, out)
        print(f"{out.name}: {result.summary['candidates']} candidates in {result.summary['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
