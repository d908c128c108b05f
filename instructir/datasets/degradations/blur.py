"""Blur: Gaussian (isotropic or anisotropic, rotated) and camera-shake motion blur from a random 3-D trajectory.

Both convolve the image with a normalised kernel (sum 1, so flat regions keep their brightness), borders
reflected (``base.convolve``). Coordinates inside a kernel: ``x`` is the column offset (rightwards), ``y`` the row
offset (downwards) from the centre pixel.

Gaussian kernels follow Real-ESRGAN's generalised model: covariance ``R(theta) diag(sigma_x², sigma_y²) R(theta)ᵀ``
with ``sigma_x, sigma_y ~ U(0.2, 3)``, ``theta ~ U(-pi, pi)``, isotropic (``sigma_y = sigma_x``) with
probability 0.4, and an odd size from 7 to 21 that is at least ``2·ceil(2·sigma_max) + 1`` so the kernel is not
cut to a box.

Motion kernels follow the idea of Boracchi & Foi (2012) and KAIR's ``blurkernel_synthesis``: a camera shakes along
a random 3-D path during the exposure, the path is projected onto the image plane and rasterised, and the time
spent at each pixel becomes the kernel's weight. Our path (:func:`camera_trajectory`) has a Brownian velocity
(``jitter`` sets how erratic: 0 gives a straight line) plus rare sudden jerks; it is projected orthographically
(depth dropped), scaled to a bounding-box extent of ``length`` pixels, centred on its centre of mass (so the blur
does not shift the image) and splatted bilinearly onto a ``size x size`` grid (37 by default).
"""

from __future__ import annotations

import math

import numpy as np

from instructir.datasets.degradations.base import Degradation, Params, as_image, clip01, convolve, draw_seed

GAUSSIAN_SIGMA_RANGE = (0.2, 3.0)
GAUSSIAN_SIZE_RANGE = (7, 21)
ISOTROPIC_PROBABILITY = 0.4
MOTION_KERNEL_SIZE = 37
MOTION_STEPS = 250
MOTION_MIN_LENGTH = 5.0
JITTER_RANGE = (0.0, 1.0)


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """A ``size x size`` Gaussian kernel (odd size, sum 1) with std ``sigma_x`` along the axis at angle ``theta``.

    ``theta`` (radians) turns the ``sigma_x`` axis from +x (columns) towards +y (rows, downwards); ``sigma_y`` is the
    std across it.
    """
    if size % 2 == 0 or size < 1:
        raise ValueError(f"kernel size must be a positive odd integer, got {size}")
    half = size // 2
    y, x = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    c, s = math.cos(theta), math.sin(theta)
    u = c * x + s * y  # coordinate along the sigma_x axis
    v = -s * x + c * y  # coordinate along the sigma_y axis
    kernel = np.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))
    return (kernel / kernel.sum()).astype(np.float32)


