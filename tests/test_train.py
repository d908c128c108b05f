"""Training on the CPU: a short run learns to denoise, and a SIGKILLed run resumes to the same weights."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, cli_env, run_cli

from instructir.datasets.build import BuildConfig, build_dataset
from instructir.datasets.instructions import InstructionPool
from instructir.datasets.sources import sample_images
from instructir.model.checkpoint import load_checkpoint
from instructir.model.shipped import shipped_checkpoint
from instructir.model.train import StatusLines, status_line
from instructir.pipeline import profile_config
from instructir.prompts.embed import Embedder

TINY = ["--width", "8", "--enc-blks", "1,1", "--middle-blks", "1", "--dec-blks", "1,1"]


@pytest.fixture(scope="module")
def denoise_data(tmp_path_factory) -> Path:
    """Noisy/clean crops of the wheel photos: train on 9 photos, measure on the other 2."""
    out = tmp_path_factory.mktemp("data") / "denoise"
    config = BuildConfig(tasks=("denoise",), per_image=8, patch=64, seed=0, validation_fraction=0.1, test_fraction=0.1)
    build_dataset(out, InstructionPool.from_corpus(), sample_images(), config=config)
    return out


def held_out_l1(checkpoint: Path, data: Path) -> tuple[float, float]:
    """Mean L1 of the restored and of the degraded images against the clean ones on the test split."""
    import datasets

    model, head, _ = load_checkpoint(checkpoint)
    test = datasets.load_from_disk(str(data))["test"]
    embedder = Embedder()
    restored_l1, input_l1 = [], []
    with torch.no_grad():
        for row in test:
            clean = torch.from_numpy(np.asarray(row["clean"], dtype=np.float32) / 255).permute(2, 0, 1)[None]
            degraded = torch.from_numpy(np.asarray(row["degraded"], dtype=np.float32) / 255).permute(2, 0, 1)[None]
            embedding, _ = head(torch.from_numpy(embedder.encode([row["instruction"]])))
            restored = model(degraded, embedding).clamp(0, 1)
            restored_l1.append((restored - clean).abs().mean().item())
            input_l1.append((degraded - clean).abs().mean().item())
    return float(np.mean(restored_l1)), float(np.mean(input_l1))


@pytest.mark.slow
def test_a_short_cpu_training_on_denoising_beats_the_noisy_input(denoise_data, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--data", str(denoise_data), "--out", str(out), "--steps", "300", "--batch", "8"]
    done = run_cli(
        *args, "--patch", "64", "--lr", "2e-3", "--warmup", "10", "--checkpoint-every", "150", *TINY, "--no-progress"
    )
    assert done.returncode == 0, done.stderr
    assert "train: step 300/300 (100%), L1 0." in done.stderr, "off a terminal, training prints plain status lines"
    assert "images/s, ETA 0m00s" in done.stderr
    restored, noisy = held_out_l1(out / "final.safetensors", denoise_data)
    assert restored < 0.8 * noisy, (restored, noisy)
    with (out / "log.csv").open() as handle:
        steps = [int(row["step"]) for row in csv.DictReader(handle)]
    assert steps[-1] == 300 and len(steps) == 30
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-0000150", "step-0000300"]
    _, _, saved = load_checkpoint(out / "final.safetensors")
    assert saved["extra"]["tasks"] == ["denoise"], "a checkpoint names the tasks it was trained on"


def test_status_lines_give_step_rate_and_eta_at_most_every_interval():
    lines: list[str] = []
    status = StatusLines(lines.append, start=100, total=400, batch=8, every=3600.0)
    status.update(101, torch.tensor(0.5))
    assert lines == [], "no line before the interval has passed"
    status.update(400, torch.tensor(0.25))
    assert len(lines) == 1 and lines[0].startswith("train: step 400/400 (100%), L1 0.2500, ")
    assert status_line(150, 400, 0.1, steps_done=50, seconds=100.0, batch=8) == (
        "train: step 150/400 (38%), L1 0.1000, 4.0 images/s, ETA 8m20s"
    )


@pytest.mark.slow
def test_sigkill_then_resume_reaches_the_same_weights_as_an_uninterrupted_run(denoise_data, tmp_path):
    common = ["--data", str(denoise_data), "--steps", "40", "--batch", "4", "--patch", "32", "--checkpoint-every", "10"]
    common += [*TINY, "--log-every", "5", "--no-progress"]
    reference = run_cli("train", "--out", str(tmp_path / "reference"), *common)
    assert reference.returncode == 0, reference.stderr

    out = tmp_path / "killed"
    command = [sys.executable, "-m", "instructir", "train", "--out", str(out), *common]
    process = subprocess.Popen(command, env=cli_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (out / "checkpoints" / "step-0000020").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "final.safetensors").exists()
    resumed = run_cli("train", "--out", str(out), *common, "--resume")
    assert resumed.returncode == 0, resumed.stderr

    for name in ("model.safetensors", "ema.safetensors"):
        ours, _, _ = load_checkpoint(out / "checkpoints/step-0000040" / name)
        theirs, _, _ = load_checkpoint(tmp_path / "reference/checkpoints/step-0000040" / name)
        for key, value in ours.state_dict().items():
            assert torch.equal(value, theirs.state_dict()[key]), f"{name}: {key} differs after resume"
    with (out / "log.csv").open() as handle:
        steps = [int(row["step"]) for row in csv.DictReader(handle)]
    assert steps == [5, 10, 15, 20, 25, 30, 35, 40], "log.csv should hold each logged step once after a resume"


def test_train_refuses_bad_input_with_a_clear_message(tmp_path, denoise_data):
    done = run_cli("train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "run"))
    assert done.returncode == 2 and "no dataset at" in done.stderr
    done = run_cli("train", "--data", str(denoise_data), "--out", str(tmp_path / "run"), "--patch", "100")
    assert done.returncode == 2 and "multiple of 16" in done.stderr
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "log.csv").write_text("step\n")
    done = run_cli("train", "--data", str(denoise_data), "--out", str(tmp_path / "used"), "--steps", "1", *TINY)
    assert done.returncode == 2 and "--resume" in done.stderr


def test_a_diverging_run_stops_with_a_clear_message_and_checkpoints_no_diverged_weights(tmp_path, denoise_data):
    out = tmp_path / "run"
    args = ["--data", str(denoise_data), "--out", str(out), "--steps", "30", "--batch", "2", "--patch", "32"]
    args += ["--lr", "1e30", "--warmup", "1", "--log-every", "10", "--checkpoint-every", "4", *TINY, "--no-progress"]
    done = run_cli("train", *args)
    assert done.returncode == 2, done.stderr
    assert "the loss became nan at step 1" in done.stderr and "lower --lr" in done.stderr
    assert "The last good checkpoint is none" in done.stderr
    assert not (out / "checkpoints").exists() and not (out / "final.safetensors").exists()


@pytest.mark.slow
def test_two_process_ddp_through_accelerate_matches_one_process_at_the_same_global_batch(denoise_data, tmp_path):
    args = ["--data", str(denoise_data), "--steps", "6", "--batch", "4", "--patch", "32", "--width", "8"]
    args += ["--checkpoint-every", "3", "--no-progress"]
    single = run_cli("train", *args, "--out", str(tmp_path / "single"))
    assert single.returncode == 0, single.stderr
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    ddp = subprocess.run(
        [*launch, "-m", "instructir", "train", *args, "--out", str(tmp_path / "ddp")],
        env=cli_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one, _, _ = load_checkpoint(tmp_path / "single" / "final.safetensors")
    two, _, _ = load_checkpoint(tmp_path / "ddp" / "final.safetensors")
    for (name, a), (_, b) in zip(one.state_dict().items(), two.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)
    assert sorted(p.name for p in (tmp_path / "ddp" / "checkpoints").iterdir()) == ["step-0000003", "step-0000006"]


@pytest.mark.slow
def test_fine_tuning_starts_from_the_given_weights_and_refuses_another_architecture(denoise_data, tmp_path):
    common = ["--data", str(denoise_data), "--batch", "2", "--patch", "32", "--no-progress"]
    base = run_cli("train", "--out", str(tmp_path / "base"), *common, "--steps", "20", "--lr", "2e-3", *TINY)
    assert base.returncode == 0, base.stderr
    start = tmp_path / "base" / "final.safetensors"

    # One step at a negligible learning rate: the fine-tuned weights are the weights it started from.
    args = ["--steps", "1", "--lr", "1e-12", "--warmup", "1", "--init", str(start), "--on-the-fly", "--augment"]
    tuned = run_cli("train", "--out", str(tmp_path / "tuned"), *common, *args, *TINY)
    assert tuned.returncode == 0, tuned.stderr
    ours, our_head, saved = load_checkpoint(tmp_path / "tuned" / "final.safetensors")
    theirs, their_head, _ = load_checkpoint(start)
    for mine, given in ((ours, theirs), (our_head, their_head)):
        for key, value in mine.state_dict().items():
            assert torch.allclose(value, given.state_dict()[key], atol=1e-6), f"{key} did not start from --init"
    torch.manual_seed(0)
    fresh = type(ours)(width=8, enc_blks=(1, 1), middle_blk_num=1, dec_blks=(1, 1))
    assert any(not torch.allclose(v, fresh.state_dict()[k]) for k, v in ours.state_dict().items())
    assert saved["config"]["init"] == str(start) and saved["config"]["augment"] is True, (
        "the checkpoint records how it was made"
    )

    wider = run_cli("train", "--out", str(tmp_path / "wider"), *common, *args, "--width", "16")
    assert wider.returncode == 2 and "another architecture" in wider.stderr and "--width" in wider.stderr
    built = run_cli("train", "--out", str(tmp_path / "built"), *common, "--augment", "--steps", "1", *TINY)
    assert built.returncode == 2 and "augment needs on_the_fly" in built.stderr


def test_init_shipped_fine_tunes_the_packaged_default_model_at_the_quick_profiles_size(denoise_data, tmp_path):
    settings = profile_config("quick").train
    assert settings.init == "shipped", "the main job fine-tunes the default model"
    size = ["--width", str(settings.width), "--middle-blks", str(settings.middle_blks)]
    size += ["--enc-blks", ",".join(map(str, settings.enc_blks)), "--dec-blks", ",".join(map(str, settings.dec_blks))]
    args = ["--data", str(denoise_data), "--out", str(tmp_path / "tuned"), "--batch", "2", "--patch", "32"]
    args += ["--steps", "1", "--lr", "1e-12", "--warmup", "1", "--init", "shipped", "--on-the-fly", "--no-progress"]
    done = run_cli("train", *args, *size)
    assert done.returncode == 0, done.stderr
    ours, our_head, saved = load_checkpoint(tmp_path / "tuned" / "final.safetensors")
    theirs, their_head, shipped = load_checkpoint(shipped_checkpoint())
    assert len(shipped["extra"]["tasks"]) == 7 and saved["extra"]["tasks"] == shipped["extra"]["tasks"], (
        "fine-tuned on denoising alone, the weights still know every task the shipped model was taught"
    )
    for mine, given in ((ours, theirs), (our_head, their_head)):
        for key, value in mine.state_dict().items():
            assert torch.allclose(value, given.state_dict()[key].float(), atol=1e-6), f"{key} is not the shipped one"
