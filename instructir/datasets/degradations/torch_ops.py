"""Batched torch twins of the pixel-wise and convolutional degradations, for on-device (GPU) degradation.

Every function takes a batch ``(B, 3, H, W)`` in [0, 1] on any device and PER-SAMPLE parameters: a float (shared by
the batch), a sequence or a 1-D tensor of length B. The random fields (noise, depth, rain drops) can be passed in
explicitly — then the result matches the numpy degradation's deterministic core on the same field to float
precision — or are drawn on the batch's device from ``generator`` (a ``torch.Generator`` on that device; the
numpy and torch random streams differ, so only the distributions match then).

Convolutions (:func:`blur`) are true convolutions with reflect padding, exactly as ``base.convolve``: per-sample
kernels ``(B, k, k)`` run as one grouped ``conv2d`` over ``B·3`` channels. Gaussian kernels are built on the device
from per-sample sigmas (:func:`gaussian_kernels`); motion kernels come from numpy's ``motion_kernel``
(:func:`motion_kernels`), rain's line kernels are built on the device (:func:`line_kernels`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from instructir.datasets.degradations import haze as np_haze
from instructir.datasets.degradations import rain as np_rain  # the submodules (see the package's __init__)
from instructir.datasets.degradations.base import Params
from instructir.datasets.degradations.blur import motion_kernel_from_params

PerSample = float | int | bool | Sequence[float] | torch.Tensor


def per_sample(value: PerSample, batch: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``value`` as a 1-D tensor of length B on the batch's device (a scalar is broadcast to every sample)."""
    size = batch.shape[0]
    tensor = torch.as_tensor(value, device=batch.device, dtype=dtype or batch.dtype)
    if tensor.ndim == 0:
        return tensor.expand(size)
    if tensor.shape != (size,):
        raise ValueError(f"per-sample parameter must have shape ({size},), got {tuple(tensor.shape)}")
    return tensor


def _check_batch(batch: torch.Tensor) -> None:
    """Reject anything that is not a (B, C, H, W) tensor."""
    if batch.ndim != 4:
        raise ValueError(f"expected a (B, C, H, W) batch, got shape {tuple(batch.shape)}")


