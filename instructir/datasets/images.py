"""Decoding images from anywhere into one form, RGB float32 in [0, 1], and refusing broken ones with a clear reason.

Every image in the toolkit passes through :func:`load_image`, so a dataset build over thousands of files found on
disk can skip the few bad ones (truncated downloads, renamed text files, decompression bombs) and say why, instead
of crashing or silently training on garbage. Refusals are :class:`ImageError` with a short ``reason`` that a
summary can count.

Conversion rules, per Pillow mode:

* 8-bit RGB, grey (``L``, ``1``), ``CMYK``, ``YCbCr``: converted to RGB, divided by 255. No colour management:
  embedded ICC profiles are ignored and the pixels are taken as sRGB.
* Transparency (``RGBA``, ``LA``, palette images with a transparent colour): composited onto white, the way
  most viewers show a transparent image on a page; restoration models have no alpha channel.
* 16-bit grey (``I;16*``, ``I``): divided by 65535 without passing through 8 bits; ``I`` values above 65535 clip.
* 16-bit RGB(A) PNG: Pillow keeps only the high byte of each sample, so the file is decoded a second time
  keeping the low byte and the two are combined; full 16-bit precision survives.
* Float (``F``, e.g. float TIFF): taken as intensities in [0, 1]; NaN becomes 0 and values outside clip.
* EXIF orientation is applied, so a phone photo comes out the way it was held.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

_ORIENTATION_TAG = 0x0112
_GREY_16 = ("I;16", "I;16L", "I;16B", "I;16N")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_TO_RGB_MODES = ("RGB", "1", "L", "CMYK", "YCbCr", "RGBX", "HSV")


class ImageError(ValueError):
    """An image that cannot be used, with a machine-readable ``reason`` and a message saying what to do."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def __reduce__(self):
        # Keeps the error intact when it crosses a process boundary (multiprocessing pools, data loader workers).
        return (type(self), (self.reason, str(self)))


