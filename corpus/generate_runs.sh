#!/usr/bin/env bash
# Generates the candidate runs the shipped corpus is filtered from: one folder per seed, each a complete,
# reproducible `instructir prompts generate` run with the embedded model. Finished runs are skipped, so the
# script resumes where it stopped; an interrupted run resumes from its reply cache.
# Runs seed-0001 and seed-0002 were made before the list heading and the inline filter existed
# (--per-task 400 --max-tokens 160 without --filter); their summary.json records their settings.
# Usage: bash corpus/generate_runs.sh FIRST_SEED LAST_SEED [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
first=${1:-3}; last=${2:-8}; threads=${3:-1}
for seed in $(seq "$first" "$last"); do
  out=corpus/runs/seed-$(printf %04d "$seed")
  if [ -f "$out/candidates.parquet" ]; then echo "seed $seed: done"; continue; fi
  instructir prompts generate --out "$out" --seed "$seed" --per-task 400 --threads "$threads" \
    --seeds-per-prompt 4 --generated-per-prompt 1 --filter --no-progress
done
