"""What a degradation is, plus the numeric helpers several degradations share (clipping, seeds, convolution).

Conventions for every degradation in this package: images are numpy float32 arrays, HWC, RGB, values in [0, 1].
``apply(image, params)`` is a pure function: all of its randomness comes from the integer ``params["seed"]``, so
an image and a params dict fully determine the output. ``sample_params(rng)`` draws a JSON-serialisable dict
(plain Python floats, ints, bools, lists) from a ``numpy.random.Generator``; nothing touches global RNG state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.fft as sfft

Params = dict[str, Any]

# Seeds are drawn below 2**31 so they survive every JSON reader and fit a signed 32-bit int.
SEED_BOUND = 2**31 - 1

# ITU-R BT.601 luma weights, used wherever a grey level is derived from RGB.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class Degradation:
    """A named, reproducible image degradation: a pure ``apply`` plus the sampler of its training parameters."""

    name: str
    apply: Callable[..., np.ndarray]
    sample_params: Callable[[np.random.Generator], Params]
    description: str


def as_image(image: np.ndarray) -> np.ndarray:
    """The image as a float32 array (no copy when it already is one), so every degradation computes in float32."""
    return np.asarray(image, dtype=np.float32)


def clip01(image: np.ndarray) -> np.ndarray:
    """Clip to [0, 1] and return float32, the range every degradation's output must stay in."""
    return np.clip(image, 0.0, 1.0).astype(np.float32, copy=False)


def draw_seed(rng: np.random.Generator) -> int:
    """A fresh integer seed from ``rng``, as a plain int so params stay JSON-serialisable."""
    return int(rng.integers(0, SEED_BOUND))


def luminance(image: np.ndarray) -> np.ndarray:
    """BT.601 luma of an HWC RGB image as an HW1 array, so it broadcasts back over the channels."""
    image = np.asarray(image)
    weights = LUMA if image.dtype == np.float32 else LUMA.astype(image.dtype)
    return (image @ weights)[..., None]


def reflect_pad(image: np.ndarray, pad_y: int, pad_x: int) -> np.ndarray:
    """Pad the two spatial axes by mirror reflection without repeating the edge (numpy 'reflect', torch 'reflect')."""
    widths = [(pad_y, pad_y), (pad_x, pad_x)] + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, widths, mode="reflect")


def convolve(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve every channel with a 2-D odd-sized kernel via FFT, borders reflected, so the output keeps its size.

    This is a true convolution (the kernel is flipped), matching the textbook blur model ``y = k * x``; the torch
    twin in ``torch_ops`` flips the kernel before its cross-correlating conv2d so the two agree exactly. The
    reflect-padded image is transformed at the next fast length of its own size, not of the full linear
    convolution: circular wrap-around then only touches the first ``k - 1`` outputs, which 'valid' discards.
    """
    image = as_image(image)
    kernel = np.asarray(kernel, dtype=np.float32)
    kh, kw = kernel.shape
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"kernel must have odd sides, got {kernel.shape}")
    padded = reflect_pad(image, kh // 2, kw // 2)
    hp, wp = padded.shape[0], padded.shape[1]
    shape = (sfft.next_fast_len(hp, real=True), sfft.next_fast_len(wp, real=True))
    spectrum = sfft.rfft2(padded, s=shape, axes=(0, 1)) * (
        sfft.rfft2(kernel, s=shape) if image.ndim == 2 else sfft.rfft2(kernel, s=shape)[:, :, None]
    )
    full = sfft.irfft2(spectrum, s=shape, axes=(0, 1))
    return np.ascontiguousarray(full[kh - 1 : hp, kw - 1 : wp], dtype=np.float32)
