"""Augmentations of a clean training crop, applied before it is degraded, so the pair stays consistent.

With a handful of photos a network learns each photo's own colours and framing and "restores" a new photo towards
them (the default model darkened and shifted the colours of its held-out photo for blur, x2 and colour-cast
requests while improving the photos it trained on). A quarter turn and a mild change of exposure, white balance and
gamma make every crop a slightly different photo, so what the network can learn is the damage, not the photo.
Shuffling the colour channels goes further: a photo's colours stop being something to memorise at all (the
damage of every task but the colour cast is the same in each channel, and the cast is applied after the shuffle).
"""

from __future__ import annotations

import itertools

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


def shuffle_channels(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``image`` as it is for half the draws, with its channels in one of the five other orders for the rest."""
    if rng.random() < 0.5:
        return image
    orders = [order for order in itertools.permutations(range(3)) if order != (0, 1, 2)]
    return image[..., list(orders[int(rng.integers(len(orders)))])]


def augment_clean(image: np.ndarray, rng: np.random.Generator, shuffle: bool = False) -> np.ndarray:
    """A quarter turn, the photometric jitter and, with ``shuffle``, a channel shuffle: one pair's clean target.

    Without ``shuffle`` the generator is drawn from exactly as before the shuffle existed, so older recipes rerun
    to the same crops.
    """
    image = photometric_jitter(quarter_turn(image, rng), rng)
    if shuffle:
        image = shuffle_channels(image, rng)
    return np.ascontiguousarray(image)
