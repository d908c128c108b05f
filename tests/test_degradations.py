"""Synthetic degradations: their physics (noise statistics, kernel moments, scattering, streak orientation), their
reproducibility and JSON-ready params, and the agreement of the batched torch twins with numpy on identical fields."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
from skimage import data

from instructir.datasets.degradations import (
    DEGRADATIONS,
    apply_chain,
    blur,
    get_degradation,
    haze,
    jpeg,
    lowlight,
    noise,
    rain,
    resize,
    retouch,
    sample_chain,
)
from instructir.datasets.degradations import torch_ops as T
from instructir.datasets.degradations.base import LUMA, convolve

NAMES = (
    "gaussian_noise",
    "poisson_noise",
    "gaussian_blur",
    "motion_blur",
    "haze",
    "rain",
    "low_light",
    "bicubic_downsample",
    "retouch",
    "jpeg",
)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    """A real photo, float32 HWC in [0, 1] (512x512)."""
    return data.astronaut().astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def crop(astronaut: np.ndarray) -> np.ndarray:
    """A 96x96 crop with face, hair and background: texture and flat areas."""
    return np.ascontiguousarray(astronaut[40:136, 170:266])


def flat(value: float, size: int = 256) -> np.ndarray:
    """A flat grey image."""
    return np.full((size, size, 3), value, dtype=np.float32)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB for [0, 1] images."""
    return float(10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b) ** 2)))


