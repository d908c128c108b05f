"""Bicubic downsampling, the super-resolution degradation.

The image is cropped (top-left anchored) to a multiple of ``scale`` so the factor is exact, then each channel is
resized as a float ('F' mode) image with Pillow's bicubic filter (Keys cubic, a = −0.5, widened by the scale
when downsampling, i.e. antialiased like MATLAB's ``imresize``). InstructIR restores at the input's size, so by
default (``upsample_back``) the low-resolution image is resized back up with the same filter; the at most
``scale − 1`` rows/columns that the crop dropped at the bottom/right are then filled by edge replication, so the
output has exactly the input's size and stays pixel-aligned with it. With ``upsample_back=False`` the output is
the small (H // scale, W // scale) image. Training: scale uniform over {2, 3, 4}, upsample_back True.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from instructir.datasets.degradations.base import Degradation, Params, as_image, clip01
from instructir.datasets.images import crop_to_multiple

SCALES = (2, 3, 4)


def resize_bicubic(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize an HWC float image to (height, width) with Pillow's bicubic filter on float32 channels (unclipped)."""
    image = as_image(image)
    channels = [
        np.asarray(Image.fromarray(np.ascontiguousarray(image[:, :, c])).resize((width, height), Image.BICUBIC))
        for c in range(image.shape[2])
    ]
    return np.stack(channels, axis=2).astype(np.float32, copy=False)


def bicubic_down(image: np.ndarray, scale: int, upsample_back: bool = True) -> np.ndarray:
    """Downsample by an integer ``scale`` (after cropping to a multiple) and optionally resize back to full size."""
    image = as_image(image)
    scale = int(scale)
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    h, w = image.shape[0], image.shape[1]
    if h < scale or w < scale:
        raise ValueError(f"image {h}x{w} is smaller than the scale {scale}")
    cropped = crop_to_multiple(image, scale)
    ch, cw = cropped.shape[0], cropped.shape[1]
    small = clip01(resize_bicubic(cropped, ch // scale, cw // scale))
    if not upsample_back:
        return small
    up = clip01(resize_bicubic(small, ch, cw))
    return np.pad(up, ((0, h - ch), (0, w - cw), (0, 0)), mode="edge")


def apply_bicubic(image: np.ndarray, params: Params) -> np.ndarray:
    """Bicubic downsampling by ``params['scale']``, resized back unless ``params['upsample_back']`` is False."""
    return bicubic_down(image, int(params["scale"]), bool(params.get("upsample_back", True)))


def sample_bicubic(rng: np.random.Generator) -> Params:
    """Training parameters: scale uniform over {2, 3, 4}, upsample_back True (same-size pairs)."""
    return {"scale": int(rng.choice(SCALES)), "upsample_back": True}


bicubic_downsample = Degradation(
    name="bicubic_downsample",
    apply=apply_bicubic,
    sample_params=sample_bicubic,
    description="bicubic downsampling by 2, 3 or 4 (Pillow bicubic), resized back to the input size by default",
)
