"""The learned colour stage: identity untrained, learns to undo a retouch on unseen photos, saves, and is wired in."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import photo, run_cli, tiny_model
from PIL import Image

from instructir.datasets.degradations import get_degradation
from instructir.datasets.sources import sample_images
from instructir.model import TextHead
from instructir.model.checkpoint import save_checkpoint
from instructir.model.colour import (
    FEATURES,
    ColourStage,
    colour_features,
    colour_stage_facts,
    fit_colour_stage,
    load_colour_stage,
    save_colour_stage,
)
from instructir.model.metrics import psnr
from instructir.model.restore import Restorer, blend_colour_stage
from instructir.tasks import all_tasks, task_names

RETOUCH = get_degradation("retouch")
# One washed-out retouch (desaturated, flat, lifted blacks): a few hundred steps learn to undo it.
WASHED_OUT = {
    "white_balance": None,
    "saturation": 0.5,
    "contrast": 0.7,
    "tone_curve": {"black": 0.1, "white": 0.9, "gamma": 1.0},
}
ENHANCE = "Enhance the colours, they look washed out."


def washed_out(clean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return RETOUCH.apply(clean, WASHED_OUT)


def photos(*names: str) -> list[np.ndarray]:
    refs = {ref.name.split("/")[-1]: ref for ref in sample_images()}
    return [refs[name].load()[::2, ::2] for name in names]


@pytest.fixture(scope="module")
def trained() -> ColourStage:
    return fit_colour_stage(
        photos("astronaut", "coffee", "china"), washed_out, np.random.default_rng(0), steps=300, batch=16, crop=48
    )


def test_an_untrained_stage_leaves_any_image_as_it_is():
    image = np.random.default_rng(1).random((23, 37, 3), dtype=np.float32)
    np.testing.assert_allclose(ColourStage().apply(image), image, atol=1e-6)


def test_features_are_finite_for_tiny_grey_and_black_images():
    images = torch.stack([torch.zeros(3, 5, 7), torch.full((3, 5, 7), 0.5), torch.rand(3, 5, 7)])
    features = colour_features(images)
    assert features.shape == (3, FEATURES) and torch.isfinite(features).all()


def test_a_trained_stage_undoes_the_retouch_on_photos_it_never_saw(trained):
    for clean in photos("chelsea", "flower", "rocket"):
        damaged = washed_out(clean, np.random.default_rng(0))
        assert psnr(trained.apply(damaged), clean) > psnr(damaged, clean) + 3.0


def test_a_saved_stage_loads_and_gives_the_same_output(trained, tmp_path):
    save_colour_stage(trained, tmp_path / "stage.safetensors", {"steps": 300})
    image = photo(32, 40)
    np.testing.assert_array_equal(load_colour_stage(tmp_path / "stage.safetensors").apply(image), trained.apply(image))
    assert colour_stage_facts(tmp_path / "stage.safetensors") == {"steps": 300}
    save_checkpoint(tmp_path / "model.safetensors", tiny_model(), TextHead(num_classes=len(task_names())))
    with pytest.raises(ValueError, match="not a colour stage"):
        load_colour_stage(tmp_path / "model.safetensors")


def test_the_restorer_uses_the_stage_a_checkpoint_names_for_enhance_requests_only(trained, tmp_path):
    assert [task.name for task in all_tasks() if task.global_colour] == ["enhance"]
    save_colour_stage(trained, tmp_path / "stage.safetensors")
    named = tmp_path / "named.safetensors"
    save_checkpoint(
        named, tiny_model(), TextHead(num_classes=len(task_names())), extra={"colour_stage": "stage.safetensors"}
    )
    with_stage = Restorer.from_checkpoint(named, device="cpu")
    without = Restorer.from_checkpoint(named, device="cpu", colour=False)
    assert with_stage.colour_stage is not None and without.colour_stage is None
    image = photo(32, 48)
    for request in (ENHANCE, "Remove the noise from this photo."):
        staged, plain = with_stage.restore(image, request), without.restore(image, request)
        if with_stage.intent(request)[0] == "enhance":
            np.testing.assert_array_equal(staged, blend_colour_stage(plain, trained.apply(image)))
        else:
            np.testing.assert_array_equal(staged, plain)
    # A tiny random head reads requests at random: force the enhance branch through the registry's flag instead.
    with_stage._vectors[ENHANCE] = (with_stage.embedding(ENHANCE), np.eye(len(task_names()))[6])
    without._vectors[ENHANCE] = (without.embedding(ENHANCE), np.eye(len(task_names()))[6])
    blended = blend_colour_stage(without.restore(image, ENHANCE), trained.apply(image))
    np.testing.assert_array_equal(with_stage.restore(image, ENHANCE), blended)
    assert not np.array_equal(blended, without.restore(image, ENHANCE))


def test_a_missing_stage_file_is_a_clear_error_and_the_cli_can_turn_the_stage_off(trained, tmp_path):
    named = tmp_path / "named.safetensors"
    save_checkpoint(
        named, tiny_model(), TextHead(num_classes=len(task_names())), extra={"colour_stage": "gone.safetensors"}
    )
    with pytest.raises(FileNotFoundError, match=r"gone\.safetensors.*--no-colour"):
        Restorer.from_checkpoint(named, device="cpu")
    image = tmp_path / "a.png"
    Image.fromarray((photo(32, 48) * 255).astype(np.uint8)).save(image)
    failed = run_cli("restore", str(image), ENHANCE, "--checkpoint", str(named), "-o", str(tmp_path / "o.png"))
    assert failed.returncode == 2 and "--no-colour" in failed.stderr
    done = run_cli(
        "restore", str(image), ENHANCE, "--checkpoint", str(named), "-o", str(tmp_path / "o.png"), "--no-colour"
    )
    assert done.returncode == 0, done.stderr
    assert "colour stage on" not in done.stderr
    save_colour_stage(trained, tmp_path / "gone.safetensors")
    done = run_cli("restore", str(image), ENHANCE, "--checkpoint", str(named), "-o", str(tmp_path / "o.png"))
    assert done.returncode == 0 and "colour stage on for enhance requests" in done.stderr, done.stderr
