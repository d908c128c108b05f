"""`instructir init` / `instructir run`: config validation, fingerprints, skipping, and resuming after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from chat_server import ChatServer
from conftest import REPO, cli_env, run_cli
from safetensors.numpy import load_file

from instructir.pipeline import STAGES, load_config, profile_config, render_config
from instructir.pipeline.config import validate_config
from instructir.pipeline.runner import fingerprint, read_state


def tiny_config(out: Path, url: str, **overrides) -> dict:
    """A whole run in well under a minute: a loopback LLM, two tasks, a tiny model."""
    config = {
        "profile": "quick",
        "out": str(out),
        "generate": {"backend": "openai", "base_url": url, "model": "test-model", "per_task": 6},
        "dataset": {"corpus": "generated", "tasks": ["denoise", "lowlight"], "per_image": 2, "patch": 64},
        # A width-8 network from scratch: the profile's fine-tune of the default model would take minutes.
        "train": {
            "steps": 40,
            "batch": 2,
            "patch": 32,
            "width": 8,
            "checkpoint_every": 10,
            "on_the_fly": False,
            "augment": False,
            "init": None,
        },
        "evaluate": {"split": "test"},
        "analyze": {"clusters": True, "diversity": True, "compare_with": None, "real": str(REAL)},
    }
    config["generate"]["tasks"] = ["denoise", "lowlight"]
    for section, values in overrides.items():
        config[section] = {**config.get(section, {}), **values}
    return config


REAL = REPO / "tests" / "data" / "real_requests.jsonl"


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def run_command(config: Path) -> list[str]:
    return [sys.executable, "-m", "instructir", "run", str(config), "--no-progress"]


def test_init_writes_a_commented_config_that_loads_back_as_the_profile(tmp_path):
    result = run_cli("init", str(tmp_path / "run.yaml"), "--profile", "paper")
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "run.yaml").read_text()
    assert "# " in text and "accelerate" in text
    assert load_config(tmp_path / "run.yaml") == profile_config("paper")
    again = run_cli("init", str(tmp_path / "run.yaml"))
    assert again.returncode != 0 and "--overwrite" in again.stderr


def test_bad_configs_name_the_bad_key_and_exit_non_zero(tmp_path):
    config = write_config(tmp_path / "bad.yaml", {"train": {"stpes": 10, "batch": 0}, "dataset": {"tasks": ["x"]}})
    result = run_cli("run", str(config))
    assert result.returncode != 0
    for expected in ("train.stpes: unknown key", "train.batch", "dataset.tasks: unknown task(s): x"):
        assert expected in " ".join(result.stderr.split()), result.stderr
    absent = write_config(tmp_path / "absent.yaml", {"profile": "quick", "analyze": {"real": "nowhere.jsonl"}})
    result = run_cli("run", str(absent))
    assert result.returncode != 0 and "analyze.real: no such file" in result.stderr, result.stderr
    assert "running" not in result.stdout  # refused before any stage started
    missing = run_cli("run", str(tmp_path / "nope.yaml"))
    assert missing.returncode != 0 and "instructir init" in missing.stderr


def test_a_changed_setting_changes_only_the_fingerprints_of_the_stages_it_affects():
    base = profile_config("quick")
    changed = validate_config({**base.model_dump(), "train": {**base.train.model_dump(), "steps": 7}})

    def prints(config):
        found: dict[str, str] = {}
        for stage in STAGES:
            found[stage] = fingerprint(stage, config, found)
        return found

    before, after = prints(base), prints(changed)
    differs = {stage for stage in STAGES if before[stage] != after[stage]}
    assert differs == {"train", "evaluate", "analyze"}  # the analysis reads the trained model
    generated = validate_config({**base.model_dump(), "dataset": {**base.dataset.model_dump(), "corpus": "generated"}})
    regenerated = validate_config(
        {**generated.model_dump(), "generate": {**generated.generate.model_dump(), "per_task": 5}}
    )
    assert {s for s in STAGES if prints(generated)[s] != prints(regenerated)[s]} == set(STAGES)
    assert render_config(base).startswith("#")


def outputs_of(out: Path) -> dict:
    """Everything a run produced that must not depend on being interrupted (timestamps left out)."""
    found = {}
    for stage, file in (("generate", "candidates.parquet"), ("filter", "corpus.parquet")):
        table = pq.read_table(out / stage / file).drop_columns(["created_at"])
        found[stage] = table.to_pylist()
    from datasets import load_from_disk

    dataset = load_from_disk(str(out / "dataset" / "dataset"))
    found["dataset"] = {split: dataset[split].to_pandas().to_dict("list") for split in dataset}
    found["train"] = load_file(out / "train" / "model" / "final.safetensors")
    evaluation = json.loads((out / "evaluate" / "evaluation.json").read_text())
    found["evaluate"] = [{k: v for k, v in sample.items() if k != "seconds"} for sample in evaluation["samples"]]
    reports = sorted((out / "analyze").glob("*/metrics.json"))
    assert [path.parent.name for path in reports] == ["clusters", "diversity", "generalization", "routing"]
    # Reports name their inputs by path: compare them relative to the run folder.
    found["analyze"] = {
        path.parent.name: _timeless(json.loads(path.read_text().replace(str(out), "RUN"))) for path in reports
    }
    return found


def _timeless(value):
    """``value`` without wall-clock fields, which differ between any two runs."""
    if isinstance(value, dict):
        return {k: _timeless(v) for k, v in value.items() if "second" not in k}
    if isinstance(value, list):
        return [_timeless(v) for v in value]
    return value


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for stage in a:
        if stage == "train":
            assert a[stage].keys() == b[stage].keys()
            for name in a[stage]:
                np.testing.assert_array_equal(a[stage][name], b[stage][name], err_msg=name)
        else:
            assert a[stage] == b[stage], stage


def kill_during(command: list[str], out: Path, stage: str, ready=None, timeout: float = 240) -> str:
    """Start the run, SIGKILL it once ``stage`` is running (and ``ready()`` holds); return the state it left."""
    process = subprocess.Popen(command, env=cli_env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            state = read_state(out / stage)
            if state and state["status"] == "running" and (ready is None or ready()):
                os.kill(process.pid, signal.SIGKILL)
                break
            if process.poll() is not None:
                pytest.fail(f"the run ended before {stage} could be killed: {process.stderr.read().decode()[-2000:]}")
            time.sleep(0.005)
        else:
            pytest.fail(f"{stage} never started")
    finally:
        process.wait()
    return read_state(out / stage)["status"]


@pytest.mark.slow
def test_sigkill_in_every_stage_then_rerun_gives_the_uninterrupted_outputs(tmp_path):
    with ChatServer(delay=0.02) as server:
        whole = write_config(tmp_path / "whole.yaml", tiny_config(tmp_path / "whole", server.url))
        done = subprocess.run(run_command(whole), env=cli_env(), cwd=REPO, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        manifest = json.loads((tmp_path / "whole" / "manifest.json").read_text())
        assert all(record["ran"] for record in manifest["stages"].values())
        assert manifest["versions"]["torch"].startswith("2.")

        out = tmp_path / "killed"
        killed = write_config(tmp_path / "killed.yaml", tiny_config(out, server.url))
        checkpoints = out / "train" / "model" / "checkpoints"
        ready = {"train": lambda: any(checkpoints.glob("step-*/training_state.pt"))}
        left = {stage: kill_during(run_command(killed), out, stage, ready.get(stage)) for stage in STAGES}
        assert list(left.values()).count("running") >= len(STAGES) - 1, left
        resumed = subprocess.run(run_command(killed), env=cli_env(), cwd=REPO, capture_output=True, text=True)
        assert resumed.returncode == 0, resumed.stderr
        assert_same(outputs_of(tmp_path / "whole"), outputs_of(out))

        again = run_cli("run", str(whole), "--no-progress")
        assert again.returncode == 0 and again.stdout.count("skipped") >= len(STAGES), again.stdout
        changed = write_config(whole, tiny_config(tmp_path / "whole", server.url, evaluate={"limit": 1}))
        partial = run_cli("run", str(changed), "--no-progress")
        ran = [line.split(":")[0] for line in partial.stdout.splitlines() if ": running ->" in line]
        assert ran == ["evaluate"], partial.stdout


def embedded_llm_config(out: Path) -> dict:
    """A run with the embedded LLM writing the requests and on-the-fly training (the main job's shape), kept tiny.

    The filter keeps its cheap stages only, so the few requests the 135M model writes per task survive it."""
    return {
        "profile": "quick",
        "out": str(out),
        "generate": {"backend": "local", "per_task": 4, "tasks": ["denoise", "lowlight"]},
        "filter": {"embeddings": False, "learned_quality": False},
        "dataset": {"corpus": "generated", "tasks": ["denoise", "lowlight"], "per_image": 2, "patch": 64},
        "train": {
            "steps": 160,
            "batch": 4,
            "patch": 32,
            "lr": 2e-3,
            "warmup": 10,
            "width": 8,
            "enc_blks": [1, 1, 1, 1],
            "middle_blks": 1,
            "dec_blks": [1, 1, 1, 1],
            "checkpoint_every": 40,
            "on_the_fly": True,
            "init": None,
        },
        "evaluate": {"split": "test"},
        "analyze": {"clusters": False, "diversity": False, "compare_with": None, "real": None},
    }


@pytest.mark.slow
def test_an_on_the_fly_run_with_the_embedded_llm_resumes_after_sigkill_in_training_and_learns(tmp_path):
    whole = write_config(tmp_path / "whole.yaml", embedded_llm_config(tmp_path / "whole"))
    done = subprocess.run(run_command(whole), env=cli_env(), cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    corpus = pq.read_table(tmp_path / "whole" / "filter" / "corpus.parquet").to_pylist()
    generated = [row for row in corpus if row["source"] != "seed"]
    assert {row["task"] for row in generated} == {"denoise", "lowlight"}, "each task keeps requests the LLM wrote"
    assert {row["backend"] for row in generated} == {"local"}

    out = tmp_path / "killed"
    killed = write_config(tmp_path / "killed.yaml", embedded_llm_config(out))
    checkpoints = out / "train" / "model" / "checkpoints"
    assert kill_during(run_command(killed), out, "train", lambda: (checkpoints / "step-0000080").exists()) == "running"
    assert not (out / "train" / "model" / "final.safetensors").exists()
    resumed = subprocess.run(run_command(killed), env=cli_env(), cwd=REPO, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    ours = load_file(out / "train" / "model" / "final.safetensors")
    theirs = load_file(tmp_path / "whole" / "train" / "model" / "final.safetensors")
    assert ours.keys() == theirs.keys()
    for name in ours:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)

    evaluation = json.loads((out / "evaluate" / "evaluation.json").read_text())["overall"]
    assert evaluation["psnr"] > evaluation["input_psnr"] + 1.0, evaluation


def test_the_accelerate_command_carries_every_training_setting(monkeypatch):
    from typer.testing import CliRunner

    from instructir.cli import app
    from instructir.model import train as train_module
    from instructir.model.train import TrainConfig
    from instructir.pipeline.stages import accelerate_command

    config = TrainConfig(
        data="runs/x/dataset",
        out="runs/x/model",
        steps=7,
        batch=6,
        patch=48,
        lr=3e-4,
        warmup=3,
        text_weight=0.2,
        checkpoint_every=5,
        log_every=2,
        seed=9,
        width=8,
        enc_blks=(1, 2, 1, 1),
        middle_blk_num=2,
        dec_blks=(1, 1, 2, 1),
        encoder="TaylorAI/bge-micro-v2",
        on_the_fly=True,
        corpus="requests.parquet",
        workers=1,
        compile=True,
        augment=True,
        init="runs/base/final.safetensors",
    )
    command = accelerate_command(config, processes=2, resume=True)
    assert command[:4] == [sys.executable, "-m", "accelerate.commands.launch", "--num_processes=2"]
    seen = {}

    def fake_train(config, resume, show_progress, status=None):
        seen.update(config=config, resume=resume)
        return {"steps": config.steps, "final": "final.safetensors", "log": "log.csv"}

    monkeypatch.setattr(train_module, "train", fake_train)
    result = CliRunner().invoke(app, command[command.index("train") :])
    assert result.exit_code == 0, result.output
    assert seen == {"config": config, "resume": True}
