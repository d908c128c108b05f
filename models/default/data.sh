#!/usr/bin/env bash
# The default model's data: the bundled photos, every task with a degradation, requests from the shipped corpus.
# The build's split holds out whole photos: validation (retina) picks the size, test (rocket) is never trained on.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=models/default/work
if [ ! -f "$work/dataset/summary.json" ]; then
  instructir data build --samples --corpus instructir-requests \
    --tasks denoise,deblur,derain,dehaze,lowlight,superres,enhance \
    --per-image 2 --patch 256 --seed 0 --out "$work/dataset" --overwrite --no-progress
fi
