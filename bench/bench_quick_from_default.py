"""Would the quick profile do better by fine-tuning the default model than by training from scratch, in equal time?

Three models, scored on the quick run's test split (the held-out rocket photo, which none of them trained on):
- scratch: the quick profile's own training (its width-16 network, steps, batch and crop), timed here;
- as shipped: the default model, no training at all;
- fine-tuned: the default model trained on the same dataset with `--init` for the seconds scratch took (steps set
  from a short calibration run of the same settings), lr 3e-4, with `--augment`.
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

from instructir.hardware import cpu_description
from instructir.model.evaluate import evaluate_dataset
from instructir.model.restore import Restorer
from instructir.model.shipped import shipped_checkpoint
from instructir.model.train import TrainConfig, train
from instructir.pipeline.config import profile_config
from instructir.pipeline.stages import training_config

DEFAULT_SIZE = {"width": 24, "enc_blks": (1, 1, 2, 2), "middle_blk_num": 2, "dec_blks": (1, 1, 1, 1)}


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
    """Overall and per-task restored PSNR on the test split."""
    result = evaluate_dataset(Restorer.from_checkpoint(checkpoint, device="cpu"), data, "test")
    per_task = {task: round(row["psnr"], 2) for task, row in result["tasks"].items()}
    overall = result["overall"]
    return {"input_psnr": round(overall["input_psnr"], 2), "psnr": round(overall["psnr"], 2), **per_task}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=REPO / "runs" / "quick")
    parser.add_argument("--calibration-steps", type=int, default=60)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="quick-from-default-"))
    scratch = quick_config(args.run, work / "scratch")
    scratch_seconds = timed_train(scratch)

    tune = replace(scratch, **DEFAULT_SIZE, init=str(shipped_checkpoint()), augment=True, lr=3e-4, warmup=20)
    probe = replace(tune, out=str(work / "calibration"), steps=args.calibration_steps)
    per_step = timed_train(probe) / args.calibration_steps
    steps = max(int(scratch_seconds / per_step), 1)
    tuned = replace(tune, out=str(work / "tuned"), steps=steps, checkpoint_every=steps)
    tuned_seconds = timed_train(tuned)

    rows = [
        {"model": "scratch (quick profile)", "steps": scratch.steps, "seconds": round(scratch_seconds)},
        {"model": "default model as shipped", "steps": 0, "seconds": 0},
        {"model": "default model fine-tuned", "steps": steps, "seconds": round(tuned_seconds)},
    ]
    checkpoints = [work / "scratch" / "final.safetensors", shipped_checkpoint(), work / "tuned" / "final.safetensors"]
    for row, checkpoint in zip(rows, checkpoints, strict=True):
        row.update(scores(checkpoint, scratch.data))
    title = f"Quick profile, test split PSNR (dB), equal training time; {cpu_description()}"
    print_table(rows, title)
    write_results("quick_from_default", rows, cpu=cpu_description(), run=str(args.run))


if __name__ == "__main__":
    main()
