#!/usr/bin/env bash
# Three network sizes trained for the same wall-clock budget on the default recipe's data, scored on the
# validation photo: the recipe (train.sh) keeps the one with the best mean restored PSNR over the tasks (the same
# inputs for every size; the gain over the input is printed too, but one near-lossless x2 downscale of a mostly
# black photo dominates a mean of gains).
# Usage: bash models/default/sweep.sh [SECONDS_PER_CONFIG]   (default 240; writes models/default/work/sweep/)
set -euo pipefail
cd "$(dirname "$0")/../.."
budget=${1:-240}
work=models/default/work
bash models/default/data.sh
mkdir -p "$work/sweep"
# name width enc middle dec images_per_second_probe (patch 96, batch 8, measured on 2 EPYC cores, AVX-512-BF16)
while read -r name width enc middle dec rate; do
  steps=$(( budget * ${rate%.*} / 8 ))
  out="$work/sweep/$name"
  if [ ! -f "$out/seconds" ]; then
    rm -rf "$out"
    start=$(date +%s)
    instructir train --data "$work/dataset" --out "$out" --steps "$steps" --batch 8 --patch 96 --lr 1e-3 \
      --warmup 50 --width "$width" --enc-blks "$enc" --middle-blks "$middle" --dec-blks "$dec" \
      --on-the-fly --no-progress > "$out.log" 2>&1
    echo $(( $(date +%s) - start )) > "$out/seconds"
  fi
  seconds=$(cat "$out/seconds")
  instructir eval --checkpoint "$out/final.safetensors" --data "$work/dataset" --split validation \
    --json "$out/validation.json" --no-progress > /dev/null
  python - "$name" "$steps" "$seconds" "$out/validation.json" <<'PY'
import json, sys
name, steps, seconds, path = sys.argv[1:]
result = json.load(open(path))["dataset"]
gains = {task: round(row["psnr"] - row["input_psnr"], 2) for task, row in result["tasks"].items()}
psnrs = [row["psnr"] for row in result["tasks"].values()]
print(json.dumps({"config": name, "steps": int(steps), "seconds": int(seconds),
                  "mean_psnr": round(sum(psnrs) / len(psnrs), 2),
                  "mean_gain_db": round(sum(gains.values()) / len(gains), 2), "gain_db": gains}))
PY
done <<'CONFIGS' | tee "$work/sweep/results.jsonl"
w16-light 16 1,1,1,2 1 1,1,1,1 23
w24-mid 24 1,1,2,2 2 1,1,1,1 12
w32-light 32 1,1,1,2 1 1,1,1,1 10
CONFIGS
