"""JPEG compression artefacts: quantise to 8 bits (rounding), encode with Pillow's libjpeg at quality q, decode.

Training draws ``quality`` as an integer in 30..95. Pillow's defaults apply otherwise (4:2:0 chroma subsampling,
standard quantisation tables), as in most JPEG-artefact training pipelines.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from instructir.datasets.degradations.base import Degradation, Params, as_image
from instructir.datasets.images import to_uint8

QUALITY_RANGE = (30, 95)


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode as JPEG at ``quality`` (1-95) and decode back to float32 [0, 1]."""
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(as_image(image))).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.float32) / np.float32(255.0)


def apply_jpeg(image: np.ndarray, params: Params) -> np.ndarray:
    """JPEG-compress ``image`` at ``params['quality']``."""
    return jpeg_roundtrip(image, int(params["quality"]))


def sample_jpeg(rng: np.random.Generator) -> Params:
    """Training parameters: quality ~ U{30, ..., 95}."""
    return {"quality": int(rng.integers(QUALITY_RANGE[0], QUALITY_RANGE[1] + 1))}


jpeg = Degradation(
    name="jpeg",
    apply=apply_jpeg,
    sample_params=sample_jpeg,
    description="JPEG compression at quality 30-95 (8-bit rounding, Pillow libjpeg, 4:2:0 chroma)",
)
