"""Rain streaks: sparse random drops smeared along a line by motion blur, added to the image.

The streak layer is built in three steps: (1) drops — each pixel seeds a drop with probability ``density``, with a
random intensity ``v ~ U(0.5, 1)``; (2) motion blur of the drop field with an anti-aliased line kernel of
``length`` px and ``width`` px at ``angle`` degrees; (3) scaling so that an isolated streak peaks at
``brightness · v`` (we normalise by the kernel's peak rather than use the literature's length-dependent weight
``0.04·length + 0.2``, so length and brightness stay independent), clipped to [0, 1]. The layer is the same on all
channels (white rain) and is added to the image: ``out = clip(I + S)``.

Angles are in degrees, counter-clockwise from the +x axis as seen on screen: 90 is vertical rain, 80 leans right
at the top, 100 leans left. Training: density ~ U(0.001, 0.005), length ~ U(20, 60), angle ~ U(80, 100),
width ~ U(1, 2), brightness ~ U(0.3, 0.8).
"""

from __future__ import annotations

import math

import numpy as np

from instructir.datasets.degradations.base import Degradation, Params, as_image, clip01, convolve, draw_seed

DENSITY_RANGE = (0.001, 0.005)
LENGTH_RANGE = (20.0, 60.0)
ANGLE_RANGE = (80.0, 100.0)
WIDTH_RANGE = (1.0, 2.0)
BRIGHTNESS_RANGE = (0.3, 0.8)
DROP_INTENSITY_RANGE = (0.5, 1.0)


def line_kernel_size(length: float, width: float = 1.0) -> int:
    """Smallest odd size that holds a line kernel of ``length`` and ``width`` at any angle."""
    radius = math.hypot(length / 2.0 + 0.5, width / 2.0 + 0.5)
    return 2 * math.ceil(radius) + 1


def line_kernel(length: float, angle_deg: float, width: float = 1.0, size: int | None = None) -> np.ndarray:
    """An anti-aliased straight-line blur kernel (sum 1): ``length`` px long, ``width`` px thick, at ``angle_deg``.

    A pixel's weight is its coverage along the line (``clip(length/2 + 0.5 − |along|, 0, 1)``) times across it
    (``clip(width/2 + 0.5 − |across|, 0, 1)``); ``size`` (odd) defaults to :func:`line_kernel_size`.
    """
    size = line_kernel_size(length, width) if size is None else int(size)
    if size % 2 == 0:
        raise ValueError(f"kernel size must be odd, got {size}")
    half = size // 2
    y, x = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    a = math.radians(angle_deg)
    along = x * math.cos(a) - y * math.sin(a)  # rows grow downwards, so "up" on screen is -y
    across = x * math.sin(a) + y * math.cos(a)
    kernel = np.clip(length / 2.0 + 0.5 - np.abs(along), 0.0, 1.0) * np.clip(width / 2.0 + 0.5 - np.abs(across), 0, 1)
    return (kernel / kernel.sum()).astype(np.float32)


def drop_field(height: int, width: int, density: float, rng: np.random.Generator) -> np.ndarray:
    """(H, W) float32 field of drops: zero except a ``density`` fraction of pixels with intensity ~ U(0.5, 1)."""
    hits = rng.random((height, width)) < density
    field = np.zeros((height, width), dtype=np.float32)
    field[hits] = rng.uniform(*DROP_INTENSITY_RANGE, size=int(hits.sum()))
    return field


def streaks_from_drops(drops: np.ndarray, length: float, angle: float, width: float, brightness: float) -> np.ndarray:
    """Deterministic core: blur a drop field along the line and scale so one streak peaks at brightness · drop."""
    kernel = line_kernel(length, angle, width)
    smeared = convolve(np.asarray(drops, dtype=np.float32), kernel)
    return clip01(smeared * np.float32(brightness / float(kernel.max())))


def streak_layer(height: int, width: int, params: Params) -> np.ndarray:
    """The (H, W) float32 streak layer in [0, 1] of ``params`` (density, length, angle, width, brightness, seed)."""
    drops = drop_field(height, width, float(params["density"]), np.random.default_rng(int(params["seed"])))
    return streaks_from_drops(
        drops, float(params["length"]), float(params["angle"]), float(params.get("width", 1.0)), params["brightness"]
    )


def add_streaks(image: np.ndarray, streaks: np.ndarray) -> np.ndarray:
    """Add an (H, W) streak layer to every channel and clip."""
    return clip01(as_image(image) + np.asarray(streaks, dtype=np.float32)[..., None])


def apply_rain(image: np.ndarray, params: Params) -> np.ndarray:
    """Add the rain streaks of ``params`` to ``image``."""
    image = as_image(image)
    return add_streaks(image, streak_layer(image.shape[0], image.shape[1], params))


def sample_rain(rng: np.random.Generator) -> Params:
    """Training parameters: density 0.001-0.005, length 20-60 px, angle 80-100°, width 1-2 px, brightness 0.3-0.8."""
    return {
        "density": float(rng.uniform(*DENSITY_RANGE)),
        "length": float(rng.uniform(*LENGTH_RANGE)),
        "angle": float(rng.uniform(*ANGLE_RANGE)),
        "width": float(rng.uniform(*WIDTH_RANGE)),
        "brightness": float(rng.uniform(*BRIGHTNESS_RANGE)),
        "seed": draw_seed(rng),
    }


rain = Degradation(
    name="rain",
    apply=apply_rain,
    sample_params=sample_rain,
    description="additive rain streaks: sparse drops motion-blurred along a 20-60 px line at 80-100 degrees",
)
