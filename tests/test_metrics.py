"""PSNR and SSIM against scikit-image's references, on a real photo and real degradations."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.data import astronaut
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from instructir.model.metrics import psnr, ssim, to_y


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    clean = astronaut()[100:228, 150:310].astype(np.float64) / 255
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 0.08, clean.shape), 0, 1)
    return noisy, clean


def test_psnr_matches_scikit_image_on_8bit_levels(pair):
    noisy, clean = pair
    expected = peak_signal_noise_ratio(np.round(clean * 255), np.round(noisy * 255), data_range=255)
    assert psnr(noisy, clean) == pytest.approx(expected, abs=1e-9)
    assert psnr(clean, clean) == float("inf")
    assert 18 < psnr(noisy, clean) < 25


def test_ssim_matches_scikit_image_gaussian_protocol(pair):
    noisy, clean = pair
    a, b = np.round(noisy * 255), np.round(clean * 255)
    expected = structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=2
    )
    assert ssim(noisy, clean) == pytest.approx(expected, abs=1e-6)
    assert ssim(clean, clean) == pytest.approx(1.0)


def test_y_channel_and_crop_border(pair):
    noisy, clean = pair
    ya, yb = to_y(np.round(noisy * 255))[4:-4, 4:-4, 0], to_y(np.round(clean * 255))[4:-4, 4:-4, 0]
    expected = structural_similarity(
        ya, yb, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    assert ssim(noisy, clean, crop_border=4, test_y_channel=True) == pytest.approx(expected, abs=1e-6)
    assert psnr(noisy, clean, crop_border=4, test_y_channel=True) == pytest.approx(
        peak_signal_noise_ratio(yb, ya, data_range=255), abs=1e-9
    )
    assert psnr(noisy, clean, test_y_channel=True) > psnr(noisy, clean)


def test_mismatched_shapes_are_refused(pair):
    noisy, clean = pair
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(noisy[:-1], clean)
