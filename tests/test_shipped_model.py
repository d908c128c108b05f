"""The default model that ships in the package: it loads, reads plain requests, and restores a photo it never saw."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_cli, save_tiny_checkpoint
from PIL import Image

from instructir.datasets.images import load_image
from instructir.datasets.sources import sample_images
from instructir.model.checkpoint import load_checkpoint
from instructir.model.evaluate import DEFAULT_INSTRUCTIONS
from instructir.model.metrics import psnr
from instructir.model.probe import FIXED_DAMAGE, damage
from instructir.model.restore import Restorer, match_mean
from instructir.model.shipped import choose_checkpoint, shipped_card, shipped_checkpoint

IMAGE_TASKS = list(FIXED_DAMAGE)
# The two-hour CPU model does not improve the colour cast of this crop, with or without its colour stage (0.00 and
# -0.46 dB; +1.68 on the whole photo, see its card): an expected failure, strict, so the test says so the day a
# better model improves it.
NOT_YET = {"enhance"}
NOT_YET_REASON = "the shipped 2-hour CPU model does not improve this task yet (see its card)"
# Least gain in dB on the crop: the model sharpens a sigma-2 blur and a x2 downscale only a little (+0.3 dB here).
MARGIN_DB = {"deblur": 0.1, "superres": 0.1}


@pytest.fixture(scope="module")
def restorer() -> Restorer:
    return Restorer.from_checkpoint(shipped_checkpoint(), device="cpu")


@pytest.fixture(scope="module")
def held_out_crop() -> np.ndarray:
    """A 192x192 crop of the photo the default recipe never trains on (the checkpoint says which)."""
    _, _, saved = load_checkpoint(shipped_checkpoint())
    photo = saved["extra"]["held_out"][0]
    image = {ref.name: ref for ref in sample_images()}[photo].load()
    top, left = (image.shape[0] - 192) // 2, (image.shape[1] - 192) // 2
    return image[top : top + 192, left : left + 192]


def test_the_shipped_weights_load_and_know_every_image_task(restorer):
    assert restorer.tasks == tuple(IMAGE_TASKS)
    assert restorer.colour_stage is not None, "the shipped model names its colour stage, which loads"
    files = [shipped_checkpoint(), shipped_checkpoint().with_name("default.colour.safetensors")]
    assert sum(file.stat().st_size for file in files) < 15_000_000, "the package may grow by about 15 MB at most"
    card = shipped_card().read_text()
    assert "models/default/train.sh" in card and "Held-out photo" in card


@pytest.mark.parametrize("task", IMAGE_TASKS)
def test_the_intent_head_reads_a_plain_request_for_each_task(restorer, task):
    assert restorer.intent(DEFAULT_INSTRUCTIONS[task])[0] == task


@pytest.mark.parametrize(
    "task",
    [
        pytest.param(task, marks=pytest.mark.xfail(strict=True, reason=NOT_YET_REASON)) if task in NOT_YET else task
        for task in IMAGE_TASKS
    ],
)
def test_restoring_a_held_out_crop_improves_psnr(restorer, held_out_crop, task):
    degraded = damage(held_out_crop, task)
    restored = restorer.restore(degraded, DEFAULT_INSTRUCTIONS[task])
    assert psnr(restored, held_out_crop) > psnr(degraded, held_out_crop) + MARGIN_DB.get(task, 0.5)


def test_a_deblur_request_keeps_the_input_mean_colour_and_a_low_light_one_is_left_alone(held_out_crop):
    on = Restorer.from_checkpoint(shipped_checkpoint(), device="cpu", keep_mean=True)
    off = Restorer.from_checkpoint(shipped_checkpoint(), device="cpu", keep_mean=False)
    blurred = damage(held_out_crop, "deblur")
    kept = on.restore(blurred, DEFAULT_INSTRUCTIONS["deblur"])
    drifted = off.restore(blurred, DEFAULT_INSTRUCTIONS["deblur"])
    np.testing.assert_array_equal(kept, match_mean(drifted, blurred))
    assert np.abs(kept.mean(axis=(0, 1)) - blurred.mean(axis=(0, 1))).max() < 2e-3
    dark = damage(held_out_crop, "lowlight")
    request = DEFAULT_INSTRUCTIONS["lowlight"]
    np.testing.assert_array_equal(on.restore(dark, request), off.restore(dark, request))


def test_restore_on_a_fresh_install_uses_the_shipped_model_and_says_so(held_out_crop, tmp_path):
    noisy = tmp_path / "noisy.png"
    degraded = damage(held_out_crop, "denoise")
    Image.fromarray(np.round(degraded * 255).astype(np.uint8)).save(noisy)
    out = tmp_path / "out.png"
    done = run_cli("restore", str(noisy), "remove the noise", "-o", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "the default model that ships with instructir" in done.stderr and "intent: denoise" in done.stdout
    assert psnr(load_image(out), held_out_crop) > psnr(degraded, held_out_crop) + 1.0


def test_the_checkpoint_is_the_given_one_then_the_quick_runs_then_the_shipped_one(tmp_path):
    quick, shipped, given = tmp_path / "quick.safetensors", tmp_path / "shipped.safetensors", tmp_path / "g"
    with pytest.raises(FileNotFoundError, match=r"no --checkpoint given.*instructir run --profile quick"):
        choose_checkpoint(None, quick, shipped)
    shipped.write_bytes(b"x")
    assert choose_checkpoint(None, quick, shipped)[0] == shipped
    quick.write_bytes(b"x")
    assert choose_checkpoint(None, quick, shipped) == (
        quick,
        "the quick run's model (`instructir run --profile quick`)",
    )
    assert choose_checkpoint(given, quick, shipped)[0] == given


def test_an_empty_request_is_refused_and_an_unclear_one_warns_with_the_two_likeliest_tasks(tmp_path):
    image = tmp_path / "a.png"
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(image)
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.safetensors")
    blank = run_cli("restore", str(image), "  ", "--checkpoint", str(checkpoint), "-o", str(tmp_path / "b.png"))
    assert blank.returncode == 2 and "the request is empty" in blank.stderr
    assert not (tmp_path / "b.png").exists()
    unclear = run_cli(
        "restore", str(image), "do the thing", "--checkpoint", str(checkpoint), "-o", str(tmp_path / "c.png")
    )
    assert unclear.returncode == 0, unclear.stderr
    ranked = Restorer.from_checkpoint(checkpoint, device="cpu").intents("do the thing")
    assert ranked[0][1] < 0.6, "a random head should be unsure"
    assert f"{ranked[0][0]} ({ranked[0][1]:.0%}) or {ranked[1][0]} ({ranked[1][1]:.0%})" in unclear.stderr
