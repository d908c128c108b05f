"""Publishing: corpus, dataset and checkpoint pushed to local folders, with cards that parse and data that loads."""

from __future__ import annotations

from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
from conftest import run_cli

from instructir.datasets.build import BuildConfig, build_dataset
from instructir.datasets.instructions import InstructionPool
from instructir.datasets.sources import sample_images
from instructir.hub import local_target, publish, size_category, split_front_matter, with_front_matter
from instructir.model.restore import Restorer
from instructir.prompts.corpus import resolve_corpus

TINY = ["--width", "8", "--enc-blks", "1,1", "--middle-blks", "1", "--dec-blks", "1,1"]


def card(folder: Path) -> tuple[dict, str]:
    return split_front_matter((folder / "README.md").read_text(encoding="utf-8"))


def files(folder: Path) -> set[str]:
    return {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}


def test_local_targets_and_front_matter_helpers(monkeypatch, tmp_path):
    monkeypatch.delenv("INSTRUCTIR_HUB_DIR", raising=False)
    assert local_target("user/repo") is None
    assert local_target("file:///data/x") == Path("/data/x")
    assert local_target("./x") == Path("./x") and local_target("/x") == Path("/x")
    monkeypatch.setenv("INSTRUCTIR_HUB_DIR", str(tmp_path))
    assert local_target("user/repo") == tmp_path / "user" / "repo"
    merged = with_front_matter("---\nlicense: mit\n---\n\n# Title\n", {"license": "other", "tags": ["a"]})
    assert split_front_matter(merged) == ({"license": "mit", "tags": ["a"]}, "# Title\n")
    assert [size_category(n) for n in (5, 17_814, 2_000_000)] == ["n<1K", "10K<n<100K", "1M<n<10M"]


def test_the_shipped_corpus_is_pushed_with_its_card_and_loads_back(tmp_path):
    target = tmp_path / "requests"
    done = run_cli("prompts", "push", "instructir-requests", str(target))
    assert done.returncode == 0, done.stderr
    assert files(target) == {"corpus.parquet", "summary.json", "README.md"}
    meta, body = card(target)
    assert meta["task_categories"] == ["text-classification"] and meta["language"] == ["en"]
    shipped_rows = pq.read_metadata(resolve_corpus("instructir-requests")).num_rows
    assert 10_000 <= shipped_rows < 100_000, "the bucket below assumes the corpus's size; update both together"
    assert meta["size_categories"] == ["10K<n<100K"] and meta["license"] == "mit"
    shipped = resolve_corpus("instructir-requests").parent / "README.md"
    assert body.startswith(shipped.read_text(encoding="utf-8").rstrip("\n")) and "## Load it" in body
    rows = datasets.load_dataset(str(target), split="train", cache_dir=str(tmp_path / "hf"))
    assert len(rows) == pq.read_metadata(resolve_corpus("instructir-requests")).num_rows
    assert {"text", "task"} <= set(rows.column_names)


def test_a_single_corpus_file_is_refused(tmp_path):
    single = tmp_path / "rows.jsonl"
    single.write_text('{"text": "fix it", "task": "denoise"}\n')
    done = run_cli("prompts", "push", str(single), str(tmp_path / "out"))
    assert done.returncode == 2 and "corpus folder" in done.stderr


@pytest.mark.slow
def test_a_dataset_and_a_checkpoint_are_pushed_from_the_cli_and_load_back(tmp_path):
    hub = tmp_path / "hub"
    data = tmp_path / "data"
    build = ["data", "build", "--out", str(data), "--samples", "--tasks", "denoise", "--per-image", "1"]
    done = run_cli(*build, "--patch", "64", "--no-progress", "--push-to-hub", "me/triples", INSTRUCTIR_HUB_DIR=str(hub))
    assert done.returncode == 0, done.stderr
    pushed = hub / "me" / "triples"
    assert files(data) == files(pushed)  # the builder's README.md is replaced by the merged card
    meta, body = card(pushed)
    assert meta["task_categories"] == ["image-to-image"] and "instructir" in meta["tags"] and meta["license"]
    assert meta["configs"][0]["data_files"][0] == {"split": "train", "path": "train/*.arrow"}
    assert "# instructir restoration triples" in body and 'load_dataset("me/triples")' in body
    local = datasets.load_from_disk(str(pushed))
    assert datasets.load_dataset(str(pushed), cache_dir=str(tmp_path / "hf"))["test"]["id"] == local["test"]["id"]

    run = tmp_path / "run"
    train = ["train", "--data", str(data), "--out", str(run), "--steps", "2", "--batch", "2", "--patch", "32"]
    done = run_cli(
        *train,
        "--checkpoint-every",
        "2",
        "--log-every",
        "1",
        *TINY,
        "--no-progress",
        "--push-to-hub",
        "me/model",
        INSTRUCTIR_HUB_DIR=str(hub),
    )
    assert done.returncode == 0, done.stderr
    model = hub / "me" / "model"
    assert files(model) == {"final.safetensors", "config.json", "log.csv", "README.md"}
    meta, body = card(model)
    assert meta["library_name"] == "instructir" and meta["pipeline_tag"] == "image-to-image"
    assert "image-restoration" in meta["tags"]
    assert "2 steps, batch 2" in body and 'hf_hub_download("me/model", "final.safetensors")' in body
    restorer = Restorer.from_checkpoint(model / "final.safetensors", device="cpu")
    assert restorer.intent("remove the noise")[0]


def test_a_parquet_dataset_keeps_its_configs_and_a_repush_replaces_the_target(tmp_path):
    folder = tmp_path / "parquet"
    config = BuildConfig(tasks=("denoise",), per_image=1, patch=64, format="parquet")
    build_dataset(folder, InstructionPool.from_corpus(), sample_images()[:3], config=config)
    target = tmp_path / "pushed"
    assert publish(folder, f"file://{target}", "dataset") == str(target)
    meta, _ = card(target)
    built, _ = split_front_matter((folder / "README.md").read_text())
    assert meta["configs"] == built["configs"] and meta["task_categories"] == ["image-to-image"]
    splits = datasets.load_dataset("parquet", data_dir=str(target / "data"), cache_dir=str(tmp_path / "hf"))
    assert sum(len(split) for split in splits.values()) == 3
    (target / "stale.txt").write_text("from an older push")
    publish(folder, str(target), "dataset")
    assert not (target / "stale.txt").exists()
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []
