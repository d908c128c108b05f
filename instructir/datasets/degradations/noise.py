"""Sensor noise: additive white Gaussian noise (the denoising benchmarks' model) and signal-dependent Poisson noise.

Gaussian: ``out = clip(I + sigma/255 * n)`` with ``n ~ N(0, 1)`` per pixel and channel, or one field shared by all
channels when ``grey`` (luminance-only noise). Training draws sigma ~ U(1, 50) and grey with probability 0.4, as in
Real-ESRGAN's degradation model. The fixed evaluation noise (sigma 15, 25, 50 on CBSD68/Kodak/Urban100) comes from
:func:`eval_params`: colour AWGN, then the result is rounded to 8-bit levels like a saved PNG.

Poisson: a photon-counting model. A pixel of intensity ``I`` collects ``Poisson(I * peak)`` photons, and
``out = counts / peak``, so the noise variance is ``I / peak`` (counts from 30 expected photons up use a normal
approximation with the same mean and variance, see :func:`photon_counts`). ``peak = 255 / scale**2``, which gives
variance ``scale**2 * I / 255``: the same variance as Real-ESRGAN's scaled Poisson noise on 8-bit images, for its range
``scale ~ U(0.05, 3)``. With ``grey`` the photon noise is drawn once on the luma ``Y`` and added to all channels.
"""

from __future__ import annotations

import numpy as np

from instructir.datasets.degradations.base import Degradation, Params, as_image, clip01, draw_seed, luminance

SIGMA_RANGE = (1.0, 50.0)
POISSON_SCALE_RANGE = (0.05, 3.0)
GREY_PROBABILITY = 0.4
EVAL_SIGMAS = (15, 25, 50)
POISSON_NORMAL_ABOVE = 30.0  # expected photons from which counts use the normal approximation


def gaussian_field(height: int, width: int, grey: bool, seed: int) -> np.ndarray:
    """A standard normal field, HW3 (colour noise) or HW1 (grey noise, broadcast over channels), from ``seed``."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((height, width, 1 if grey else 3), dtype=np.float32)


def add_gaussian(image: np.ndarray, sigma: float, noise_field: np.ndarray) -> np.ndarray:
    """Deterministic core of AWGN: ``clip(image + sigma/255 * noise_field)``; the field broadcasts (HW1 for grey)."""
    return clip01(as_image(image) + np.float32(sigma / 255.0) * noise_field)


def quantize8(image: np.ndarray) -> np.ndarray:
    """Round to the 256 levels of an 8-bit image (round, not truncate), as a noisy test image saved as PNG would be."""
    return (np.round(as_image(image) * 255.0) / 255.0).astype(np.float32)


def apply_gaussian(image: np.ndarray, params: Params) -> np.ndarray:
    """Add white Gaussian noise of ``params['sigma']`` (0-255 scale), optionally grey and 8-bit quantised."""
    image = as_image(image)
    field = gaussian_field(image.shape[0], image.shape[1], bool(params.get("grey", False)), int(params["seed"]))
    out = add_gaussian(image, float(params["sigma"]), field)
    return quantize8(out) if params.get("quantize", False) else out


def sample_gaussian(rng: np.random.Generator) -> Params:
    """Training parameters: sigma ~ U(1, 50) on the 0-255 scale, grey noise with probability 0.4."""
    return {
        "sigma": float(rng.uniform(*SIGMA_RANGE)),
        "grey": bool(rng.random() < GREY_PROBABILITY),
        "seed": draw_seed(rng),
    }


def eval_params(sigma: float, seed: int = 0) -> Params:
    """The fixed evaluation noise: colour AWGN of ``sigma`` (15, 25 or 50 in benchmarks), rounded to uint8 levels."""
    return {"sigma": float(sigma), "grey": False, "seed": int(seed), "quantize": True}


def poisson_peak(scale: float) -> float:
    """Photons collected at intensity 1 for a Real-ESRGAN noise ``scale``: ``255 / scale**2`` (var scale²·I/255)."""
    return 255.0 / float(scale) ** 2


def photon_counts(expected: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Poisson counts for ``expected`` photon numbers: exact below 30, ``round(λ + √λ·z)`` from 30 up.

    The normal approximation has the same mean and variance and a negligible skew (1/√λ ≤ 0.18), and it is far
    cheaper than numpy's Poisson sampler (about 2 ms instead of 8 ms for a bright 256x256 RGB crop).
    """
    large = expected >= POISSON_NORMAL_ABOVE
    n_small = expected.size - int(np.count_nonzero(large))
    if n_small == expected.size:
        return rng.poisson(expected).astype(np.float32)
    counts = np.round(expected + np.sqrt(expected) * rng.standard_normal(expected.shape, dtype=np.float32))
    if n_small:
        counts[~large] = rng.poisson(expected[~large])
    return counts


def add_poisson(image: np.ndarray, peak: float, grey: bool, rng: np.random.Generator) -> np.ndarray:
    """Photon shot noise: ``Poisson(I * peak) / peak``, drawn on the luma and shared by channels when ``grey``."""
    image = as_image(image)
    clean = np.clip(image, 0.0, 1.0)
    peak32 = np.float32(peak)
    if grey:
        y = luminance(clean)
        return clip01(image + (photon_counts(y * peak32, rng) / peak32 - y))
    return clip01(photon_counts(clean * peak32, rng) / peak32)


def apply_poisson(image: np.ndarray, params: Params) -> np.ndarray:
    """Add Poisson (shot) noise whose variance is ``scale**2 * I / 255``, colour or grey."""
    rng = np.random.default_rng(int(params["seed"]))
    return add_poisson(image, poisson_peak(params["scale"]), bool(params.get("grey", False)), rng)


def sample_poisson(rng: np.random.Generator) -> Params:
    """Training parameters: scale ~ U(0.05, 3) (Real-ESRGAN's range), grey with probability 0.4."""
    return {
        "scale": float(rng.uniform(*POISSON_SCALE_RANGE)),
        "grey": bool(rng.random() < GREY_PROBABILITY),
        "seed": draw_seed(rng),
    }


gaussian_noise = Degradation(
    name="gaussian_noise",
    apply=apply_gaussian,
    sample_params=sample_gaussian,
    description="additive white Gaussian noise, sigma 1-50 on the 0-255 scale, colour or grey",
)

poisson_noise = Degradation(
    name="poisson_noise",
    apply=apply_poisson,
    sample_params=sample_poisson,
    description="signal-dependent photon shot noise, variance scale^2 * I / 255 with scale 0.05-3, colour or grey",
)
