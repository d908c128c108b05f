"""The default model's recipe scripts: the dataset mix of its blur stage and the rule that keeps a stage."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO, cli_env, load_script

from instructir.datasets.build import BuildConfig, build_dataset, load_built
from instructir.datasets.instructions import InstructionPool
from instructir.datasets.sources import sample_images

MIX = REPO / "models" / "default" / "mix.py"


def run_mix(base, extra, out) -> subprocess.CompletedProcess:
    """models/default/mix.py as the recipe runs it, in a child process."""
    args = [sys.executable, str(MIX), str(base), str(extra), str(out)]
    return subprocess.run(args, capture_output=True, text=True, env=cli_env())


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Three small builds of five photos: all tasks (seed 0), deblur only (seed 0) and deblur only (seed 1)."""
    root = tmp_path_factory.mktemp("recipe")
    pool, photos = InstructionPool.from_corpus(), sample_images()[:5]
    for name, tasks, seed in [("base", ("denoise", "deblur"), 0), ("blur", ("deblur",), 0), ("other", ("deblur",), 1)]:
        config = BuildConfig(tasks=tasks, per_image=2, patch=32, seed=seed, validation_fraction=0.2, test_fraction=0.2)
        build_dataset(root / name, pool, photos, config=config)
    return root


def test_mix_adds_the_extra_train_rows_with_their_own_ids_and_keeps_the_held_out_splits(built):
    out = built / "mixed"
    done = run_mix(built / "base", built / "blur", out)
    assert done.returncode == 0, done.stderr
    base, extra, mixed = load_built(built / "base"), load_built(built / "blur", "train"), load_built(out)
    assert mixed["train"].num_rows == base["train"].num_rows + extra.num_rows
    ids = mixed["train"]["id"]
    assert len(set(ids)) == len(ids)
    assert sorted(i for i in ids if i.startswith("extra/")) == sorted(f"extra/{i}" for i in extra["id"])
    for split in ("validation", "test"):
        assert mixed[split]["id"] == base[split]["id"]
    names = mixed["train"].features["task"].names
    deblur = sum(names[task] == "deblur" for task in mixed["train"]["task"])
    assert deblur == sum(names[t] == "deblur" for t in base["train"]["task"]) + extra.num_rows


def test_mix_refuses_extra_rows_from_a_photo_the_base_holds_out(built):
    mix = load_script("models/default/mix.py")
    held_out = {mix.photo(i) for split in ("validation", "test") for i in load_built(built / "base", split)["id"]}
    trained_elsewhere = {mix.photo(i) for i in load_built(built / "other", "train")["id"]}
    assert held_out & trained_elsewhere, "seed 1 should split these five photos differently from seed 0"
    out = built / "leaky"
    done = run_mix(built / "base", built / "other", out)
    assert done.returncode != 0
    assert "held out" in done.stderr and "same --seed" in done.stderr, done.stderr
    assert not out.exists()


def test_a_stage_is_kept_only_when_the_sum_goes_up_and_no_task_loses_over_half_a_db():
    compare = load_script("models/default/compare.py")
    current = {"a": {"deblur": 0.0, "denoise": 8.0}, "b": {"deblur": -0.2, "denoise": 7.0}}
    better = {"a": {"deblur": 0.3, "denoise": 7.7}, "b": {"deblur": 0.2, "denoise": 7.0}}
    assert compare.verdict(current, better)["keep"]
    assert compare.verdict(current, better)["sum_db"] == pytest.approx(0.4)
    too_costly = {"a": {"deblur": 1.5, "denoise": 7.4}, "b": {"deblur": 0.5, "denoise": 7.0}}
    result = compare.verdict(current, too_costly)
    assert result["worst_db"] == pytest.approx(-0.6) and not result["keep"]
    no_gain = {"a": {"deblur": 0.1, "denoise": 7.8}, "b": {"deblur": -0.1, "denoise": 7.0}}
    assert not compare.verdict(current, no_gain)["keep"]