def gaussian_covariance(sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """The 2x2 (x, y) covariance of :func:`gaussian_kernel` before truncation, for checks and analysis."""
    c, s = math.cos(theta), math.sin(theta)
    rotation = np.array([[c, -s], [s, c]])
    return rotation @ np.diag([sigma_x**2, sigma_y**2]) @ rotation.T


def min_gaussian_size(sigma_x: float, sigma_y: float) -> int:
    """Smallest odd size covering ±2 sigma of the wider axis (and at least 7)."""
    return max(GAUSSIAN_SIZE_RANGE[0], 2 * math.ceil(2.0 * max(sigma_x, sigma_y)) + 1)


def apply_gaussian_blur(image: np.ndarray, params: Params) -> np.ndarray:
    """Convolve with the Gaussian kernel of ``params`` (size, sigma_x, sigma_y, theta)."""
    kernel = gaussian_kernel(int(params["size"]), params["sigma_x"], params["sigma_y"], params["theta"])
    return clip01(convolve(as_image(image), kernel))


def sample_gaussian_blur(rng: np.random.Generator) -> Params:
    """Training parameters: sigmas ~ U(0.2, 3), theta ~ U(-pi, pi), isotropic with p 0.4, odd size in 7..21."""
    sigma_x = float(rng.uniform(*GAUSSIAN_SIGMA_RANGE))
    if rng.random() < ISOTROPIC_PROBABILITY:
        sigma_y, theta = sigma_x, 0.0
    else:
        sigma_y = float(rng.uniform(*GAUSSIAN_SIGMA_RANGE))
        theta = float(rng.uniform(-math.pi, math.pi))
    low = min_gaussian_size(sigma_x, sigma_y)
    size = int(2 * rng.integers(low // 2, GAUSSIAN_SIZE_RANGE[1] // 2 + 1) + 1)
    return {"size": size, "sigma_x": sigma_x, "sigma_y": sigma_y, "theta": theta}


def camera_trajectory(rng: np.random.Generator, n_steps: int = MOTION_STEPS, jitter: float = 0.5) -> np.ndarray:
    """Positions (n_steps, 3) of a shaking camera: a mostly in-plane heading plus Brownian velocity and rare jerks."""
    phi = rng.uniform(-math.pi, math.pi)
    heading = np.array([math.cos(phi), math.sin(phi), 0.5 * rng.standard_normal()])
    heading /= np.linalg.norm(heading)
    # Brownian velocity: by the end of the exposure the random part has std ~ 4 * jitter (the heading has norm 1).
    acceleration = rng.standard_normal((n_steps, 3)) * (4.0 * jitter / math.sqrt(n_steps))
    # Sudden jerks: about 2 per exposure at jitter 1, each a velocity kick of std 2 * jitter.
    jerks = (rng.random(n_steps) < 2.0 * jitter / n_steps)[:, None] * rng.standard_normal((n_steps, 3))
    velocity = heading + np.cumsum(acceleration + 2.0 * jitter * jerks, axis=0)
    return np.cumsum(velocity, axis=0) / n_steps


def rasterise_path(points: np.ndarray, size: int, length: float) -> np.ndarray:
    """Splat a 2-D path (n, 2 as x, y) bilinearly onto a ``size x size`` kernel, scaled to extent ``length`` px."""
    points = points - points.mean(axis=0)  # centre of mass at the kernel's centre pixel
    extent = float(np.ptp(points, axis=0).max())
    reach = float(np.abs(points).max())
    room = (size - 3) / 2.0  # keep one free pixel between the path and the border
    scale = 0.0 if extent < 1e-12 else min(length / extent, room / reach)
    coords = points * scale + (size - 1) / 2.0
    x0 = np.floor(coords[:, 0]).astype(np.int64)
    y0 = np.floor(coords[:, 1]).astype(np.int64)
    fx = coords[:, 0] - x0
    fy = coords[:, 1] - y0
    kernel = np.zeros((size, size), dtype=np.float64)
    for dy, dx, weight in (
        (0, 0, (1 - fx) * (1 - fy)),
        (0, 1, fx * (1 - fy)),
        (1, 0, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        np.add.at(kernel, (y0 + dy, x0 + dx), weight)
    return (kernel / kernel.sum()).astype(np.float32)


def motion_kernel(
    size: int = MOTION_KERNEL_SIZE,
    rng_or_seed: np.random.Generator | int = 0,
    length: float | None = None,
    jitter: float = 0.5,
    n_steps: int = MOTION_STEPS,
) -> np.ndarray:
    """A camera-shake kernel (odd ``size``, sum 1, nonnegative) from a random 3-D trajectory.

    ``length`` is the path's bounding-box extent in pixels (default ``size - 3``; shrunk if the path, centred on its
    centre of mass, would not fit), ``jitter`` in [0, 1] how erratic it is, ``n_steps`` its time samples.
    """
    if size % 2 == 0 or size < 5:
        raise ValueError(f"motion kernel size must be an odd integer >= 5, got {size}")
    rng = rng_or_seed if isinstance(rng_or_seed, np.random.Generator) else np.random.default_rng(int(rng_or_seed))
    path = camera_trajectory(rng, n_steps=n_steps, jitter=jitter)
    return rasterise_path(path[:, :2], size, float(size - 3) if length is None else float(length))


def motion_kernel_from_params(params: Params) -> np.ndarray:
    """The kernel that ``motion_blur`` params describe (size, seed, length, jitter, steps)."""
    return motion_kernel(
        int(params["size"]),
        int(params["seed"]),
        length=float(params["length"]),
        jitter=float(params["jitter"]),
        n_steps=int(params.get("steps", MOTION_STEPS)),
    )


def apply_motion_blur(image: np.ndarray, params: Params) -> np.ndarray:
    """Convolve with the camera-shake kernel of ``params``."""
    return clip01(convolve(as_image(image), motion_kernel_from_params(params)))


def sample_motion_blur(rng: np.random.Generator, size: int = MOTION_KERNEL_SIZE) -> Params:
    """Training parameters: a 37x37 kernel (``size`` may be any odd 15..37), length ~ U(5, size-3), jitter ~ U(0, 1)."""
    return {
        "size": int(size),
        "length": float(rng.uniform(MOTION_MIN_LENGTH, size - 3)),
        "jitter": float(rng.uniform(*JITTER_RANGE)),
        "steps": MOTION_STEPS,
        "seed": draw_seed(rng),
    }


gaussian_blur = Degradation(
    name="gaussian_blur",
    apply=apply_gaussian_blur,
    sample_params=sample_gaussian_blur,
    description="isotropic or anisotropic rotated Gaussian blur, sigmas 0.2-3 px, kernel 7-21 px",
)

motion_blur = Degradation(
    name="motion_blur",
    apply=apply_motion_blur,
    sample_params=sample_motion_blur,
    description="camera-shake blur from a random 3-D trajectory rasterised into a 37x37 kernel, length 5-34 px",
)