def load_image(source: str | Path | bytes, max_pixels: int = 100_000_000) -> np.ndarray:
    """Decode a file or bytes to RGB float32 HxWx3 in [0, 1], refusing broken or oversized images with ImageError.

    The pixel count is checked from the header before any pixel data is decoded. Pillow's own decompression-bomb
    guard is subsumed: its warning is replaced by the ``max_pixels`` check, and its hard error (more than twice
    ``PIL.Image.MAX_IMAGE_PIXELS``) is reported as ``too_large`` whatever ``max_pixels`` says.
    """
    label = _label(source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = _open(source, label)
        with image:
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(
                    "too_large",
                    f"{label}: {width}x{height} is {width * height:,} pixels, over the limit of {max_pixels:,}; "
                    "downscale it first or raise max_pixels if you trust the file",
                )
            tile = _sixteen_bit_tile(image)
            _decode(image, label)
            if tile is not None:
                pixels = _sixteen_bit_rgb(source, image, tile, label)
                if pixels is not None:
                    return _composite(pixels)
            return _to_rgb(_oriented(image), label)


def rgb_array(image: Image.Image) -> np.ndarray:
    """A decoded 8-bit image (a dataset row's PNG) as float32 RGB in [0, 1]."""
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Quantise a [0, 1] float image to uint8 by rounding to the nearest level, so float -> uint8 -> float is exact."""
    array = np.asarray(image)
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"to_uint8 expects a float image in [0, 1] or uint8, got {array.dtype}")
    return np.clip(np.rint(np.nan_to_num(array, nan=0.0) * 255.0), 0, 255).astype(np.uint8)


# What ``encode_image`` writes for each file suffix: Pillow's format name and its save options. JPEG keeps full
# chroma resolution (no 4:2:0 subsampling, which would blur the colour detail a restoration just recovered) and
# WebP is lossless.
OUTPUT_FORMATS: dict[str, tuple[str, dict[str, Any]]] = {
    ".png": ("PNG", {"compress_level": 6}),
    ".jpg": ("JPEG", {"quality": 95, "subsampling": 0}),
    ".jpeg": ("JPEG", {"quality": 95, "subsampling": 0}),
    ".webp": ("WEBP", {"lossless": True}),
    ".tif": ("TIFF", {"compression": "tiff_deflate"}),
    ".tiff": ("TIFF", {"compression": "tiff_deflate"}),
}


def output_format(suffix: str) -> tuple[str, dict[str, Any]]:
    """Pillow's format name and save options for a file suffix (any case), or ValueError listing the suffixes."""
    if suffix.lower() not in OUTPUT_FORMATS:
        raise ValueError(f"cannot write {suffix!r} images; use one of {', '.join(OUTPUT_FORMATS)}")
    return OUTPUT_FORMATS[suffix.lower()]


def encode_image(image: np.ndarray, suffix: str = ".png") -> bytes:
    """Encode a float [0, 1] or uint8 image (HxW, HxWx1 or HxWx3) in the format ``suffix`` names (OUTPUT_FORMATS).

    No metadata and fixed encoder settings, so the same array always gives the same bytes.
    """
    format_name, options = output_format(suffix)
    array = to_uint8(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ValueError(f"encode_image expects HxW or HxWx3, got shape {array.shape}")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format=format_name, **options)
    return buffer.getvalue()


def encode_png(image: np.ndarray) -> bytes:
    """Encode a float [0, 1] or uint8 image as PNG, the lossless format datasets store (see ``encode_image``)."""
    return encode_image(image, ".png")


def crop_to_multiple(image: np.ndarray, m: int = 16) -> np.ndarray:
    """Crop the bottom and right edges to multiples of ``m``, as a network that downsamples ``m``-fold needs.

    Returns a view of ``image``; copy it before writing to it.
    """
    height, width = image.shape[:2]
    if height < m or width < m:
        raise ImageError("too_small", f"{width}x{height} is smaller than {m}x{m}; use images at least {m}px a side")
    return image[: height - height % m, : width - width % m]


def random_crop(image: np.ndarray, size: int | tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A ``size`` (side, or (height, width)) crop at a position drawn from ``rng``, for reproducible training patches.

    Works for any number of channels (e.g. a clean and a degraded image stacked on the last axis). Returns a view.
    """
    crop_height, crop_width = (size, size) if isinstance(size, int) else size
    height, width = image.shape[:2]
    if height < crop_height or width < crop_width:
        raise ImageError(
            "too_small",
            f"{width}x{height} is smaller than the {crop_width}x{crop_height} crop; "
            "use larger images or a smaller patch",
        )
    top = int(rng.integers(0, height - crop_height + 1))
    left = int(rng.integers(0, width - crop_width + 1))
    return image[top : top + crop_height, left : left + crop_width]


def _label(source: str | Path | bytes) -> str:
    if isinstance(source, bytes | bytearray | memoryview):
        return f"<{len(source)} bytes>"
    return str(source)


def _open(source: str | Path | bytes, label: str) -> Image.Image:
    """Open lazily (header only), turning every failure into an ImageError."""
    if isinstance(source, bytes | bytearray | memoryview):
        if len(source) == 0:
            raise ImageError("unreadable", f"{label}: no data (0 bytes); the file was probably not written fully")
        stream = io.BytesIO(bytes(source))
    else:
        path = Path(source)
        if not path.exists():
            raise ImageError("not_found", f"{label}: no such file; check the path")
        if not path.is_file():
            raise ImageError("unreadable", f"{label}: not a regular file; give the path of an image file")
        if path.stat().st_size == 0:
            raise ImageError("unreadable", f"{label}: empty file (0 bytes); re-download or re-export it")
        stream = path
    try:
        return Image.open(stream)
    except Image.DecompressionBombError as error:
        raise ImageError("too_large", _bomb_message(label, error)) from error
    except UnidentifiedImageError as error:
        raise ImageError(
            "unreadable", f"{label}: not an image, or a format Pillow cannot read; check the file or convert it to PNG"
        ) from error
    except PermissionError as error:
        raise ImageError("unreadable", f"{label}: cannot read the file ({error}); check its permissions") from error
    except Exception as error:  # Pillow's plugins also raise SyntaxError, struct.error, ValueError, ...
        raise _decode_error(error, label) from error


def _bomb_message(label: str, error: BaseException) -> str:
    return f"{label}: refused by Pillow's decompression-bomb guard ({error}); use a smaller image"


def _decode(image: Image.Image, label: str) -> None:
    """Decode the pixel data now, so truncation and corruption surface here as ImageError."""
    try:
        image.load()
    except Image.DecompressionBombError as error:
        raise ImageError("too_large", _bomb_message(label, error)) from error
    except Exception as error:
        raise _decode_error(error, label) from error


def _truncation(error: BaseException) -> bool:
    text = str(error).lower()
    return isinstance(error, EOFError) or any(word in text for word in ("truncated", "premature", "broken data"))


def _decode_error(error: BaseException, label: str) -> ImageError:
    if _truncation(error):
        return ImageError("truncated", f"{label}: the file ends early ({error}); re-download or re-export it")
    return ImageError("unreadable", f"{label}: corrupt image data ({type(error).__name__}: {error}); replace the file")


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(_ORIENTATION_TAG, 1))
    except Exception:  # a broken EXIF block does not make the pixels unusable
        return 1


def _oriented(image: Image.Image) -> Image.Image:
    if _orientation(image) in (2, 3, 4, 5, 6, 7, 8):
        return ImageOps.exif_transpose(image)
    return image


def _sixteen_bit_tile(image: Image.Image):
    """The decoder tile of a 16-bit RGB(A) PNG (read before decoding, which consumes it), or None."""
    if image.format != "PNG" or len(image.tile) != 1:
        return None
    tile = image.tile[0]
    rawmode = tile.args if isinstance(tile.args, str) else tile.args[0]
    return tile if rawmode in ("RGB;16B", "RGBA;16B") else None


def _sixteen_bit_rgb(source: str | Path | bytes, image: Image.Image, tile, label: str) -> np.ndarray | None:
    """Full-precision RGB(A) float pixels of a decoded 16-bit colour PNG, oriented; None if that cannot be done.

    Pillow unpacks 16-bit colour samples to 8 bits by keeping the high byte. Decoding the same stream again with
    the little-endian unpacker keeps the low byte instead; high * 256 + low is the original sample.
    """
    rawmode = tile.args if isinstance(tile.args, str) else tile.args[0]
    low_rawmode = rawmode.replace(";16B", ";16L")
    args = low_rawmode if isinstance(tile.args, str) else (low_rawmode, *tile.args[1:])
    with _open(source, label) as second:
        second.tile = [tile._replace(args=args)]
        try:
            second.load()
        except ValueError:  # Pillow has no low-byte unpacker for this layout: fall back to 8 bits
            return None
        except Exception as error:
            raise _decode_error(error, label) from error
        high = np.asarray(_oriented(image), dtype=np.uint16)
        low = np.asarray(_oriented(second), dtype=np.uint16)
    return ((high << 8) | low).astype(np.float32) / 65535.0


def _composite(pixels: np.ndarray) -> np.ndarray:
    """RGB or RGBA float pixels to RGB, with transparent areas composited onto white."""
    if pixels.shape[2] == 4:
        alpha = pixels[:, :, 3:4]
        pixels = pixels[:, :, :3] * alpha + (1.0 - alpha)
    return np.ascontiguousarray(pixels, dtype=np.float32)


def _grey(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(values.astype(np.float32)[:, :, None], 3, axis=2))


def _to_rgb(image: Image.Image, label: str) -> np.ndarray:
    mode = image.mode
    if mode in _GREY_16:
        return _grey(np.asarray(image, dtype=np.float32) / 65535.0)
    if mode == "I":
        return _grey(np.clip(np.asarray(image, dtype=np.float64) / 65535.0, 0.0, 1.0))
    if mode == "F":
        values = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        return _grey(np.clip(values, 0.0, 1.0))
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        return _composite(np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0)
    if mode in (*_TO_RGB_MODES, "P"):
        return rgb_array(image)
    try:
        converted = image.convert("RGB")
    except Exception as error:
        raise ImageError(
            "unsupported_mode", f"{label}: pixel mode {mode!r} cannot be converted to RGB; convert it to PNG or TIFF"
        ) from error
    return np.asarray(converted, dtype=np.float32) / 255.0
