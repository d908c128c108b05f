"""The clean-crop augmentation of fine-tuning: a quarter turn and a mild photometric jitter, seeded."""

from __future__ import annotations

import numpy as np

from instructir.datasets.augment import EXPOSURE, augment_clean, photometric_jitter, quarter_turn
from instructir.datasets.sources import sample_images


def photo() -> np.ndarray:
    image = sample_images()[0].load()
    return np.ascontiguousarray(image[:64, :96])


def test_the_same_generator_state_gives_the_same_augmented_crop_and_another_state_another():
    image = photo()
    first = augment_clean(image, np.random.default_rng([3, 1]))
    again = augment_clean(image, np.random.default_rng([3, 1]))
    other = augment_clean(image, np.random.default_rng([3, 2]))
    assert np.array_equal(first, again)
    assert first.dtype == np.float32 and first.flags.c_contiguous
    assert not (first.shape == other.shape and np.allclose(first, other))


def test_quarter_turns_take_all_four_orientations_and_keep_the_pixels():
    image = photo()
    turns = {quarter_turn(image, np.random.default_rng(seed)).tobytes() for seed in range(40)}
    assert turns == {np.rot90(image, k).tobytes() for k in range(4)}


def test_the_jitter_stays_in_range_and_changes_exposure_within_its_bounds():
    image = photo()
    ratios = []
    for seed in range(200):
        jittered = photometric_jitter(image, np.random.default_rng(seed))
        assert jittered.shape == image.shape and jittered.min() >= 0.0 and jittered.max() <= 1.0
        ratios.append(jittered.mean() / image.mean())
    assert np.std(ratios) > 0.05, "the exposure should vary from crop to crop"
    # Gamma and clipping move the mean too, so the bounds are the exposure range widened a little.
    assert EXPOSURE[0] - 0.2 < min(ratios) and max(ratios) < EXPOSURE[1] + 0.35
