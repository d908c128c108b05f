"""Image decoding on real broken and unusual files: each is converted correctly or refused with the right reason."""

from __future__ import annotations

import io
import pickle
import resource
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from instructir.datasets.images import ImageError, crop_to_multiple, encode_png, load_image, random_crop, to_uint8


def noise_rgb(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def saved(image: Image.Image, path: Path, **options) -> Path:
    image.save(path, **options)
    return path


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def raw_png(width: int, height: int, bit_depth: int, colour_type: int, idat: bytes) -> bytes:
    """A PNG assembled chunk by chunk, for files Pillow cannot write (16-bit colour, lying headers)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def refused(source, reason: str, **options) -> ImageError:
    with pytest.raises(ImageError) as caught:
        load_image(source, **options)
    assert caught.value.reason == reason, str(caught.value)
    return caught.value


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_files_are_refused_as_truncated(tmp_path, fmt):
    data = encoded(Image.fromarray(noise_rgb()), fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    error = refused(path, "truncated")
    assert str(path) in str(error) and "re-download" in str(error)


def test_a_jpeg_cut_inside_its_header_is_truncated():
    data = encoded(Image.fromarray(noise_rgb()), "JPEG")
    refused(data[:30], "truncated")


def test_garbage_empty_and_missing_files_are_refused(tmp_path):
    garbage = tmp_path / "photo.png"
    garbage.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert "not an image" in str(refused(garbage, "unreadable"))
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    assert "0 bytes" in str(refused(empty, "unreadable"))
    refused(b"", "unreadable")
    refused(tmp_path / "nowhere.png", "not_found")
    refused(tmp_path, "unreadable")


def test_decoded_rgb_matches_the_pixels_and_is_float32_in_unit_range(tmp_path):
    pixels = noise_rgb()
    image = load_image(saved(Image.fromarray(pixels), tmp_path / "rgb.png"))
    assert image.dtype == np.float32 and image.shape == (48, 64, 3)
    np.testing.assert_array_equal(to_uint8(image), pixels)


def test_sixteen_bit_grey_png_keeps_full_precision(tmp_path):
    values = np.random.default_rng(2).integers(0, 65536, (20, 30), dtype=np.uint16)
    values[0, :4] = [0, 1, 65534, 65535]
    path = saved(Image.fromarray(values), tmp_path / "grey16.png")
    assert Image.open(path).mode.startswith("I")
    image = load_image(path)
    assert image.shape == (20, 30, 3) and image.dtype == np.float32
    assert np.abs(image[:, :, 0] - values / 65535.0).max() < 1 / 65535 / 2
    assert np.array_equal(image[:, :, 0], image[:, :, 2])
    assert image[0, 1, 0] > 0 and image[0, 2, 0] < 1  # 1 and 65534 would collapse to 0 and 1 through 8 bits


@pytest.mark.parametrize(("colour_type", "channels"), [(2, 3), (6, 4)])
def test_sixteen_bit_colour_png_keeps_full_precision(colour_type, channels):
    values = np.random.default_rng(3).integers(0, 65536, (12, 10, channels), dtype=np.uint16)
    if channels == 4:
        values[..., 3] = 65535  # opaque, so the colour samples come back unchanged
        values[0, 0, 3] = 0  # except one transparent pixel, which becomes white
    rows = []
    for index, row in enumerate(values.astype(">u2")):
        raw = np.frombuffer(row.tobytes(), dtype=np.uint8).astype(np.int16)
        if index % 2:  # Sub filter: each byte minus the byte one pixel to the left, so decoding needs bpp right
            step = 2 * channels
            raw[step:] = (raw[step:] - raw[:-step]) % 256
            rows.append(b"\x01" + raw.astype(np.uint8).tobytes())
        else:
            rows.append(b"\x00" + raw.astype(np.uint8).tobytes())
    data = raw_png(10, 12, 16, colour_type, zlib.compress(b"".join(rows)))
    image = load_image(data)
    expected = values[..., :3] / 65535.0
    if channels == 4:
        expected[0, 0] = 1.0
    assert np.abs(image - expected).max() < 1 / 65535 / 2


def test_grey_bilevel_and_float_modes(tmp_path):
    grey = noise_rgb()[:, :, 0]
    image = load_image(saved(Image.fromarray(grey, "L"), tmp_path / "grey.png"))
    assert image.shape == (48, 64, 3)
    np.testing.assert_array_equal(to_uint8(image[:, :, 1]), grey)

    bits = Image.fromarray(grey > 127)
    assert bits.mode == "1"
    image = load_image(saved(bits, tmp_path / "bits.png"))
    np.testing.assert_array_equal(image[:, :, 0], (grey > 127).astype(np.float32))

    floats = np.linspace(-0.5, 1.5, 48 * 64, dtype=np.float32).reshape(48, 64)
    floats[0, 0] = np.nan
    path = saved(Image.fromarray(floats), tmp_path / "float.tif")
    assert Image.open(path).mode == "F"
    image = load_image(path)
    expected = np.clip(np.nan_to_num(floats, nan=0.0), 0, 1)
    np.testing.assert_allclose(image[:, :, 2], expected, atol=1e-7)


def test_palette_images_with_and_without_a_transparent_colour(tmp_path):
    rgb = Image.fromarray(noise_rgb())
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    image = load_image(saved(palette, tmp_path / "palette.png"))
    np.testing.assert_array_equal(to_uint8(image), np.asarray(palette.convert("RGB")))

    transparent_index = int(np.asarray(palette)[0, 0])
    path = saved(palette, tmp_path / "palette_transparent.png", transparency=transparent_index)
    image = load_image(path)
    hidden = np.asarray(palette) == transparent_index
    assert np.all(image[hidden] == 1.0)  # the transparent colour is composited onto white
    np.testing.assert_array_equal(to_uint8(image)[~hidden], np.asarray(palette.convert("RGB"))[~hidden])


def test_alpha_is_composited_onto_white(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 200  # a red-ish colour everywhere
    rgba[0, :, 3] = 0  # row 0 fully transparent
    rgba[1, :, 3] = 255  # row 1 opaque
    rgba[2, :, 3] = 128  # row 2 half transparent
    image = load_image(saved(Image.fromarray(rgba, "RGBA"), tmp_path / "alpha.png"))
    np.testing.assert_allclose(image[0], 1.0)
    np.testing.assert_allclose(image[1], [[200 / 255, 0, 0]] * 4, atol=1e-6)
    alpha = 128 / 255
    np.testing.assert_allclose(image[2, 0], [200 / 255 * alpha + 1 - alpha, 1 - alpha, 1 - alpha], atol=1e-6)

    grey_alpha = Image.fromarray(rgba[..., [0, 3]], "LA")
    image = load_image(saved(grey_alpha, tmp_path / "la.png"))
    np.testing.assert_allclose(image[0], 1.0)
    np.testing.assert_allclose(image[1], 200 / 255, atol=1e-6)


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path):
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # no cyan, full magenta and yellow: red
    path = saved(cmyk, tmp_path / "cmyk.jpg", quality=95)
    assert Image.open(path).mode == "CMYK"
    image = load_image(path)
    np.testing.assert_allclose(image.mean(axis=(0, 1)), [1.0, 0.0, 0.0], atol=0.03)


def test_exif_orientation_6_rotates_clockwise(tmp_path):
    # Stored 40 wide x 20 high in four quadrants; orientation 6 means "rotate 90 degrees clockwise to view".
    colours = {"tl": (255, 0, 0), "tr": (0, 255, 0), "bl": (0, 0, 255), "br": (255, 255, 255)}
    stored = np.zeros((20, 40, 3), dtype=np.uint8)
    stored[:10, :20], stored[:10, 20:] = colours["tl"], colours["tr"]
    stored[10:, :20], stored[10:, 20:] = colours["bl"], colours["br"]
    exif = Image.Exif()
    exif[0x0112] = 6
    path = saved(Image.fromarray(stored), tmp_path / "phone.jpg", quality=95, exif=exif.tobytes())
    image = load_image(path)
    assert image.shape == (40, 20, 3)
    quadrants = {"tl": image[:20, :10], "tr": image[:20, 10:], "bl": image[20:, :10], "br": image[20:, 10:]}
    # Clockwise: bottom-left comes to the top-left, top-left to the top-right, and so on.
    expected = {"tl": "bl", "tr": "tl", "bl": "br", "br": "tr"}
    for where, source in expected.items():
        np.testing.assert_allclose(quadrants[where][3:-3, 3:-3].mean(axis=(0, 1)) * 255, colours[source], atol=8)


def test_decompression_bomb_header_is_refused_before_decoding():
    bomb = raw_png(100_000, 100_000, 8, 2, zlib.compress(b"\x00" * 64))
    assert "decompression-bomb" in str(refused(bomb, "too_large"))


def test_max_pixels_is_checked_from_the_header_before_any_allocation():
    # 9000 x 9000 RGB would take ~300 MB once decoded; the data is 64 bytes, so decoding would report "truncated".
    lying = raw_png(9000, 9000, 8, 2, zlib.compress(b"\x00" * 64))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    error = refused(lying, "too_large", max_pixels=1_000_000)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert "81,000,000 pixels" in str(error) and "max_pixels" in str(error)
    assert grown_mb < 50


def test_a_real_big_but_cheap_image_respects_max_pixels(tmp_path):
    path = saved(Image.new("RGB", (2000, 1000), (10, 20, 30)), tmp_path / "flat.png")
    assert path.stat().st_size < 50_000
    refused(path, "too_large", max_pixels=1_000_000)
    assert load_image(path, max_pixels=2_000_000).shape == (1000, 2000, 3)


def test_image_error_survives_pickling():
    error = pickle.loads(pickle.dumps(ImageError("truncated", "x.png: ends early")))
    assert error.reason == "truncated" and str(error) == "x.png: ends early"
    assert isinstance(error, ValueError)


def test_to_uint8_rounds_and_clips():
    values = np.array([-0.2, 0.0, 0.4 / 255, 0.6 / 255, 254.5 / 255 + 1e-6, 1.0, 1.3, np.nan], dtype=np.float32)
    np.testing.assert_array_equal(to_uint8(values), [0, 0, 0, 1, 255, 255, 255, 0])
    assert to_uint8(np.zeros(3, np.uint8)).dtype == np.uint8
    with pytest.raises(TypeError):
        to_uint8(np.zeros(3, np.int64))


def test_encode_png_is_deterministic_and_round_trips_exactly():
    image = noise_rgb(seed=4).astype(np.float32) / 255.0
    first, second = encode_png(image), encode_png(image.copy())
    assert first == second
    assert b"tIME" not in first and b"tEXt" not in first
    decoded = load_image(first)
    assert decoded.dtype == np.float32
    np.testing.assert_array_equal(decoded, image)
    grey = load_image(encode_png(image[:, :, 0]))
    np.testing.assert_array_equal(grey[:, :, 2], image[:, :, 0])
    with pytest.raises(ValueError, match="HxW"):
        encode_png(np.zeros((4, 4, 2), np.float32))


def test_crop_to_multiple_and_random_crop():
    image = np.zeros((50, 37, 6), dtype=np.float32)  # any channel count, e.g. clean and degraded stacked
    assert crop_to_multiple(image, 16).shape == (48, 32, 6)
    assert crop_to_multiple(image, 8).shape == (48, 32, 6)
    with pytest.raises(ImageError) as caught:
        crop_to_multiple(np.zeros((8, 40, 3)), 16)
    assert caught.value.reason == "too_small"

    image = np.arange(50 * 37, dtype=np.float32).reshape(50, 37, 1)
    first = random_crop(image, 16, np.random.default_rng(5))
    again = random_crop(image, 16, np.random.default_rng(5))
    assert first.shape == (16, 16, 1) and np.array_equal(first, again)
    assert random_crop(image, (10, 37), np.random.default_rng(6)).shape == (10, 37, 1)
    with pytest.raises(ImageError) as caught:
        random_crop(np.zeros((20, 100, 3)), 32, np.random.default_rng(0))
    assert caught.value.reason == "too_small" and "32x32" in str(caught.value)