def _as_map(field: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """A (B, H, W) or (B, 1, H, W) per-sample map as (B, 1, H, W) on the batch's device and dtype."""
    field = field.to(device=batch.device, dtype=batch.dtype)
    return field.unsqueeze(1) if field.ndim == 3 else field


def convolve(batch: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Convolve each sample's channels with its own odd-sized kernel ((B, kh, kw) or one (kh, kw)), reflect borders."""
    _check_batch(batch)
    b, c, h, w = batch.shape
    kernels = kernels.to(device=batch.device, dtype=batch.dtype)
    if kernels.ndim == 2:
        kernels = kernels.expand(b, *kernels.shape)
    kh, kw = kernels.shape[-2:]
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"kernels must have odd sides, got {tuple(kernels.shape)}")
    padded = F.pad(batch.reshape(1, b * c, h, w), (kw // 2, kw // 2, kh // 2, kh // 2), mode="reflect")
    # conv2d cross-correlates, so flip the kernels to get the true convolution numpy computes.
    weight = kernels.flip(-2, -1).repeat_interleave(c, dim=0).unsqueeze(1)
    return F.conv2d(padded, weight, groups=b * c).reshape(b, c, h, w)


def blur(batch: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Blur each sample with its own normalised kernel (Gaussian or motion) and clip to [0, 1]."""
    return convolve(batch, kernels).clamp(0.0, 1.0)


def stack_kernels(kernels: Sequence[np.ndarray], device: torch.device | str | None = None) -> torch.Tensor:
    """Stack odd-sized numpy kernels into (B, k, k), zero-padding each around its centre to the largest size."""
    size = max(max(k.shape) for k in kernels)
    out = np.zeros((len(kernels), size, size), dtype=np.float32)
    for i, kernel in enumerate(kernels):
        kh, kw = kernel.shape
        top, left = (size - kh) // 2, (size - kw) // 2
        out[i, top : top + kh, left : left + kw] = kernel
    return torch.from_numpy(out).to(device)


def _grid(size: int, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centred (y, x) pixel offsets of a size x size kernel, on the batch's device."""
    half = size // 2
    offsets = torch.arange(-half, half + 1, device=batch.device, dtype=batch.dtype)
    return torch.meshgrid(offsets, offsets, indexing="ij")


def gaussian_kernels(
    batch: torch.Tensor, sigma_x: PerSample, sigma_y: PerSample, theta: PerSample, size: PerSample
) -> torch.Tensor:
    """Per-sample Gaussian kernels (B, S, S), S the largest size; each is cut to its own odd size, then sums to 1."""
    sizes = per_sample(size, batch, dtype=torch.long)
    if bool((sizes % 2 == 0).any()) or bool((sizes < 1).any()):
        raise ValueError(f"kernel sizes must be positive odd integers, got {sizes.tolist()}")
    largest = int(sizes.max())
    y, x = _grid(largest, batch)
    sx, sy, th = (per_sample(v, batch)[:, None, None] for v in (sigma_x, sigma_y, theta))
    c, s = torch.cos(th), torch.sin(th)
    u = c * x + s * y
    v = -s * x + c * y
    kernels = torch.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))
    half = (sizes // 2).to(batch.dtype)[:, None, None]
    kernels = kernels * ((x.abs() <= half) & (y.abs() <= half))
    return kernels / kernels.sum(dim=(-2, -1), keepdim=True)


def gaussian_blur(
    batch: torch.Tensor, sigma_x: PerSample, sigma_y: PerSample, theta: PerSample, size: PerSample
) -> torch.Tensor:
    """Twin of ``blur.gaussian_blur``: per-sample anisotropic Gaussian blur."""
    return blur(batch, gaussian_kernels(batch, sigma_x, sigma_y, theta, size))


def motion_kernels(params: Sequence[Params], device: torch.device | str | None = None) -> torch.Tensor:
    """The (B, k, k) motion kernels that a list of ``motion_blur`` params describe (built by numpy, then stacked)."""
    return stack_kernels([motion_kernel_from_params(p) for p in params], device=device)


def motion_blur(batch: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Twin of ``blur.motion_blur`` for per-sample kernels from :func:`motion_kernels`."""
    return blur(batch, kernels)


def _normal(batch: torch.Tensor, generator: torch.Generator | None, channels: int | None = None) -> torch.Tensor:
    """A standard normal field shaped like the batch (optionally with another channel count), drawn on its device."""
    b, c, h, w = batch.shape
    shape = (b, c if channels is None else channels, h, w)
    return torch.randn(shape, generator=generator, device=batch.device, dtype=batch.dtype)


def gaussian_noise(
    batch: torch.Tensor,
    sigma: PerSample,
    grey: PerSample = False,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Twin of ``noise.gaussian_noise``: AWGN of per-sample ``sigma`` (0-255 scale); grey samples use channel 0."""
    _check_batch(batch)
    field = _normal(batch, generator) if noise is None else noise.to(device=batch.device, dtype=batch.dtype)
    greys = per_sample(grey, batch, dtype=torch.bool)[:, None, None, None]
    field = torch.where(greys, field[:, :1].expand_as(field), field)
    return (batch + per_sample(sigma, batch)[:, None, None, None] / 255.0 * field).clamp(0.0, 1.0)


def low_light(
    batch: torch.Tensor,
    gamma: PerSample,
    scale: PerSample,
    sigma: PerSample,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """Twin of ``lowlight.low_light``: ``clip(I**gamma * scale + sigma * n)`` with per-sample parameters."""
    _check_batch(batch)
    field = _normal(batch, generator) if noise is None else noise.to(device=batch.device, dtype=batch.dtype)
    g, s, n = (per_sample(v, batch)[:, None, None, None] for v in (gamma, scale, sigma))
    return (batch.clamp(0.0, 1.0).pow(g) * s + n * field).clamp(0.0, 1.0)


def _smooth_basis(n: int, batch: torch.Tensor) -> torch.Tensor:
    """Torch copy of ``haze.smooth_basis`` (same bumps, same widths) on the batch's device."""
    return torch.as_tensor(np_haze.smooth_basis(n, np_haze.DEPTH_GRID), device=batch.device, dtype=batch.dtype)


def _normalise01(maps: torch.Tensor) -> torch.Tensor:
    """Rescale each (B, H, W) map to span [0, 1] (constant maps become zeros)."""
    low = maps.amin(dim=(-2, -1), keepdim=True)
    span = maps.amax(dim=(-2, -1), keepdim=True) - low
    return torch.where(span > 0, (maps - low) / span.clamp_min(1e-12), torch.zeros_like(maps))


def synthetic_depth(batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, H, W) depth maps in [0, 1] drawn on the device, built like ``haze.synthetic_depth`` (smooth field + ramp)."""
    _check_batch(batch)
    b, _, h, w = batch.shape
    grid = np_haze.DEPTH_GRID
    coarse = torch.rand((b, grid, grid), generator=generator, device=batch.device, dtype=batch.dtype)
    low, high = np_haze.RAMP_WEIGHT_RANGE
    weight = low + (high - low) * torch.rand((b, 1, 1), generator=generator, device=batch.device, dtype=batch.dtype)
    field = _normalise01(_smooth_basis(h, batch) @ coarse @ _smooth_basis(w, batch).T)
    ramp = torch.linspace(1.0, 0.0, h, device=batch.device, dtype=batch.dtype)[None, :, None]
    return _normalise01(weight * ramp + (1.0 - weight) * field)


def haze(
    batch: torch.Tensor,
    airlight: PerSample,
    beta: PerSample,
    depth: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Twin of ``haze.haze``: ``J·t + A·(1 − t)``, ``t = exp(−beta·depth)``, depth (B, H, W) given or synthesised."""
    _check_batch(batch)
    depth_map = _as_map(synthetic_depth(batch, generator) if depth is None else depth, batch)
    a, b = (per_sample(v, batch)[:, None, None, None] for v in (airlight, beta))
    t = torch.exp(-b * depth_map)
    return (batch * t + a * (1.0 - t)).clamp(0.0, 1.0)


def line_kernels(batch: torch.Tensor, length: PerSample, angle: PerSample, width: PerSample = 1.0) -> torch.Tensor:
    """Per-sample line kernels (B, S, S), each as ``rain.line_kernel`` zero-padded to the largest needed size S."""
    lengths, angles, widths = (per_sample(v, batch) for v in (length, angle, width))
    pairs = zip(lengths.tolist(), widths.tolist(), strict=True)
    size = max(np_rain.line_kernel_size(float(ln), float(wd)) for ln, wd in pairs)
    y, x = _grid(size, batch)
    a = angles[:, None, None] * (math.pi / 180.0)
    along = x * torch.cos(a) - y * torch.sin(a)
    across = x * torch.sin(a) + y * torch.cos(a)
    half_length, half_width = lengths[:, None, None] / 2.0 + 0.5, widths[:, None, None] / 2.0 + 0.5
    kernels = (half_length - along.abs()).clamp(0.0, 1.0) * (half_width - across.abs()).clamp(0.0, 1.0)
    return kernels / kernels.sum(dim=(-2, -1), keepdim=True)


def drop_field(batch: torch.Tensor, density: PerSample, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, H, W) rain-drop fields drawn on the device, distributed like ``rain.drop_field``."""
    b, _, h, w = batch.shape
    hits = torch.rand((b, h, w), generator=generator, device=batch.device) < per_sample(density, batch)[:, None, None]
    low, high = np_rain.DROP_INTENSITY_RANGE
    values = low + (high - low) * torch.rand((b, h, w), generator=generator, device=batch.device, dtype=batch.dtype)
    return values * hits


def streak_layer(
    batch: torch.Tensor,
    drops: torch.Tensor,
    length: PerSample,
    angle: PerSample,
    width: PerSample,
    brightness: PerSample,
) -> torch.Tensor:
    """Twin of ``rain.streaks_from_drops``: (B, 1, H, W) streaks, drops smeared along each sample's line and scaled."""
    kernels = line_kernels(batch, length, angle, width)
    smeared = convolve(_as_map(drops, batch), kernels)
    gain = per_sample(brightness, batch)[:, None, None, None] / kernels.amax(dim=(-2, -1))[:, None, None, None]
    return (smeared * gain).clamp(0.0, 1.0)


def rain(
    batch: torch.Tensor,
    length: PerSample,
    angle: PerSample,
    brightness: PerSample,
    width: PerSample = 1.0,
    density: PerSample | None = None,
    drops: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Twin of ``rain.rain``: add per-sample streaks made from ``drops`` (B, H, W) or drops drawn at ``density``."""
    _check_batch(batch)
    if drops is None:
        if density is None:
            raise ValueError("rain needs either a drop field or a density to draw one")
        drops = drop_field(batch, density, generator)
    streaks = streak_layer(batch, drops, length, angle, width, brightness)
    return (batch + streaks).clamp(0.0, 1.0)
