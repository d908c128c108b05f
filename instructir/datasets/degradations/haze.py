"""Haze from the atmospheric scattering model: ``I = J·t + A·(1 − t)`` with transmission ``t = exp(−beta·d)``.

``J`` is the clean image, ``A`` the (grey) airlight, ``beta`` the scattering coefficient and ``d`` a depth map
normalised to [0, 1]. Training draws ``A ~ U(0.6, 0.95)`` and ``beta ~ U(1, 2.5)``, so the farthest point keeps
8-37 % of its radiance. Without a real depth map, :func:`synthetic_depth` builds one from the seed: a smooth
low-frequency random field blended with a vertical ramp (far at the top, like the sky and horizon of an outdoor
photo), rescaled to span [0, 1].
"""

from __future__ import annotations

import numpy as np

from instructir.datasets.degradations.base import Degradation, Params, as_image, clip01, draw_seed

AIRLIGHT_RANGE = (0.6, 0.95)
BETA_RANGE = (1.0, 2.5)
DEPTH_GRID = 6  # control points per side of the random field: its features are about a sixth of the image
RAMP_WEIGHT_RANGE = (0.3, 0.7)


def smooth_basis(n: int, grid: int) -> np.ndarray:
    """(n, grid) weights of ``grid`` evenly spaced Gaussian bumps, each row summing to 1: a smooth interpolator."""
    centres = np.linspace(0.0, n - 1.0, grid)
    width = 0.8 * max(n - 1.0, 1.0) / max(grid - 1, 1)
    positions = np.arange(n, dtype=np.float64)[:, None]
    weights = np.exp(-0.5 * ((positions - centres[None, :]) / width) ** 2)
    return weights / weights.sum(axis=1, keepdims=True)


def normalise01(values: np.ndarray) -> np.ndarray:
    """Rescale to span exactly [0, 1] (a constant array becomes zeros)."""
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def synthetic_depth(height: int, width: int, seed: int) -> np.ndarray:
    """A plausible (H, W) float32 depth map in [0, 1] from ``seed``: smooth random field plus a far-at-top ramp."""
    rng = np.random.default_rng(int(seed))
    coarse = rng.random((DEPTH_GRID, DEPTH_GRID))
    ramp_weight = rng.uniform(*RAMP_WEIGHT_RANGE)
    field = normalise01(smooth_basis(height, DEPTH_GRID) @ coarse @ smooth_basis(width, DEPTH_GRID).T)
    ramp = np.linspace(1.0, 0.0, height)[:, None]
    return normalise01(ramp_weight * ramp + (1.0 - ramp_weight) * field).astype(np.float32)


def transmission(depth: np.ndarray, beta: float) -> np.ndarray:
    """Fraction of scene radiance that reaches the camera: ``exp(-beta * depth)``, in (0, 1] for depth >= 0."""
    return np.exp(-np.float32(beta) * np.asarray(depth, dtype=np.float32)).astype(np.float32)


def add_haze(image: np.ndarray, depth: np.ndarray, airlight: float, beta: float) -> np.ndarray:
    """Deterministic core of the scattering model for a given (H, W) or (H, W, 1) depth map."""
    image = as_image(image)
    depth = np.asarray(depth, dtype=np.float32)
    t = transmission(depth if depth.ndim == 3 else depth[..., None], beta)
    return clip01(image * t + np.float32(airlight) * (1.0 - t))


def apply_haze(image: np.ndarray, params: Params, depth: np.ndarray | None = None) -> np.ndarray:
    """Haze ``image`` with ``params`` (airlight, beta, seed) using ``depth`` or, if None, the seed's synthetic depth."""
    image = as_image(image)
    if depth is None:
        depth = synthetic_depth(image.shape[0], image.shape[1], int(params["seed"]))
    return add_haze(image, depth, float(params["airlight"]), float(params["beta"]))


def sample_haze(rng: np.random.Generator) -> Params:
    """Training parameters: airlight ~ U(0.6, 0.95), beta ~ U(1, 2.5), and the seed of the synthetic depth map."""
    return {
        "airlight": float(rng.uniform(*AIRLIGHT_RANGE)),
        "beta": float(rng.uniform(*BETA_RANGE)),
        "seed": draw_seed(rng),
    }


haze = Degradation(
    name="haze",
    apply=apply_haze,
    sample_params=sample_haze,
    description="atmospheric scattering haze I = J t + A (1 - t), t = exp(-beta d), A 0.6-0.95, beta 1-2.5",
)
