"""Train the default model's colour stage (``instructir/model/colour.py``) on the recipe's training photos.

Usage: python models/default/colour_stage.py [--data models/default/work/dataset-ft] [--steps 3000] [--seed 0]
                                             [--out models/default/work/colour.safetensors]
The network trained by train.sh made the test photo's bad retouch worse (the enhance task: its card showed -0.27 dB),
though it undoes some on the validation photos. A retouch is one colour function of the whole photo, so a small MLP
that picks a global colour transform from the photo's statistics can help: it trains in minutes on the same
train-split photos (the test and validation photos stay out) with damage drawn from the retouch's training ranges.
card.py ships it beside the weights.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from instructir.datasets.degradations import get_degradation
from instructir.datasets.sources import sample_images
from instructir.hardware import cpu_description
from instructir.model.colour import fit_colour_stage, save_colour_stage

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from card import photos_in  # noqa: E402


def retouch(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``clean`` under a bad retouch drawn from its training ranges."""
    degradation = get_degradation("retouch")
    return degradation.apply(clean, degradation.sample_params(rng))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO / "models/default/work/dataset-ft")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "models/default/work/colour.safetensors")
    args = parser.parse_args()
    names = set(photos_in(args.data, "train"))
    chosen = [ref for ref in sample_images() if ref.name in names]  # the package's order, as the run that chose it
    photos = [ref.load() for ref in chosen]
    torch.set_num_threads(1)  # a small MLP: one thread is as fast
    started = time.perf_counter()

    def report(step: int, loss: float) -> None:
        if step % 250 == 0 or step == args.steps:
            print(f"step {step}/{args.steps}  mse {loss:.5f}  {time.perf_counter() - started:.0f} s", flush=True)

    stage = fit_colour_stage(photos, retouch, np.random.default_rng(args.seed), steps=args.steps, progress=report)
    facts = {
        "recipe": "models/default/colour_stage.py",
        "photos": [ref.name for ref in chosen],
        "steps": args.steps,
        "seed": args.seed,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "machine": cpu_description(),
        "torch": torch.__version__,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_colour_stage(stage, args.out, facts)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
