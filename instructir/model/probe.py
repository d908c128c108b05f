"""Restore one clean photo under fixed damage per task, with a plain request: the figures a model card reports.

The damage is fixed (not drawn from the training ranges), so every model and every run is scored on the same
inputs: colour noise of sigma 25, low light of gamma 2.5 times 0.9, an isotropic Gaussian blur of sigma 2, haze of
density 1.5, and one seeded draw each of rain, a x2 downscale and a colour cast. Each task's request is the
benchmark's plain one (``instructir.model.evaluate.DEFAULT_INSTRUCTIONS``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from instructir.datasets.degradations import get_degradation
from instructir.datasets.images import crop_to_multiple
from instructir.model.evaluate import DEFAULT_INSTRUCTIONS, image_metrics
from instructir.model.restore import Restorer

FIXED_DAMAGE: dict[str, tuple[str, dict[str, Any]]] = {
    "denoise": ("gaussian_noise", {"sigma": 25.0, "grey": False, "seed": 0, "quantize": True}),
    "deblur": ("gaussian_blur", {"size": 13, "sigma_x": 2.0, "sigma_y": 2.0, "theta": 0.0}),
    "derain": ("rain", get_degradation("rain").sample_params(np.random.default_rng(0))),
    "dehaze": ("haze", {"airlight": 0.8, "beta": 1.5, "seed": 0}),
    "lowlight": ("low_light", {"gamma": 2.5, "scale": 0.9, "sigma": 0.05, "seed": 0}),
    "superres": ("bicubic_downsample", {"scale": 2, "upsample_back": True}),
    "enhance": ("retouch", get_degradation("retouch").sample_params(np.random.default_rng(0))),
}


def damage(clean: np.ndarray, task: str) -> np.ndarray:
    """``clean`` under ``task``'s fixed damage."""
    name, params = FIXED_DAMAGE[task]
    return get_degradation(name).apply(clean, params)


def probe(restorer: Restorer, clean: np.ndarray, tasks: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Per task: PSNR/SSIM of the damaged input and of the restored image against ``clean``, and the intent read.

    ``clean`` is an HxWx3 float [0, 1] image; it is cropped to a multiple of 16 first. ``tasks`` defaults to every
    task with fixed damage.
    """
    clean = crop_to_multiple(clean, 16)
    results = {}
    for task in tasks or FIXED_DAMAGE:
        degraded = damage(clean, task)
        instruction = DEFAULT_INSTRUCTIONS[task]
        restored = restorer.restore(degraded, instruction)
        before, after = image_metrics(degraded, clean), image_metrics(restored, clean)
        intent, confidence = restorer.intent(instruction)
        results[task] = {
            "instruction": instruction,
            "damage": {"name": FIXED_DAMAGE[task][0], "params": FIXED_DAMAGE[task][1]},
            "input_psnr": before["psnr"],
            "psnr": after["psnr"],
            "input_ssim": before["ssim"],
            "ssim": after["ssim"],
            "intent": intent,
            "intent_confidence": confidence,
        }
    return results
