"""Decide whether a new training stage is kept: its probe gains against the current stage's, on validation photos.

The rule, fixed before any figures are read: a stage is kept when no task on any validation photo loses more than
0.5 dB against the current stage and the sum of the gains over every photo and task goes up. The validation photos
are the dataset's (retina) and scikit-image's camera.png, which no training split holds: retina is mostly black, so
its blur and x2 figures barely move, and camera (grey, shown as RGB) is the classic deblurring test picture.
Both checkpoints restore as the shipped model does (self-ensemble unless --no-ensemble); each keeps the mean colour
as its metadata says unless --[no-]keep-mean-current / --[no-]keep-mean-new say otherwise, so one checkpoint can
be compared with itself with the option off and on.
Usage: python models/default/compare.py CURRENT.safetensors NEW.safetensors [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from instructir.datasets.sources import ImageRef, sample_images
from instructir.model.probe import probe
from instructir.model.restore import Restorer

PHOTOS = {
    "samples/retina": next(ref for ref in sample_images() if ref.name == "samples/retina"),
    "skimage/camera": ImageRef(name="skimage/camera", source="samples", path=None, key="skimage.data:camera.png"),
}
MAX_LOSS_DB = 0.5


def gains(checkpoint: Path, ensemble: bool, keep_mean: bool | None = None) -> dict[str, dict[str, float]]:
    """PSNR gain over the damaged input, per validation photo and task, for one checkpoint."""
    restorer = Restorer.from_checkpoint(checkpoint, device="cpu", ensemble=ensemble, keep_mean=keep_mean)
    figures = {name: probe(restorer, ref.load()) for name, ref in PHOTOS.items()}
    return {
        name: {task: row["psnr"] - row["input_psnr"] for task, row in rows.items()} for name, rows in figures.items()
    }


def verdict(current: dict[str, dict[str, float]], new: dict[str, dict[str, float]]) -> dict:
    """Apply the rule: the change per photo and task, the worst loss, the change of the sum, and whether to keep."""
    change = {photo: {task: new[photo][task] - current[photo][task] for task in current[photo]} for photo in current}
    worst = min(value for rows in change.values() for value in rows.values())
    total = sum(value for rows in change.values() for value in rows.values())
    keep = bool(worst >= -MAX_LOSS_DB and total > 0)
    return {"change_db": change, "worst_db": float(worst), "sum_db": float(total), "keep": keep}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("current", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--ensemble", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--keep-mean-current", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--keep-mean-new", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    current = gains(args.current, args.ensemble, args.keep_mean_current)
    new = gains(args.new, args.ensemble, args.keep_mean_new)
    result = {"current": current, "new": new, **verdict(current, new)}
    print(f"{'photo':<16} {'task':<9} {'current':>8} {'new':>8} {'change':>8}")
    for photo, rows in current.items():
        for task, gain in rows.items():
            change = result["change_db"][photo][task]
            print(f"{photo:<16} {task:<9} {gain:>+8.2f} {new[photo][task]:>+8.2f} {change:>+8.2f}")
    print(
        f"worst change {result['worst_db']:+.2f} dB, sum of changes {result['sum_db']:+.2f} dB: "
        f"{'keep' if result['keep'] else 'do not keep'} (rule: no loss over {MAX_LOSS_DB} dB, sum up)"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
