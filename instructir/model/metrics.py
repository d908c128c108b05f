"""PSNR and SSIM in the BasicSR protocol, the one restoration papers (and InstructIR) report.

Images are float arrays in [0, 1], HWC. Both metrics work on the 0-255 scale in float64 after rounding to
8-bit levels, optionally on the BT.601 luma (Y) channel and with ``crop_border`` pixels removed on each side.
SSIM uses an 11x11 Gaussian window (sigma 1.5) over the valid region and averages over channels: it equals
scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=255)`` on the same inputs. Never compare RGB with Y figures: Y runs 2-5 dB higher.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import correlate1d

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0


def to_y(image: np.ndarray) -> np.ndarray:
    """BT.601 luma on the 0-255 scale from an RGB image on the 0-255 scale (H, W, 1)."""
    return (image @ _Y_WEIGHTS + 16.0)[..., None]


def prepare(image: np.ndarray, crop_border: int = 0, test_y_channel: bool = False) -> np.ndarray:
    """Float64 on the 0-255 scale, rounded to 8-bit levels, border cropped, optionally Y only."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 2:
        image = image[..., None]
    image = np.round(np.clip(image, 0.0, 1.0) * 255.0)
    if test_y_channel and image.shape[2] == 3:
        image = to_y(image)
    if crop_border:
        image = image[crop_border:-crop_border, crop_border:-crop_border]
    return image


def psnr(restored: np.ndarray, target: np.ndarray, crop_border: int = 0, test_y_channel: bool = False) -> float:
    """Peak signal-to-noise ratio in dB; ``inf`` for identical images."""
    if restored.shape != target.shape:
        raise ValueError(f"images differ in shape: {restored.shape} vs {target.shape}")
    a = prepare(restored, crop_border, test_y_channel)
    b = prepare(target, crop_border, test_y_channel)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    offsets = np.arange(size) - (size - 1) / 2
    weights = np.exp(-(offsets**2) / (2 * sigma**2))
    return weights / weights.sum()


def _filter_valid(channel: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable Gaussian filtering, keeping only positions where the whole window fits."""
    half = len(window) // 2
    filtered = correlate1d(correlate1d(channel, window, axis=0, mode="reflect"), window, axis=1, mode="reflect")
    return filtered[half:-half, half:-half]


def _ssim_channel(a: np.ndarray, b: np.ndarray) -> float:
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    window = _gaussian_window()
    mu_a, mu_b = _filter_valid(a, window), _filter_valid(b, window)
    var_a = _filter_valid(a * a, window) - mu_a**2
    var_b = _filter_valid(b * b, window) - mu_b**2
    cov = _filter_valid(a * b, window) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


def ssim(restored: np.ndarray, target: np.ndarray, crop_border: int = 0, test_y_channel: bool = False) -> float:
    """Structural similarity, mean over channels; images must be at least 11 pixels on each side."""
    if restored.shape != target.shape:
        raise ValueError(f"images differ in shape: {restored.shape} vs {target.shape}")
    a = prepare(restored, crop_border, test_y_channel)
    b = prepare(target, crop_border, test_y_channel)
    if min(a.shape[:2]) < 11:
        raise ValueError(f"SSIM needs images of at least 11x11 after cropping, got {a.shape[1]}x{a.shape[0]}")
    return float(np.mean([_ssim_channel(a[..., c], b[..., c]) for c in range(a.shape[2])]))
