"""Augmentations of a clean training crop, applied before it is degraded, so the pair stays consistent.

With a handful of photos a network learns each photo's own colours and framing and "restores" a new photo towards
them (the default model darkened and shifted the colours of its held-out photo for blur, x2 and colour-cast
requests while improving the photos it trained on). A quarter turn and a mild change of exposure, white balance and
gamma make every crop a slightly different photo, so what the network can learn is the damage, not the photo.
"""

from __future__ import annotations

import numpy as np

# Ranges of the photometric jitter: mild enough that a jittered photo still looks like an ordinary photo.
EXPOSURE = (0.75, 1.15)
CHANNEL_GAIN = (0.92, 1.08)
GAMMA = (0.8, 1.25)


def quarter_turn(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``image`` turned by 0, 90, 180 or 270 degrees."""
    return np.rot90(image, k=int(rng.integers(4)))


def photometric_jitter(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``image`` (HxWx3, float in [0, 1]) under a random exposure, per-channel gain and gamma, clipped to [0, 1]."""
    exposure = rng.uniform(*EXPOSURE)
    gains = rng.uniform(*CHANNEL_GAIN, size=3)
    gamma = rng.uniform(*GAMMA)
    scaled = np.clip(image * (exposure * gains).astype(np.float32), 0.0, 1.0)
    return np.power(scaled, np.float32(gamma)).astype(np.float32)


def augment_clean(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A quarter turn, then the photometric jitter: the clean target of one training pair."""
    return np.ascontiguousarray(photometric_jitter(quarter_turn(image, rng), rng))
