"""Check the default model as a new user meets it: `instructir restore` on PNG files of the held-out photo.

Writes the test photo (rocket) damaged with noise (sigma 25), low light (gamma 2.5 x 0.9), a Gaussian blur (sigma 2)
and haze as 8-bit PNGs, restores each with `instructir restore` and a plain request, and prints the PSNR of the
damaged and of the restored file against the clean photo. Run it in an empty folder, so no quick run is found and
the command picks the shipped model (it says which it uses).
Usage: python models/default/cli_check.py [--out FOLDER]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from instructir.datasets.images import crop_to_multiple, encode_image, load_image
from instructir.datasets.sources import sample_images
from instructir.model.metrics import psnr
from instructir.model.probe import damage

REQUESTS = {
    "denoise": "remove the noise",
    "lowlight": "it is too dark, brighten it",
    "deblur": "it's blurry, sharpen it",
    "dehaze": "remove the haze",
}


def check(folder: Path) -> list[dict]:
    """Damage, save, restore through the CLI and score each task; one row per task."""
    folder.mkdir(parents=True, exist_ok=True)
    clean = crop_to_multiple({ref.name: ref for ref in sample_images()}["samples/rocket"].load(), 16)
    rows = []
    for task, request in REQUESTS.items():
        damaged, restored = folder / f"{task}.png", folder / f"{task}-restored.png"
        damaged.write_bytes(encode_image(damage(clean, task), ".png"))
        command = [sys.executable, "-m", "instructir", "restore", str(damaged), request, "-o", str(restored)]
        done = subprocess.run(command, capture_output=True, text=True, cwd=folder)
        if done.returncode != 0:
            raise SystemExit(f"instructir restore failed for {task}:\n{done.stderr}")
        before, after = psnr(load_image(damaged), clean), psnr(load_image(restored), clean)
        model = next((line for line in done.stderr.splitlines() if line.startswith("model:")), "")
        rows.append(
            {
                "task": task,
                "request": request,
                "input_psnr": round(before, 2),
                "psnr": round(after, 2),
                "gain_db": round(after - before, 2),
                "model": model,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("cli-check"))
    args = parser.parse_args()
    rows = check(args.out.resolve())
    print(f"{'task':<9} {'request':<30} {'input':>7} {'restored':>9} {'gain':>6}")
    for row in rows:
        figures = f"{row['input_psnr']:>7.2f} {row['psnr']:>9.2f} {row['gain_db']:>+6.2f}"
        print(f"{row['task']:<9} {row['request']:<30} {figures}")
    print(rows[0]["model"])
    (args.out / "cli_check.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
