"""Inference and evaluation: tiled equals untiled, any size and mode in, skipped bad files, metrics that add up."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from conftest import photo, run_cli, save_tiny_checkpoint, tiny_model
from PIL import Image

from instructir.datasets.build import BuildConfig, build_dataset
from instructir.datasets.images import load_image
from instructir.datasets.instructions import InstructionPool
from instructir.datasets.sources import sample_images
from instructir.model import TextHead
from instructir.model.checkpoint import save_checkpoint
from instructir.model.evaluate import (
    DEFAULT_INSTRUCTIONS,
    SUMMARY_COLUMNS,
    evaluate_dataset,
    evaluate_paired,
    summary_table,
)
from instructir.model.metrics import psnr
from instructir.model.restore import Restorer, auto_tile, match_mean, restore_image, restore_paths, tile_starts
from instructir.prompts.embed import DEFAULT_ENCODER
from instructir.tasks import task_names

REQUEST = "Remove the noise from this photo."


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "final.safetensors", tiny_model())


@pytest.fixture(scope="module")
def restorer(checkpoint) -> Restorer:
    return Restorer.from_checkpoint(checkpoint, device="cpu")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "denoise"
    config = BuildConfig(tasks=("denoise",), per_image=1, patch=64)
    build_dataset(out, InstructionPool.from_corpus(), sample_images()[:3], config=config)
    return out


def test_tiled_restoration_matches_one_pass_without_seams():
    model = tiny_model()
    embedding = torch.nn.functional.normalize(torch.randn(1, 256, generator=torch.Generator().manual_seed(1)), dim=1)
    image = photo(192, 256)
    whole = restore_image(model, embedding, image)
    assert np.abs(whole - image).mean() > 0.02  # the network really changes the image
    for tile, overlap in ((96, 32), (64, 16)):
        tiled = restore_image(model, embedding, image, tile=tile, overlap=overlap)
        difference = np.abs(tiled - whole)
        assert tiled.shape == image.shape and tiled.dtype == np.float32
        assert difference.max() < 2e-2 and difference.mean() < 2e-3, (tile, difference.max(), difference.mean())
    with pytest.raises(ValueError, match="multiple of 16"):
        restore_image(model, embedding, image, tile=50)
    with pytest.raises(ValueError, match="overlap"):
        restore_image(model, embedding, image, tile=64, overlap=64)


def test_tiles_cover_the_image_and_large_images_tile_automatically():
    assert tile_starts(100, 100, 32) == [0]
    starts = tile_starts(300, 128, 32)
    assert starts[0] == 0 and starts[-1] + 128 == 300
    assert all(b - a <= 128 - 32 for a, b in itertools.pairwise(starts))
    assert auto_tile(1024, 1024, "cpu") is None and auto_tile(1025, 1024, "cpu") == 512
    assert auto_tile(2048, 2048, "cuda") is None and auto_tile(4096, 4096, "cuda") == 1024


def test_odd_sizes_come_back_at_their_own_size():
    model = tiny_model()
    embedding = torch.nn.functional.normalize(torch.ones(1, 256), dim=1)
    image = np.random.default_rng(0).random((37, 53, 3), dtype=np.float32)
    for tile in (None, 32):
        out = restore_image(model, embedding, image, tile=tile, overlap=8)
        assert out.shape == (37, 53, 3) and out.min() >= 0 and out.max() <= 1


def test_self_ensemble_averages_the_upside_down_and_mirrored_views():
    model = tiny_model()
    embedding = torch.nn.functional.normalize(torch.ones(1, 256), dim=1)
    image = photo(48, 80)
    views = []
    for mirror in (False, True):
        for quarters in (0, 2):
            turned = np.rot90(image[:, ::-1] if mirror else image, quarters)
            out = np.rot90(restore_image(model, embedding, np.ascontiguousarray(turned)), -quarters)
            views.append(out[:, ::-1] if mirror else out)
    single = restore_image(model, embedding, image)
    ensembled = restore_image(model, embedding, image, ensemble=True)
    assert ensembled.shape == image.shape and ensembled.dtype == np.float32
    assert np.abs(ensembled - np.mean(views, axis=0)).max() < 1e-4
    assert np.abs(ensembled - single).mean() > 1e-3  # a random network is not symmetric: the views differ
    tiled = restore_image(model, embedding, image, tile=32, overlap=8, ensemble=True)
    assert tiled.shape == image.shape and np.abs(tiled - ensembled).mean() < 5e-3


def test_matching_the_mean_moves_each_channel_to_the_reference_mean_within_0_1():
    reference = photo(40, 56)
    drifted = np.clip(reference * 0.9 + np.array([0.05, -0.02, 0.0], dtype=np.float32), 0, 1)
    matched = match_mean(drifted, reference)
    assert matched.dtype == np.float32 and matched.shape == reference.shape
    assert np.abs(matched.mean(axis=(0, 1)) - reference.mean(axis=(0, 1))).max() < 2e-3
    assert matched.min() >= 0.0 and matched.max() <= 1.0
    inside = ((matched > 0) & (matched < 1)).all(axis=2)  # away from clipping, every pixel moves by the same shift
    assert inside.mean() > 0.5
    assert np.ptp((matched - drifted)[inside], axis=0).max() < 1e-6


@pytest.mark.parametrize(
    ("option", "flag", "said"),
    [
        ("ensemble", "--no-ensemble", "self-ensemble: on"),
        ("keep_mean", "--no-keep-mean", "mean colour kept for deblur, superres requests"),
    ],
)
def test_a_checkpoint_can_ask_for_a_restoring_option_that_arguments_and_flags_override(tmp_path, option, flag, said):
    plain = save_tiny_checkpoint(tmp_path / "plain.safetensors", tiny_model())
    asks = tmp_path / "asks.safetensors"
    save_checkpoint(asks, tiny_model(), TextHead(num_classes=len(task_names())), extra={option: True})
    assert not getattr(Restorer.from_checkpoint(plain, device="cpu"), option)
    assert getattr(Restorer.from_checkpoint(asks, device="cpu"), option)
    assert not getattr(Restorer.from_checkpoint(asks, device="cpu", **{option: False}), option)
    assert getattr(Restorer.from_checkpoint(plain, device="cpu", **{option: True}), option)
    image = tmp_path / "a.png"
    Image.fromarray((photo(32, 48) * 255).astype(np.uint8)).save(image)
    for flags, shown in (((), True), ((flag,), False)):
        done = run_cli("restore", str(image), REQUEST, "--checkpoint", str(asks), "-o", str(tmp_path / "o.png"), *flags)
        assert done.returncode == 0, done.stderr
        assert (said in done.stderr) is shown


def test_intent_names_a_registered_task_with_a_probability(restorer):
    task, confidence = restorer.intent(REQUEST)
    assert task in task_names() and 0 < confidence <= 1
    assert restorer.embedding(REQUEST).shape == (1, 256)


def test_official_pairs_need_the_head_file(tmp_path):
    model, head = tiny_model(), TextHead()
    torch.save(model.state_dict(), tmp_path / "im_tiny.pt")
    torch.save(head.state_dict(), tmp_path / "lm_tiny.pt")
    with pytest.raises(ValueError, match=r"no text head.*lm_instructir"):
        Restorer.from_checkpoint(tmp_path / "im_tiny.pt", encoder=DEFAULT_ENCODER)
    paired = Restorer.from_checkpoint(
        tmp_path / "im_tiny.pt", encoder=DEFAULT_ENCODER, head_path=tmp_path / "lm_tiny.pt", device="cpu"
    )
    task, confidence = paired.intent(REQUEST)
    assert paired.num_classes == 7 and task in task_names()[:7] and 0 < confidence <= 1


def test_restore_paths_writes_one_png_to_a_file_path(restorer, tmp_path):
    source = tmp_path / "in.jpg"
    Image.fromarray((photo(40, 50) * 255).astype(np.uint8)).save(source)
    reports = restore_paths(restorer, [source], REQUEST, tmp_path / "out.png")
    assert reports[0]["status"] == "written" and load_image(tmp_path / "out.png").shape == (40, 50, 3)
    assert not list(tmp_path.glob(".*.tmp"))


def test_restore_paths_writes_the_format_the_output_suffix_names(restorer, tmp_path):
    source = tmp_path / "in.png"
    Image.fromarray((photo(40, 50) * 255).astype(np.uint8)).save(source)
    restore_paths(restorer, [source], REQUEST, tmp_path / "out.png")
    reference = np.asarray(Image.open(tmp_path / "out.png"), dtype=np.int16)
    for name, pillow_format, lossless in [
        ("out.JPG", "JPEG", False),
        ("out.webp", "WEBP", True),
        ("out.tiff", "TIFF", True),
    ]:
        reports = restore_paths(restorer, [source], REQUEST, tmp_path / name)
        assert reports[0]["status"] == "written"
        with Image.open(tmp_path / name) as written:
            assert written.format == pillow_format and written.size == (50, 40)
            pixels = np.asarray(written.convert("RGB"), dtype=np.int16)
        error = np.abs(pixels - reference)
        assert error.max() == 0 if lossless else 0 < error.mean() < 3
    with pytest.raises(ValueError, match=r"'\.bmp'.*\.png, \.jpg"):
        restore_paths(restorer, [source], REQUEST, tmp_path / "out.bmp")
    assert not (tmp_path / "out.bmp").exists()


def test_cli_restore_folder_skips_a_truncated_file_and_keeps_every_size(checkpoint, tmp_path):
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    rgb = (photo(37, 53) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(folder / "odd.png")
    Image.fromarray(rgb[:, :, 0]).convert("L").save(folder / "nested" / "grey.png")
    rgba = np.dstack([rgb[:30, :41], np.full((30, 41), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(folder / "alpha.png")
    Image.fromarray(rgb).save(tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    (folder / "broken.png").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    done = run_cli("restore", str(folder), REQUEST, "--checkpoint", str(checkpoint), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "intent:" in done.stdout and "wrote 3 of 4" in done.stdout
    assert "broken.png" in done.stderr and "truncated" in done.stderr
    assert load_image(out / "odd.png").shape == (37, 53, 3)
    assert load_image(out / "nested" / "grey.png").shape == (37, 53, 3)
    assert load_image(out / "alpha.png").shape == (30, 41, 3)
    assert not (out / "broken.png").exists()


def test_cli_restore_with_a_missing_checkpoint_exits_2(tmp_path):
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)
    done = run_cli("restore", str(image), REQUEST, "--checkpoint", str(tmp_path / "nope.safetensors"), "-o", "x.png")
    assert done.returncode == 2
    assert "nope.safetensors: no such checkpoint" in done.stderr


def test_evaluate_dataset_reports_finite_metrics_and_the_input_baseline(restorer, dataset):
    result = evaluate_dataset(restorer, dataset)
    stats = result["tasks"]["denoise"]
    assert stats["count"] == result["overall"]["count"] >= 1
    assert all(np.isfinite(stats[key]) for key in ("psnr", "ssim", "psnr_y", "input_psnr", "input_ssim_y"))
    assert 0 <= result["intent_accuracy"] <= 1 and stats["intent_rows"] == stats["count"]
    row = datasets.load_from_disk(str(dataset))["test"][0]
    clean = np.asarray(row["clean"], dtype=np.float32) / 255
    degraded = np.asarray(row["degraded"], dtype=np.float32) / 255
    sample = next(sample for sample in result["samples"] if sample["id"] == row["id"])
    assert sample["input_psnr"] == psnr(degraded, clean)
    assert sample["psnr"] != sample["input_psnr"]


def test_a_model_with_a_zero_ending_returns_its_input(restorer, dataset):
    model = tiny_model(seed=3)
    with torch.no_grad():
        model.ending.weight.zero_()
        model.ending.bias.zero_()
    identity = Restorer(model, restorer.head, restorer.encoder, device="cpu")
    image = photo(37, 53)
    assert np.array_equal(identity.restore(image, REQUEST), image)
    result = evaluate_dataset(identity, dataset)
    for sample in result["samples"]:
        assert sample["psnr"] == sample["input_psnr"] and sample["ssim_y"] == sample["input_ssim_y"]


def test_cli_eval_prints_a_table_and_writes_json(checkpoint, dataset, tmp_path):
    report = tmp_path / "eval.json"
    done = run_cli("eval", "--checkpoint", str(checkpoint), "--data", str(dataset), "--json", str(report))
    assert done.returncode == 0, done.stderr
    assert "denoise" in done.stdout and "overall" in done.stdout
    result = json.loads(report.read_text())["dataset"]
    assert result["tasks"]["denoise"]["count"] == len(result["samples"]) >= 1
    missing = run_cli("eval", "--checkpoint", str(checkpoint))
    assert missing.returncode == 2 and "--data" in missing.stderr


def test_evaluate_paired_crops_to_16_and_reports_y_for_rain(restorer, tmp_path):
    rng = np.random.default_rng(0)
    for folder in ("input", "target"):
        (tmp_path / "rain" / folder).mkdir(parents=True)
    for index in range(2):
        clean = (photo(40, 50) * 255).astype(np.uint8)
        rainy = np.clip(clean + rng.integers(0, 60, clean.shape), 0, 255).astype(np.uint8)
        Image.fromarray(clean).save(tmp_path / "rain" / "target" / f"{index}.png")
        Image.fromarray(rainy).save(tmp_path / "rain" / "input" / f"{index}.png")
    result = evaluate_paired(restorer, f"rain100l:{tmp_path / 'rain'}")
    assert result["primary"] == "y" and result["instructions"] == {"derain": DEFAULT_INSTRUCTIONS["derain"]}
    assert result["groups"]["rain100l"]["count"] == 2 and np.isfinite(result["overall"]["psnr_y"])
    clean = load_image(tmp_path / "rain" / "target" / "0.png")[:32, :48]
    rainy = load_image(tmp_path / "rain" / "input" / "0.png")[:32, :48]
    first = next(sample for sample in result["samples"] if sample["id"].endswith("/0"))
    assert first["input_psnr_y"] == psnr(rainy, clean, test_y_channel=True)
    table = summary_table(result)
    assert [row[0] for row in table] == ["rain100l", "overall"] and len(table[0]) == len(SUMMARY_COLUMNS)
    assert table[1][2:4] == [f"{result['overall'][key]:.2f}" for key in ("input_psnr_y", "psnr_y")]
    (tmp_path / "clean").mkdir()
    Image.fromarray((photo(48, 48) * 255).astype(np.uint8)).save(tmp_path / "clean" / "a.png")
    noisy = evaluate_paired(restorer, f"cbsd68:{tmp_path / 'clean'}", instruction="denoise it")
    assert list(noisy["groups"]) == ["cbsd68 sigma=15", "cbsd68 sigma=25", "cbsd68 sigma=50"]
    assert noisy["primary"] == "rgb" and noisy["instructions"] == {"denoise": "denoise it"}