def moments(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre of mass (x, y) relative to the centre pixel and the 2x2 (x, y) covariance of a kernel."""
    half_y, half_x = kernel.shape[0] // 2, kernel.shape[1] // 2
    y, x = np.mgrid[-half_y : half_y + 1, -half_x : half_x + 1].astype(np.float64)
    w = kernel.astype(np.float64) / kernel.sum()
    mean = np.array([(w * x).sum(), (w * y).sum()])
    dx, dy = x - mean[0], y - mean[1]
    cov = np.array([[(w * dx * dx).sum(), (w * dx * dy).sum()], [(w * dx * dy).sum(), (w * dy * dy).sum()]])
    return mean, cov


def delta_image(size: int = 65) -> np.ndarray:
    """A black image with one white pixel in the centre."""
    image = np.zeros((size, size, 3), dtype=np.float32)
    image[size // 2, size // 2] = 1.0
    return image


# --- noise ---------------------------------------------------------------------------------------------------------


def test_gaussian_noise_has_the_asked_sigma():
    image = flat(0.5)
    out = noise.apply_gaussian(image, {"sigma": 20.0, "grey": False, "seed": 3})
    residual = out - image
    assert abs(residual.std() / (20.0 / 255.0) - 1.0) < 0.02
    assert abs(residual.mean()) < 1e-3
    # independent channels
    assert abs(np.corrcoef(residual[..., 0].ravel(), residual[..., 1].ravel())[0, 1]) < 0.02


def test_grey_gaussian_noise_is_the_same_on_every_channel():
    image = flat(0.5, 64)
    out = noise.apply_gaussian(image, {"sigma": 30.0, "grey": True, "seed": 1})
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    assert out.std() > 0.05


def test_eval_noise_is_rounded_to_uint8_levels():
    image = flat(0.5)
    params = noise.eval_params(25, seed=7)
    assert params["sigma"] == 25.0 and params["grey"] is False
    out = noise.apply_gaussian(image, params)
    levels = out * 255.0
    assert np.abs(levels - np.round(levels)).max() < 1e-4
    # rounding (not truncation, which would bias by -0.5/255) keeps the noise zero-mean
    assert abs(float((out - image).mean())) < 7e-4
    assert abs((out - image).std() / (25 / 255) - 1.0) < 0.02
    assert np.array_equal(out, noise.apply_gaussian(image, params))


@pytest.mark.parametrize("scale", [1.0, 3.0])  # 1: normal-approximated counts, 3: exact Poisson counts
def test_poisson_variance_grows_with_intensity(scale: float):
    variances = {}
    for level in (0.1, 0.4):
        image = flat(level)
        out = noise.apply_poisson(image, {"scale": scale, "grey": False, "seed": 11})
        expected = scale**2 * level / 255.0  # the model: Var = I / peak, peak = 255 / scale^2
        variances[level] = float((out - image).var())
        assert abs(variances[level] / expected - 1.0) < 0.05
        assert abs(float((out - image).mean())) < 0.01 * level
    assert 3.6 < variances[0.4] / variances[0.1] < 4.4


def test_grey_poisson_noise_is_shared_by_channels():
    image = flat(0.3, 64)
    out = noise.apply_poisson(image, {"scale": 2.0, "grey": True, "seed": 5})
    residual = out - image
    assert np.allclose(residual[..., 0], residual[..., 2], atol=1e-6)
    assert residual.std() > 0.02


# --- blur ----------------------------------------------------------------------------------------------------------


def test_gaussian_kernel_is_normalised_odd_and_has_the_asked_moments():
    kernel = blur.gaussian_kernel(25, 2.0, 1.0, 0.0)
    assert kernel.shape == (25, 25) and kernel.dtype == np.float32
    assert abs(float(kernel.sum()) - 1.0) < 1e-5
    mean, cov = moments(kernel)
    assert np.allclose(mean, 0.0, atol=1e-6)
    assert abs(cov[0, 0] / 4.0 - 1.0) < 0.03
    assert abs(cov[1, 1] / 1.0 - 1.0) < 0.03
    assert abs(cov[0, 1]) < 1e-6
    with pytest.raises(ValueError):
        blur.gaussian_kernel(8, 1.0, 1.0, 0.0)


@pytest.mark.parametrize("theta", [math.pi / 6, -1.2, 2.5])
def test_rotated_gaussian_kernel_has_the_rotated_covariance(theta: float):
    kernel = blur.gaussian_kernel(31, 2.5, 1.0, theta)
    _, cov = moments(kernel)
    expected = blur.gaussian_covariance(2.5, 1.0, theta)
    assert np.allclose(cov, expected, atol=0.03 * 2.5**2)
    # the long axis points along theta (an axis, so modulo pi)
    eigvals, eigvecs = np.linalg.eigh(cov)
    major = eigvecs[:, np.argmax(eigvals)]
    diff = (math.atan2(major[1], major[0]) - theta) % math.pi
    assert min(diff, math.pi - diff) < math.radians(1)


def test_blurring_a_delta_gives_the_kernel():
    params = {"size": 15, "sigma_x": 2.0, "sigma_y": 0.7, "theta": 0.4}
    out = blur.apply_gaussian_blur(delta_image(), params)
    kernel = blur.gaussian_kernel(15, 2.0, 0.7, 0.4)
    assert np.allclose(out[32 - 7 : 32 + 8, 32 - 7 : 32 + 8, 1], kernel, atol=1e-6)
    assert abs(float(out[..., 0].sum()) - 1.0) < 1e-4


def test_motion_kernel_is_a_normalised_nontrivial_path():
    kernel = blur.motion_kernel(37, 42, length=20.0, jitter=0.5)
    assert kernel.shape == (37, 37) and kernel.dtype == np.float32
    assert abs(float(kernel.sum()) - 1.0) < 1e-5
    assert kernel.min() >= 0.0
    assert np.count_nonzero(kernel > 0.01 * kernel.max()) > 15  # a path, not a dot
    _, cov = moments(kernel)
    assert np.linalg.eigvalsh(cov).max() > 4.0  # spread over several pixels
    mean, _ = moments(kernel)
    assert np.allclose(mean, 0.0, atol=1e-4)  # centred on its centre of mass: the blur does not shift the image
    assert kernel[0].sum() == kernel[-1].sum() == kernel[:, 0].sum() == kernel[:, -1].sum() == 0.0


def test_motion_kernel_is_reproducible_from_its_seed():
    same = blur.motion_kernel(37, 7, length=25.0, jitter=0.8)
    assert np.array_equal(same, blur.motion_kernel(37, np.random.default_rng(7), length=25.0, jitter=0.8))
    assert not np.allclose(same, blur.motion_kernel(37, 8, length=25.0, jitter=0.8))
    straight = blur.motion_kernel(37, 3, length=30.0, jitter=0.0)
    _, cov = moments(straight)
    small, large = np.linalg.eigvalsh(cov)
    assert small < 0.3 and large > 50  # jitter 0: a straight line (bilinear splat width), ~30 px (var L²/12 = 75)


def test_motion_blur_of_a_delta_gives_the_kernel():
    params = blur.sample_motion_blur(np.random.default_rng(0))
    kernel = blur.motion_kernel_from_params(params)
    out = blur.apply_motion_blur(delta_image(), params)
    assert np.allclose(out[32 - 18 : 32 + 19, 32 - 18 : 32 + 19, 2], kernel, atol=1e-6)


def test_convolve_reflects_borders_and_keeps_flat_images_flat():
    image = flat(0.25, 40)
    out = convolve(image, blur.motion_kernel(37, 1))
    assert out.shape == image.shape and np.allclose(out, 0.25, atol=1e-6)
    ramp = np.tile(np.linspace(0, 1, 40, dtype=np.float32)[None, :, None], (40, 1, 3))
    box = np.full((1, 3), 1 / 3, dtype=np.float32)
    # a 1x3 box on a ramp: unchanged inside, and at column 0 reflection averages columns 1, 0, 1
    out = convolve(ramp, box)
    assert np.allclose(out[:, 1:-1], ramp[:, 1:-1], atol=1e-6)
    assert np.allclose(out[:, 0], (2 * ramp[:, 1] + ramp[:, 0]) / 3, atol=1e-6)


# --- haze ----------------------------------------------------------------------------------------------------------


def test_transmission_is_in_zero_one():
    depth = haze.synthetic_depth(64, 80, 3)
    assert depth.shape == (64, 80) and depth.dtype == np.float32
    assert depth.min() == 0.0 and depth.max() == 1.0
    assert depth[:8].mean() > depth[-8:].mean()  # far at the top
    t = haze.transmission(depth, 2.5)
    assert t.min() > 0.0 and t.max() <= 1.0
    assert np.isclose(t.min(), math.exp(-2.5), rtol=1e-5)
    assert not np.array_equal(depth, haze.synthetic_depth(64, 80, 4))


def test_airlight_is_recovered_from_an_opaque_region_and_depth_zero_is_clean(crop: np.ndarray):
    depth = np.zeros(crop.shape[:2], dtype=np.float32)
    depth[:40] = 1.0
    params = {"airlight": 0.83, "beta": 60.0, "seed": 0}
    out = haze.apply_haze(crop, params, depth=depth)
    estimated = out[:40].reshape(-1, 3).astype(np.float64).mean(axis=0)
    assert np.allclose(estimated, 0.83, atol=1e-6)
    assert np.allclose(out[:40], 0.83, atol=1e-6)
    assert np.array_equal(out[40:], crop[40:])


def test_haze_follows_the_scattering_model(crop: np.ndarray):
    params = {"airlight": 0.9, "beta": 1.5, "seed": 12}
    out = haze.apply_haze(crop, params)
    t = haze.transmission(haze.synthetic_depth(96, 96, 12), 1.5)[..., None]
    assert np.allclose(out, crop * t + 0.9 * (1 - t), atol=1e-6)
    assert out.std() < crop.std()  # haze lowers contrast


# --- low light -----------------------------------------------------------------------------------------------------


def test_low_light_darkens_by_the_gamma_curve():
    ramp = np.linspace(0.6, 0.95, 256, dtype=np.float32)
    image = np.stack([np.tile(ramp[:, None], (1, 256)) * f for f in (1.0, 0.95, 0.9)], axis=2)
    params = {"gamma": 2.5, "scale": 0.8, "sigma": 0.05, "seed": 2}
    out = lowlight.apply_low_light(image, params)
    expected = (image**2.5 * 0.8) @ LUMA
    assert abs(float((out @ LUMA).mean()) - float(expected.mean())) < 2e-3  # zero-mean noise
    assert (out @ LUMA).mean() < 0.6 * (image @ LUMA).mean()
    assert abs(float((out - image**2.5 * 0.8).std()) - 0.05) < 0.002
    defaults = lowlight.eval_params(seed=1)
    assert (defaults["gamma"], defaults["sigma"]) == (2.5, 0.05)


# --- rain ----------------------------------------------------------------------------------------------------------


def streak_angle(layer: np.ndarray) -> float:
    """Dominant streak orientation in screen degrees [0, 180), perpendicular to the structure tensor's gradient."""
    gy, gx = np.gradient(layer.astype(np.float64))
    jxx, jyy, jxy = (gx * gx).sum(), (gy * gy).sum(), (gx * gy).sum()
    eigvals, eigvecs = np.linalg.eigh(np.array([[jxx, jxy], [jxy, jyy]]))
    nx, ny = eigvecs[:, np.argmax(eigvals)]
    dx, dy = -ny, nx  # along the streaks, in (x right, y down)
    return math.degrees(math.atan2(-dy, dx)) % 180.0


@pytest.mark.parametrize("angle", [80.0, 90.0, 100.0, 60.0, 135.0])
def test_rain_streaks_point_along_the_asked_angle(crop: np.ndarray, angle: float):
    params = {"density": 0.004, "length": 40.0, "angle": angle, "width": 1.5, "brightness": 0.6, "seed": 9}
    layer = rain.streak_layer(160, 160, params)
    assert layer.min() >= 0.0 and layer.max() <= 1.0 and layer.max() > 0.3
    diff = abs(streak_angle(layer) - angle) % 180.0
    assert min(diff, 180.0 - diff) < 10.0


def test_rain_adds_brightness(crop: np.ndarray):
    params = rain.sample_rain(np.random.default_rng(4))
    out = rain.apply_rain(crop, params)
    assert out.mean() > crop.mean() + 0.005
    assert np.all(out >= crop - 1e-6)  # streaks only add light


def test_line_kernel_is_a_normalised_line():
    kernel = rain.line_kernel(30.0, 90.0)
    assert abs(float(kernel.sum()) - 1.0) < 1e-5 and kernel.shape[0] % 2 == 1
    _, cov = moments(kernel)
    assert cov[1, 1] > 60 and cov[0, 0] < 0.5  # vertical: spread along y only
    _, cov = moments(rain.line_kernel(30.0, 45.0))
    assert cov[0, 1] < -30  # 45 degrees on screen: x grows as y (rows) decreases


# --- resampling, JPEG, retouch -------------------------------------------------------------------------------------


def test_jpeg_psnr_falls_with_quality(astronaut: np.ndarray):
    image = astronaut[:256, :256]
    scores = [psnr(jpeg.apply_jpeg(image, {"quality": q}), image) for q in (95, 70, 40, 10)]
    assert all(a > b for a, b in itertools.pairwise(scores)), scores
    assert scores[0] > 35 and scores[-1] < 30


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_sizes(scale: int):
    image = np.random.default_rng(0).random((65, 70, 3), dtype=np.float32)
    small = resize.apply_bicubic(image, {"scale": scale, "upsample_back": False})
    assert small.shape == (65 // scale, 70 // scale, 3) and small.dtype == np.float32
    back = resize.apply_bicubic(image, {"scale": scale, "upsample_back": True})
    assert back.shape == image.shape


def test_bicubic_keeps_smooth_images_and_loses_fine_detail(astronaut: np.ndarray):
    y, x = np.mgrid[0:128, 0:128].astype(np.float32)
    smooth = 0.5 + 0.3 * np.sin(2 * np.pi * x / 40)[..., None] * np.cos(2 * np.pi * y / 50)[..., None]
    smooth = np.repeat(smooth, 3, axis=2).astype(np.float32)
    assert psnr(resize.apply_bicubic(smooth, {"scale": 2, "upsample_back": True}), smooth) > 40
    photo = astronaut[:240, :240]
    scores = [psnr(resize.apply_bicubic(photo, {"scale": s, "upsample_back": True}), photo) for s in (2, 3, 4)]
    assert scores[0] > scores[1] > scores[2]
    # exact-factor downsampling of a constant stays constant
    assert np.allclose(resize.apply_bicubic(flat(0.3, 48), {"scale": 3, "upsample_back": False}), 0.3, atol=1e-6)


def test_retouch_changes_the_image_and_round_trips_through_json(crop: np.ndarray):
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(12):
        params = retouch.sample_retouch(rng)
        enabled = {k for k in retouch.COMPONENTS if params[k] is not None}
        assert 1 <= len(enabled) <= 3
        seen |= enabled
        out = retouch.apply_retouch(crop, params)
        assert out.dtype == np.float32 and out.min() >= 0.0 and out.max() <= 1.0
        assert np.abs(out - crop).mean() > 0.01
        assert np.array_equal(out, retouch.apply_retouch(crop, json.loads(json.dumps(params))))
    assert seen == set(retouch.COMPONENTS)
    flat_params = dict.fromkeys(retouch.COMPONENTS)
    flat_params["contrast"] = 0.5
    assert retouch.apply_retouch(crop, flat_params).std() < 0.6 * crop.std()


# --- the registry ----------------------------------------------------------------------------------------------------


def test_registry_names_and_lookup():
    assert tuple(DEGRADATIONS) == NAMES
    assert all(get_degradation(name).name == name for name in NAMES)
    with pytest.raises(ValueError, match="gaussian_noise"):
        get_degradation("snow")


@pytest.mark.parametrize("name", NAMES)
def test_every_degradation_is_reproducible_and_json_ready(crop: np.ndarray, name: str):
    degradation = get_degradation(name)
    params = degradation.sample_params(np.random.default_rng(123))
    assert params == degradation.sample_params(np.random.default_rng(123))
    text = json.dumps(params)  # plain Python types only
    assert json.loads(text) == params
    out = degradation.apply(crop, params)
    assert out.dtype == np.float32 and out.ndim == 3 and out.shape[2] == 3
    assert out.shape == crop.shape
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert np.array_equal(out, degradation.apply(crop, params))
    assert np.array_equal(out, degradation.apply(crop, json.loads(text)))
    assert not np.array_equal(out, crop)
    for seed in range(5):  # the sampler's whole range stays JSON-clean and in range
        drawn = degradation.sample_params(np.random.default_rng(seed))
        json.dumps(drawn)
        result = degradation.apply(crop, drawn)
        assert result.min() >= 0.0 and result.max() <= 1.0 and result.dtype == np.float32


def test_chains_mix_degradations_reproducibly(crop: np.ndarray):
    chain = sample_chain(["haze", "gaussian_blur", "gaussian_noise"], np.random.default_rng(5))
    assert [step["name"] for step in chain] == ["haze", "gaussian_blur", "gaussian_noise"]
    out = apply_chain(crop, chain)
    manual = crop
    for step in chain:
        manual = DEGRADATIONS[step["name"]].apply(manual, step["params"])
    assert np.array_equal(out, manual)
    assert np.array_equal(out, apply_chain(crop, json.loads(json.dumps(chain))))
    assert chain == sample_chain(["haze", "gaussian_blur", "gaussian_noise"], np.random.default_rng(5))


# --- torch twins -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pair(astronaut: np.ndarray) -> list[np.ndarray]:
    """Two different 64x72 crops: a batch of 2."""
    return [np.ascontiguousarray(astronaut[60:124, 180:252]), np.ascontiguousarray(astronaut[300:364, 40:112])]


def to_batch(images: list[np.ndarray]) -> torch.Tensor:
    """HWC numpy images -> (B, 3, H, W) tensor."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def from_batch(batch: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) tensor -> (B, H, W, 3) numpy."""
    return batch.permute(0, 2, 3, 1).numpy()


def test_torch_gaussian_noise_matches_numpy(pair: list[np.ndarray]):
    sigmas, greys = [10.0, 45.0], [False, True]
    fields = [noise.gaussian_field(64, 72, g, s) for g, s in zip(greys, (1, 2), strict=True)]
    expected = np.stack([noise.add_gaussian(im, s, f) for im, s, f in zip(pair, sigmas, fields, strict=True)])
    field = torch.zeros(2, 3, 64, 72)
    field[0] = torch.from_numpy(fields[0]).permute(2, 0, 1)
    field[1, 0] = torch.from_numpy(fields[1][..., 0])  # grey samples read channel 0
    got = T.gaussian_noise(to_batch(pair), torch.tensor(sigmas), torch.tensor(greys), noise=field)
    assert np.allclose(from_batch(got), expected, atol=1e-5)
    # numpy's own apply uses the same field for the same seed
    assert np.array_equal(expected[1], noise.apply_gaussian(pair[1], {"sigma": 45.0, "grey": True, "seed": 2}))


def test_torch_gaussian_noise_draws_on_device(pair: list[np.ndarray]):
    batch = torch.full((2, 3, 128, 128), 0.5)
    first = T.gaussian_noise(batch, [5.0, 30.0], [False, True], generator=torch.Generator().manual_seed(0))
    again = T.gaussian_noise(batch, [5.0, 30.0], [False, True], generator=torch.Generator().manual_seed(0))
    assert torch.equal(first, again)
    residual = first - batch
    assert abs(residual[0].std().item() / (5 / 255) - 1) < 0.03
    assert abs(residual[1].std().item() / (30 / 255) - 1) < 0.03
    assert torch.equal(residual[1, 0], residual[1, 2]) and not torch.equal(residual[0, 0], residual[0, 2])


def test_torch_gaussian_blur_matches_numpy(pair: list[np.ndarray]):
    params = [
        {"size": 7, "sigma_x": 1.2, "sigma_y": 1.2, "theta": 0.0},
        {"size": 19, "sigma_x": 2.8, "sigma_y": 0.6, "theta": -2.1},
    ]
    expected = np.stack([blur.apply_gaussian_blur(im, p) for im, p in zip(pair, params, strict=True)])
    got = T.gaussian_blur(
        to_batch(pair), *(torch.tensor([p[k] for p in params]) for k in ("sigma_x", "sigma_y", "theta", "size"))
    )
    assert np.allclose(from_batch(got), expected, atol=1e-5)  # borders included: same reflect padding


def test_torch_motion_blur_matches_numpy(pair: list[np.ndarray]):
    rng = np.random.default_rng(8)
    params = [blur.sample_motion_blur(rng), blur.sample_motion_blur(rng, size=15)]
    expected = np.stack([blur.apply_motion_blur(im, p) for im, p in zip(pair, params, strict=True)])
    kernels = T.motion_kernels(params)
    assert kernels.shape == (2, 37, 37)
    got = T.motion_blur(to_batch(pair), kernels)
    assert np.allclose(from_batch(got), expected, atol=1e-5)


def test_torch_haze_matches_numpy(pair: list[np.ndarray]):
    params = [{"airlight": 0.7, "beta": 1.2, "seed": 3}, {"airlight": 0.92, "beta": 2.4, "seed": 4}]
    expected = np.stack([haze.apply_haze(im, p) for im, p in zip(pair, params, strict=True)])
    depth = torch.from_numpy(np.stack([haze.synthetic_depth(64, 72, p["seed"]) for p in params]))
    got = T.haze(to_batch(pair), torch.tensor([0.7, 0.92]), torch.tensor([1.2, 2.4]), depth=depth)
    assert np.allclose(from_batch(got), expected, atol=1e-5)
    drawn = T.synthetic_depth(to_batch(pair), torch.Generator().manual_seed(1))
    assert drawn.shape == (2, 64, 72) and drawn.amin() == 0.0 and drawn.amax() == 1.0
    assert (drawn[:, :8].mean() > drawn[:, -8:].mean()).item()


def test_torch_low_light_matches_numpy(pair: list[np.ndarray]):
    gammas, scales, sigmas = [2.0, 2.9], [0.55, 0.95], [0.03, 0.08]
    fields = [np.random.default_rng(s).standard_normal((64, 72, 3), dtype=np.float32) for s in (5, 6)]
    expected = np.stack(
        [lowlight.darken(im, g, s, n, f) for im, g, s, n, f in zip(pair, gammas, scales, sigmas, fields, strict=True)]
    )
    field = to_batch(fields)
    got = T.low_light(to_batch(pair), torch.tensor(gammas), torch.tensor(scales), torch.tensor(sigmas), noise=field)
    assert np.allclose(from_batch(got), expected, atol=1e-5)
    params = {"gamma": 2.0, "scale": 0.55, "sigma": 0.03, "seed": 5}
    assert np.array_equal(expected[0], lowlight.apply_low_light(pair[0], params))


def test_torch_rain_matches_numpy(pair: list[np.ndarray]):
    params = [
        {"density": 0.004, "length": 24.0, "angle": 84.0, "width": 1.0, "brightness": 0.5, "seed": 1},
        {"density": 0.002, "length": 55.0, "angle": 99.0, "width": 1.8, "brightness": 0.8, "seed": 2},
    ]
    expected = np.stack([rain.apply_rain(im, p) for im, p in zip(pair, params, strict=True)])
    drops = np.stack([rain.drop_field(64, 72, p["density"], np.random.default_rng(p["seed"])) for p in params])
    columns = {k: torch.tensor([p[k] for p in params]) for k in ("length", "angle", "width", "brightness")}
    got = T.rain(to_batch(pair), drops=torch.from_numpy(drops), **columns)
    assert np.allclose(from_batch(got), expected, atol=1e-5)
    drawn = T.rain(to_batch(pair), density=[0.004, 0.002], generator=torch.Generator().manual_seed(3), **columns)
    assert (drawn >= to_batch(pair) - 1e-6).all() and drawn.mean() > to_batch(pair).mean()
