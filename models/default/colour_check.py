"""Measure colour stages on validation photos: the network alone, the stage alone and their mean, for bad retouches.

The photos are the recipe's validation photo (retina), scikit-image's camera.png (grey) and two of the colour photos
gradio installs (lion, tower), which neither the network nor any colour stage trains on. Each is shrunk to at most
512 px on its long side and damaged with the card's fixed retouch and 7 drawn from the retouch's training ranges
(a retouch that leaves the grey camera.png as it was is skipped).
The network's outputs (shipped weights, self-ensemble, no colour stage) are cached, so stages compare in seconds.
Usage: python models/default/colour_check.py STAGE.safetensors [STAGE ...] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from instructir.datasets.degradations import get_degradation
from instructir.datasets.sources import ImageRef, sample_images
from instructir.model.colour import load_colour_stage
from instructir.model.evaluate import DEFAULT_INSTRUCTIONS
from instructir.model.metrics import psnr
from instructir.model.probe import FIXED_DAMAGE
from instructir.model.restore import Restorer, blend_colour_stage
from instructir.model.shipped import shipped_checkpoint

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / "models/default/work/colour-check"
PHOTOS = {
    "samples/retina": next(ref for ref in sample_images() if ref.name == "samples/retina"),
    "skimage/camera": ImageRef(name="skimage/camera", source="samples", path=None, key="skimage.data:camera.png"),
    "gradio/lion": ImageRef(name="gradio/lion", source="samples", path=None, key="gradio:media_assets/images/lion.jpg"),
    "gradio/tower": ImageRef(
        name="gradio/tower", source="samples", path=None, key="gradio:media_assets/images/tower.jpg"
    ),
}
LONG_SIDE = 512
DRAWN = 7


def shrink(image: np.ndarray, long_side: int = LONG_SIDE) -> np.ndarray:
    """``image`` area-averaged down so its long side is at most ``long_side``, cropped to a multiple of 16."""
    scale = long_side / max(image.shape[:2])
    if scale < 1:
        pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
        size = (round(image.shape[0] * scale), round(image.shape[1] * scale))
        image = F.interpolate(pixels, size=size, mode="area")[0].permute(1, 2, 0).numpy()
    height, width = (image.shape[0] // 16) * 16, (image.shape[1] // 16) * 16
    return np.ascontiguousarray(image[:height, :width], dtype=np.float32)


def retouches() -> list[dict]:
    """The card's fixed retouch, then 7 drawn with a fixed seed."""
    degradation = get_degradation("retouch")
    rng = np.random.default_rng(1)
    return [FIXED_DAMAGE["enhance"][1], *(degradation.sample_params(rng) for _ in range(DRAWN))]


def cases() -> list[dict]:
    """Every (photo, retouch): clean, damaged and the network's restoration (computed once, then cached)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    restorer = None
    degradation = get_degradation("retouch")
    out = []
    for name, ref in PHOTOS.items():
        clean = shrink(ref.load())
        for index, params in enumerate(retouches()):
            damaged = degradation.apply(clean, params)
            if np.array_equal(damaged, clean):  # a grey photo under a pure saturation change: nothing to undo
                continue
            file = CACHE / f"{name.replace('/', '-')}-{index}.npy"
            if not file.is_file():
                if restorer is None:
                    restorer = Restorer.from_checkpoint(shipped_checkpoint(), device="cpu", colour=False)
                np.save(file, restorer.restore(damaged, DEFAULT_INSTRUCTIONS["enhance"]))
            out.append({"photo": name, "index": index, "clean": clean, "damaged": damaged, "net": np.load(file)})
    return out


def measure(stage_file: Path, rows: list[dict]) -> dict[str, dict[str, float]]:
    """Mean PSNR gain over the network alone, per photo, for the stage alone and for the blend."""
    stage = load_colour_stage(stage_file)
    gains: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        corrected = stage.apply(row["damaged"])
        base = psnr(row["net"], row["clean"])
        entry = gains.setdefault(row["photo"], {"stage": [], "blend": [], "net_over_input": []})
        entry["stage"].append(psnr(corrected, row["clean"]) - base)
        entry["blend"].append(psnr(blend_colour_stage(row["net"], corrected), row["clean"]) - base)
        entry["net_over_input"].append(base - psnr(row["damaged"], row["clean"]))
    return {photo: {k: round(float(np.mean(v)), 3) for k, v in entry.items()} for photo, entry in gains.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stages", type=Path, nargs="+")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows = cases()
    results = {str(stage): measure(stage, rows) for stage in args.stages}
    print(f"{'stage':<44} {'photo':<16} {'net-input':>9} {'stage':>7} {'blend':>7}  (mean dB over the network)")
    for stage, photos in results.items():
        for photo, figures in photos.items():
            print(
                f"{Path(stage).name:<44} {photo:<16} {figures['net_over_input']:>9.2f} {figures['stage']:>7.2f} "
                f"{figures['blend']:>7.2f}"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
