"""Does the quick profile do better by fine-tuning the default model than by training from scratch, in equal time?

Three models, scored on the quick run's test split (the held-out rocket photo, which none of them trained on):
- scratch: the quick profile as it was before it fine-tuned (a width-16 network, 3,000 steps, lr 1e-3), timed here;
- as shipped: the default model, no training at all;
- fine-tuned: the quick profile's train stage as it is now (the default model, `init: shipped`, 2,200 steps at lr
  3e-4 with `augment`), timed here. Its steps were set so that it takes about as long as scratch did.
A second table gives each model's gains on the default model's validation photo for every task, so what fine-tuning
on the profile's 3 tasks costs the other 4 is measured too.
Both trainings run in this process, one after the other, so they see the same machine.

Usage: python bench/bench_quick_from_default.py [--run runs/quick]   (needs `instructir run --profile quick` done)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from common import REPO, print_table, write_results

from instructir.datasets.sources import sample_images
from instructir.hardware import cpu_description
from instructir.model.evaluate import evaluate_dataset
from instructir.model.probe import FIXED_DAMAGE, probe
from instructir.model.restore import Restorer
from instructir.model.shipped import shipped_checkpoint
from instructir.model.train import TrainConfig, train
from instructir.pipeline.config import profile_config
from instructir.pipeline.stages import training_config

VALIDATION_PHOTO = "samples/retina"  # the default model's validation photo: no model here trained on it

# The quick profile's training before it fine-tuned the default model.
SCRATCH = {
    "width": 16,
    "enc_blks": (1, 1, 1, 2),
    "middle_blk_num": 1,
    "dec_blks": (1, 1, 1, 1),
    "steps": 3000,
    "lr": 1e-3,
    "warmup": 50,
    "augment": False,
    "init": None,
}


def quick_config(run: Path, out: Path) -> TrainConfig:
    """The quick profile's training settings on the quick run's dataset (what its train stage runs)."""
    config = training_config(profile_config("quick"), str(run / "dataset" / "dataset"), out, "instructir-requests")
    return replace(config, checkpoint_every=config.steps)


def timed_train(config: TrainConfig) -> float:
    """Train ``config`` and return its wall seconds."""
    start = time.monotonic()
    train(config, show_progress=False)
    return time.monotonic() - start


def scores(checkpoint: Path, data: str) -> dict[str, Any]:
    """Overall and per-task restored PSNR on the test split, in one pass and without keeping the mean colour (the
    shipped model asks for both; off, every model is scored alike)."""
    result = evaluate_dataset(
        Restorer.from_checkpoint(checkpoint, device="cpu", ensemble=False, keep_mean=False), data, "test"
    )
    per_task = {task: round(row["psnr"], 2) for task, row in result["tasks"].items()}
    overall = result["overall"]
    return {"input_psnr": round(overall["input_psnr"], 2), "psnr": round(overall["psnr"], 2), **per_task}


def forgetting(checkpoint: Path) -> dict[str, Any]:
    """Gain per task of the fixed-damage probe on the validation photo: what fine-tuning on 3 tasks kept of the rest."""
    restorer = Restorer.from_checkpoint(checkpoint, device="cpu", ensemble=False, keep_mean=False)
    photo = {ref.name: ref for ref in sample_images()}[VALIDATION_PHOTO].load()
    found = probe(restorer, photo, [task for task in FIXED_DAMAGE if task in restorer.tasks])
    return {
        task: round(found[task]["psnr"] - found[task]["input_psnr"], 2) if task in found else "-"
        for task in FIXED_DAMAGE
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=REPO / "runs" / "quick")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="quick-from-default-"))
    tuned = quick_config(args.run, work / "tuned")
    scratch = replace(tuned, **SCRATCH, out=str(work / "scratch"), checkpoint_every=SCRATCH["steps"])
    scratch_seconds = timed_train(scratch)
    tuned_seconds = timed_train(tuned)
    rows = [
        {"model": "scratch (quick profile before)", "steps": scratch.steps, "seconds": round(scratch_seconds)},
        {"model": "default model as shipped", "steps": 0, "seconds": 0},
        {
            "model": "default model fine-tuned (quick profile now)",
            "steps": tuned.steps,
            "seconds": round(tuned_seconds),
        },
    ]
    checkpoints = [work / "scratch" / "final.safetensors", shipped_checkpoint(), work / "tuned" / "final.safetensors"]
    for row, checkpoint in zip(rows, checkpoints, strict=True):
        row.update(scores(checkpoint, tuned.data))
    print_table(rows, f"Quick profile, test split PSNR (dB) and training seconds; {cpu_description()}")
    kept = [
        {"model": row["model"], **forgetting(checkpoint)} for row, checkpoint in zip(rows, checkpoints, strict=True)
    ]
    print_table(
        kept, f"Gain (dB) per task on the validation photo ({VALIDATION_PHOTO}), fixed damage; '-' = unknown task"
    )
    write_results("quick_from_default", rows, validation_gains=kept, cpu=cpu_description(), run=str(args.run))


if __name__ == "__main__":
    main()
