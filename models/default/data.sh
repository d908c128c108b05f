#!/usr/bin/env bash
# The default model's data: the bundled photos, every task with a degradation, requests from the shipped corpus.
# The build's split holds out whole photos: validation (retina) picks the size, test (rocket) is never trained on.
# dataset/ (2 crops of 256 px per photo and task) is the first stage's; dataset-ft/ (6 crops) the fine-tune's: the
# same split, three times the picture content to draw training crops from.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=models/default/work
build() {  # build FOLDER PER_IMAGE
  if [ ! -f "$work/$1/summary.json" ]; then
    instructir data build --samples --corpus instructir-requests \
      --tasks denoise,deblur,derain,dehaze,lowlight,superres,enhance \
      --per-image "$2" --patch 256 --seed 0 --out "$work/$1" --overwrite --no-progress
  fi
}
build dataset 2
build dataset-ft 6
