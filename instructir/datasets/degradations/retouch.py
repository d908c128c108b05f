"""A bad retouch, the degradation behind the "enhance" task: it makes a photo look flat, off-colour or garish.

Four components, applied in this fixed order when present (a component whose params value is None is skipped):

- ``white_balance``: per-channel gains ``[r, g, b]`` from a temperature shift ``|t| ~ U(0.05, 0.15)`` with a
  random sign (warmer: red up, blue down; or cooler) and a tint ``u ~ U(-0.08, 0.08)`` (green): gains
  ``(1 + t, 1 + u, 1 − t)``.
- ``saturation``: ``Y + f·(I − Y)`` around the BT.601 luma ``Y``; ``f ~ U(0.2, 0.6)`` (washed out) or
  ``U(1.4, 2.0)`` (garish), each with probability 1/2.
- ``contrast``: ``m + c·(I − m)`` around the image's mean luma ``m``, ``c ~ U(0.4, 0.8)``.
- ``tone_curve``: a flattening curve ``black + (white − black)·I**gamma`` with lifted blacks ``black ~ U(0, 0.15)``,
  dimmed whites ``white ~ U(0.8, 1)`` and ``gamma ~ U(0.8, 1.25)``.

``sample_params`` enables one to three components, chosen at random.
"""

from __future__ import annotations

import numpy as np

from instructir.datasets.degradations.base import Degradation, Params, as_image, clip01, luminance

COMPONENTS = ("white_balance", "saturation", "contrast", "tone_curve")
TEMPERATURE_RANGE = (0.05, 0.15)  # magnitude; the sign is random
TINT_RANGE = (-0.08, 0.08)
DESATURATE_RANGE = (0.2, 0.6)
OVERSATURATE_RANGE = (1.4, 2.0)
CONTRAST_RANGE = (0.4, 0.8)
BLACK_RANGE = (0.0, 0.15)
WHITE_RANGE = (0.8, 1.0)
CURVE_GAMMA_RANGE = (0.8, 1.25)


def white_balance(image: np.ndarray, gains: list[float]) -> np.ndarray:
    """Multiply the R, G, B channels by ``gains``."""
    return clip01(as_image(image) * np.asarray(gains, dtype=np.float32))


def saturation(image: np.ndarray, factor: float) -> np.ndarray:
    """Scale the chroma around the luma by ``factor`` (<1 washes out, >1 oversaturates)."""
    image = as_image(image)
    y = luminance(image)
    return clip01(y + np.float32(factor) * (image - y))


def contrast(image: np.ndarray, factor: float) -> np.ndarray:
    """Scale deviations from the mean luma by ``factor`` (<1 flattens)."""
    image = as_image(image)
    mean = np.float32(luminance(image).mean())
    return clip01(mean + np.float32(factor) * (image - mean))


def tone_curve(image: np.ndarray, black: float, white: float, gamma: float) -> np.ndarray:
    """Map [0, 1] onto [black, white] through ``I**gamma``: lifted blacks and dimmed whites flatten the tones."""
    curved = np.power(np.clip(as_image(image), 0.0, 1.0), np.float32(gamma))
    return clip01(np.float32(black) + np.float32(white - black) * curved)


def apply_retouch(image: np.ndarray, params: Params) -> np.ndarray:
    """Apply the enabled components of ``params`` in the fixed order white balance, saturation, contrast, curve."""
    out = clip01(as_image(image))
    if params.get("white_balance") is not None:
        out = white_balance(out, params["white_balance"])
    if params.get("saturation") is not None:
        out = saturation(out, float(params["saturation"]))
    if params.get("contrast") is not None:
        out = contrast(out, float(params["contrast"]))
    curve = params.get("tone_curve")
    if curve is not None:
        out = tone_curve(out, float(curve["black"]), float(curve["white"]), float(curve["gamma"]))
    return out


def sample_retouch(rng: np.random.Generator) -> Params:
    """Training parameters: one to three of the four components, each with its own random strength."""
    count = int(rng.integers(1, 4))
    chosen = {COMPONENTS[i] for i in rng.choice(len(COMPONENTS), size=count, replace=False)}
    params: Params = dict.fromkeys(COMPONENTS)
    if "white_balance" in chosen:
        t = float(rng.uniform(*TEMPERATURE_RANGE)) * (1.0 if rng.random() < 0.5 else -1.0)
        u = float(rng.uniform(*TINT_RANGE))
        params["white_balance"] = [1.0 + t, 1.0 + u, 1.0 - t]
    if "saturation" in chosen:
        low_high = DESATURATE_RANGE if rng.random() < 0.5 else OVERSATURATE_RANGE
        params["saturation"] = float(rng.uniform(*low_high))
    if "contrast" in chosen:
        params["contrast"] = float(rng.uniform(*CONTRAST_RANGE))
    if "tone_curve" in chosen:
        params["tone_curve"] = {
            "black": float(rng.uniform(*BLACK_RANGE)),
            "white": float(rng.uniform(*WHITE_RANGE)),
            "gamma": float(rng.uniform(*CURVE_GAMMA_RANGE)),
        }
    return params


retouch = Degradation(
    name="retouch",
    apply=apply_retouch,
    sample_params=sample_retouch,
    description="bad retouch for enhancement: 1-3 of white-balance shift, (de)saturation, low contrast, flat curve",
)
