"""Low light as in OneRestore's synthesis: a gamma curve and a gain darken the image, then read noise is added.

``out = clip(I**gamma · scale + sigma · n)`` with ``n ~ N(0, 1)`` per pixel and channel (signal-independent read
noise). Training: ``gamma ~ U(2, 3)``, ``scale ~ U(0.5, 1)`` (exposure gain), ``sigma ~ U(0.03, 0.08)``.
Evaluation default (:func:`eval_params`): gamma 2.5, scale 1, sigma 0.05.
"""

from __future__ import annotations

import numpy as np

from instructir.datasets.degradations.base import Degradation, Params, as_image, clip01, draw_seed

GAMMA_RANGE = (2.0, 3.0)
SCALE_RANGE = (0.5, 1.0)
SIGMA_RANGE = (0.03, 0.08)


def darken(image: np.ndarray, gamma: float, scale: float, sigma: float, noise_field: np.ndarray) -> np.ndarray:
    """Deterministic core: ``clip(I**gamma * scale + sigma * noise_field)`` for a standard normal field."""
    base = np.power(np.clip(as_image(image), 0.0, 1.0), np.float32(gamma)) * np.float32(scale)
    return clip01(base + np.float32(sigma) * noise_field)


def apply_low_light(image: np.ndarray, params: Params) -> np.ndarray:
    """Darken ``image`` with ``params`` (gamma, scale, sigma, seed)."""
    image = as_image(image)
    noise = np.random.default_rng(int(params["seed"])).standard_normal(image.shape, dtype=np.float32)
    return darken(image, float(params["gamma"]), float(params["scale"]), float(params["sigma"]), noise)


def sample_low_light(rng: np.random.Generator) -> Params:
    """Training parameters: gamma ~ U(2, 3), scale ~ U(0.5, 1), sigma ~ U(0.03, 0.08)."""
    return {
        "gamma": float(rng.uniform(*GAMMA_RANGE)),
        "scale": float(rng.uniform(*SCALE_RANGE)),
        "sigma": float(rng.uniform(*SIGMA_RANGE)),
        "seed": draw_seed(rng),
    }


def eval_params(seed: int = 0, gamma: float = 2.5, scale: float = 1.0, sigma: float = 0.05) -> Params:
    """The fixed evaluation low-light setting (gamma 2.5, scale 1, sigma 0.05)."""
    return {"gamma": float(gamma), "scale": float(scale), "sigma": float(sigma), "seed": int(seed)}


low_light = Degradation(
    name="low_light",
    apply=apply_low_light,
    sample_params=sample_low_light,
    description="low light: I**gamma * scale + read noise, gamma 2-3, scale 0.5-1, noise sigma 0.03-0.08",
)
