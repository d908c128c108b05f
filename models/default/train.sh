#!/usr/bin/env bash
# Train the default model that ships in instructir/data/model/, then measure it and write its card.
# Every image task of the registry, on-the-fly pairs from the bundled photos (rocket held out for testing, retina
# for validation), requests from the shipped corpus. Two stages:
#   1. 8,500 steps from scratch (work/train);
#   2. 2,500 steps fine-tuning stage 1's EMA weights with --augment (each clean crop turned and its exposure, white
#      balance and gamma jittered) on three times as many crops (work/finetune). Stage 1 alone improved the photos
#      it trained on for every task but shifted the colours of unseen photos (validation: blur and x2 made worse).
# A third stage (stage 2 again from stage 2's weights, 2,726 s) was tried and not kept: on the validation photo it
# raised the sum of the gains (50.8 -> 51.9 dB) but lost 0.71 dB on haze, past the 0.5 dB a stage may lose on any
# task, the rule set before its figures were read. So was a third stage that also put half the crops' colour channels
# in another order (2,500 steps from stage 2, 2,054 s; the flag was removed again): sum 50.7 -> 52.4 dB, but the
# colour cast lost 1.24 dB and blur got worse (-0.64 -> -0.94 dB). So was a blur-weighted third stage: 1,500 steps
# from stage 2 at lr 2e-4 on dataset-ft plus 12 more blur crops per photo (a third of the crops blurred;
# `python models/default/mix.py`, 2,653 s). `python models/default/compare.py` scored it on retina and on
# scikit-image's camera.png (which no split holds), ensemble on: blur -0.49 dB on retina and +0.16 on camera, haze
# -1.38 and low light -0.70 on camera, sum -2.65 dB. On the test photo the shipped model's blurred rocket comes back
# with its mean red 0.013 lower than the input's; matching the means alone would turn -0.09 dB into +0.10: the model
# barely sharpens a sigma-2 blur and shifts the colours of a photo it never saw.
# The card's step ships the model asking for the self-ensemble (card.py --ensemble, the default): the outputs of the
# photo as is, upside down, mirrored and both, averaged. Chosen on the validation photo (retina, bf16 weights, the
# card's fixed damage) by the stages' rule (the gains' sum up, no task losing over 0.5 dB), in dB over one pass:
# derain +0.66, deblur +0.16, denoise +0.46, dehaze -0.13, lowlight +0.09, superres +0.76, enhance -0.02. All eight
# symmetries of the square were measured first and not kept: quarter turns show the model sideways rain, which it
# leaves (derain 33.57 -> 22.54 dB).
# It also ships asking to keep the mean colour (card.py --keep-mean, the default): for a request read as deblur or
# superres, whose damage keeps a photo's mean colour, the output is shifted back to the input's mean colour. Chosen
# on the validation photos by the same rule (`python models/default/compare.py F F --no-keep-mean-current
# --keep-mean-new` with F = work/finetune/final.safetensors), in dB: retina deblur +0.17, superres +0.07; camera
# deblur +0.03, superres +0.01; every other task unchanged.
# It ships with a colour stage (models/default/colour_stage.py, about 2 minutes): the network left the test photo's
# bad retouch worse (enhance -0.27 dB), and a retouch is one colour function of the whole photo, which a small MLP on
# the photo's colour statistics can pick the inverse of. How to use it was chosen on the validation photos (retina
# and camera.png, the fixed retouch and 7 drawn ones each, ensemble on) with a first run of the recipe, by a rule set
# before the figures were read (mean gain over the network alone above zero on both photos), in dB: the stage on the
# input alone -1.30 and +3.76 (not kept), on the network's output -1.83 and -0.12 (not kept), the mean of the
# network's output and the stage on the input +0.86 and +2.65 (kept; restore.blend_colour_stage). The run that ships
# is a second one (runs are not bit-reproducible: float sums over arrays of varying alignment, amplified by 3,000
# steps), measured the same way against the network alone: camera +2.46 dB, the retina's 6 validation-split crops
# +0.80, the retina's fixed retouch -1.82. On the test photo it turns the card's -0.27 dB into +1.68, but loses on the
# test split's crops (22.09 dB against 24.30 for the network alone, input 26.18).
# `python models/default/colour_check.py STAGE...` measures a stage on four photos no training holds (retina,
# camera.png, gradio's lion and tower; fixed retouch + 7 drawn, 512 px): the shipped stage's blend gains +0.46,
# +2.66, +1.40 and +1.36 dB over the network alone. Training it on 4 more colour photos (gradio's cheetahs and groot)
# was tried and not kept: over 3 seeds the blend lost 0.20-0.39 dB on retina (2 more seeds without them: +0.99,
# +0.39). The mean of 3 stages' corrections (seeds 0-2) moved the sum by +0.05 dB only, so one stage still ships.
# A stage trained with each clean crop's contrast scaled by a factor drawn from [0.5, 1.2] (so that it sees clean
# photos flatter than the few it trains on, as the test crop is: the shipped stage stretches its std from 0.07 to
# 0.17 against 0.12 clean) was tried and not kept, by a rule set before its figures were read (blend above the
# network on all four check photos, sum at least the shipped stage's): blend +0.46/+2.66/+1.40/+1.36 dB shipped,
# -0.39/+3.54/+0.82/+0.69 with it (the flag was removed again).
# Rerunning resumes from the newest checkpoint (every 250 steps); each segment's wall time is appended to its run's
# segments.jsonl, so the card's time counts every segment of both stages.
# Usage: bash models/default/train.sh   (about 2.7 hours on 2 CPU cores; figures land in instructir/data/model/)
set -euo pipefail
cd "$(dirname "$0")/../.."
work=models/default/work
bash models/default/data.sh
size=(--width 24 --enc-blks 1,1,2,2 --middle-blks 2 --dec-blks 1,1,1,1)  # picked by sweep.sh (see the card)

timed() {  # timed RUN -- COMMAND...: run COMMAND, appending its wall time to RUN/segments.jsonl however it ends
  local run=$1
  shift 2
  mkdir -p "$run"
  segment_start=$(date +%s)
  trap 'echo "{\"seconds\": $(( $(date +%s) - segment_start ))}" >> "'"$run"'/segments.jsonl"; trap - EXIT' EXIT INT TERM
  "$@"
  trap - EXIT INT TERM
  echo "{\"seconds\": $(( $(date +%s) - segment_start ))}" >> "$run/segments.jsonl"
}

if [ ! -f "$work/train/final.safetensors" ]; then
  timed "$work/train" -- instructir train --data "$work/dataset" --out "$work/train" --resume --seed 0 \
    --steps 8500 --batch 8 --patch 96 --lr 1e-3 --warmup 200 --checkpoint-every 250 "${size[@]}" \
    --on-the-fly --corpus instructir-requests --no-progress
fi
if [ ! -f "$work/finetune/final.safetensors" ]; then
  timed "$work/finetune" -- instructir train --data "$work/dataset-ft" --out "$work/finetune" --resume --seed 1 \
    --init "$work/train/final.safetensors" --augment \
    --steps 2500 --batch 8 --patch 96 --lr 3e-4 --warmup 100 --checkpoint-every 250 "${size[@]}" \
    --on-the-fly --corpus instructir-requests --no-progress
fi
if [ ! -f "$work/colour.safetensors" ]; then
  python models/default/colour_stage.py --data "$work/dataset-ft" --out "$work/colour.safetensors"
fi
python models/default/card.py --run "$work/finetune" --base-run "$work/train" --data "$work/dataset-ft" \
  --out instructir/data/model
