"""The dataset builder end to end: offline samples, both loaders, byte-identical rebuilds, bad files, SIGKILL,
real paired layouts, and fresh samples each epoch from the on-the-fly transform."""

from __future__ import annotations

import hashlib
import io
import json
import random
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REPO, cli_env, run_cli
from PIL import Image

from instructir.datasets.build import BuildConfig, build_dataset, content_config, features, missing_splits
from instructir.datasets.instructions import InstructionPool
from instructir.datasets.onthefly import OnTheFly, train_transform
from instructir.datasets.sources import folder_images
from instructir.datasets.spill import Spill
from instructir.tasks import get_task, task_names


def photo(size: tuple[int, int], seed: int) -> Image.Image:
    """A smooth random colour image (gradients plus blobs), so degradations have something to change."""
    rng = np.random.default_rng(seed)
    height, width = size
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    channels = [
        np.sin(6 * x * rng.uniform(0.5, 2) + rng.uniform(0, 6)) * np.cos(5 * y + rng.uniform(0, 6)) for _ in range(3)
    ]
    array = (np.stack(channels, axis=2) * 0.4 + 0.5).clip(0, 1)
    return Image.fromarray((array * 255).round().astype(np.uint8))


def photo_folder(root: Path, count: int, size: tuple[int, int] = (96, 128)) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        photo(size, index).save(root / f"photo-{index:02d}.png")
    return root


@pytest.fixture(scope="module")
def pool() -> InstructionPool:
    return InstructionPool.from_corpus()


def file_bytes(folder: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != "summary.json"
    }


@pytest.mark.slow
def test_build_from_the_wheel_samples_loads_with_load_from_disk_and_as_parquet(tmp_path, pool):
    args = ["data", "build", "--samples", "--tasks", "denoise,lowlight,ambiguous", "--per-image", "1", "--patch", "64"]
    done = run_cli(*args, "--out", str(tmp_path / "arrow"), "--no-progress")
    assert done.returncode == 0, done.stderr
    loaded = datasets.load_from_disk(str(tmp_path / "arrow"))
    assert {split: len(loaded[split]) for split in loaded} == {"train": 27, "validation": 3, "test": 3}
    features = loaded["train"].features
    assert features["task"].names == list(task_names())
    assert isinstance(features["clean"], datasets.Image) and isinstance(features["degraded"], datasets.Image)
    row = loaded["train"][0]
    assert row["clean"].size == row["degraded"].size == (64, 64)
    for row in loaded["train"]:
        task = task_names()[row["task"]]
        assert row["instruction"] in pool.by_task[task]
        params = json.loads(row["params"])
        assert params["chain"], params
        clean = np.asarray(row["clean"], dtype=np.float32)
        degraded = np.asarray(row["degraded"], dtype=np.float32)
        assert np.abs(clean - degraded).mean() > 1.0, f"{row['id']} barely changed"
        if task == "lowlight":
            assert degraded.mean() < clean.mean()
    summary = json.loads((tmp_path / "arrow/summary.json").read_text())
    assert summary["samples"] == 33 and summary["inputs"]["clean_images"] == 11
    assert "instructir data build --samples" in (tmp_path / "arrow/README.md").read_text()

    done = run_cli(*args, "--out", str(tmp_path / "parquet"), "--format", "parquet", "--no-progress")
    assert done.returncode == 0, done.stderr
    files = {split: str(tmp_path / f"parquet/data/{split}-00000-of-00001.parquet") for split in loaded}
    from_parquet = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "hf"))
    assert from_parquet["train"].features == features
    assert from_parquet["test"][0]["id"] == loaded["test"][0]["id"]
    assert np.array_equal(np.asarray(from_parquet["test"][0]["degraded"]), np.asarray(loaded["test"][0]["degraded"]))


def test_same_seed_gives_identical_bytes_whatever_the_worker_count(tmp_path, pool):
    images = folder_images(photo_folder(tmp_path / "photos", 4))
    made = {}
    for name, seed, workers in (("a", 3, 1), ("b", 3, 2), ("c", 4, 1)):
        config = BuildConfig(tasks=("denoise", "deblur", "derain"), per_image=2, patch=64, seed=seed, num_proc=workers)
        build_dataset(tmp_path / name, pool, images, config=config)
        made[name] = file_bytes(tmp_path / name)
    assert made["a"] == made["b"]
    arrow = [name for name in made["a"] if name.endswith(".arrow")]
    assert arrow and any(made["a"][name] != made["c"][name] for name in arrow)


def dataset_files(folder: Path) -> dict[str, bytes]:
    """The bytes of the files datasets reads (not the card, summary or rejects)."""
    return {name: data for name, data in file_bytes(folder).items() if name not in ("README.md", "rejects.jsonl")}


def save_in_memory(rows: dict[str, list[dict]], out: Path, config: BuildConfig) -> None:
    """How the builder wrote before it streamed: each split's rows sorted by id in one in-memory table, written by
    datasets itself (DatasetDict.save_to_disk, or Dataset.to_parquet)."""
    schema = features()
    fingerprint = hashlib.sha256(json.dumps(content_config(config), sort_keys=True).encode()).hexdigest()[:16]
    info = datasets.DatasetInfo(features=schema, description="instructir (instruction, degraded, clean) triples")
    parts = {}
    for split, split_rows in rows.items():
        ordered = sorted(split_rows, key=lambda row: row["id"])
        table = pa.Table.from_batches([pa.RecordBatch.from_pylist(ordered, schema=schema.arrow_schema)])
        parts[split] = datasets.Dataset(table, info=info, split=split, fingerprint=f"{fingerprint}-{split}")
    if config.format == "arrow":
        datasets.DatasetDict(parts).save_to_disk(str(out))
        return
    for split, dataset in parts.items():
        dataset.to_parquet(str(out / "data" / f"{split}-00000-of-00001.parquet"))


def test_streamed_files_match_one_in_memory_table_saved_by_datasets_byte_for_byte(tmp_path, pool, monkeypatch):
    # Small shards and row groups, so the layout datasets picks from the data's size (shard count, write batch
    # rows) has room to differ: train spreads over several shards, each written in several batches.
    monkeypatch.setattr(datasets.config, "MAX_SHARD_SIZE", "150KB")
    monkeypatch.setattr(datasets.config, "MAX_ROW_GROUP_SIZE", "40KB")
    # Photos given in reverse name order, so rows are made out of id order and the builder has to sort them; 3 x 22
    # samples a photo are two jobs each.
    images = folder_images(photo_folder(tmp_path / "photos", 4))[::-1]
    config = BuildConfig(tasks=("denoise", "derain", "lowlight"), per_image=22, patch=32, seed=2)
    built = build_dataset(tmp_path / "arrow", pool, images, config=config)
    loaded = datasets.load_from_disk(str(tmp_path / "arrow"))
    rows = {split: loaded[split].data.table.to_pylist() for split in loaded}
    assert {split: len(split_rows) for split, split_rows in rows.items()} == built.summary["by_split"]
    for split_rows in rows.values():
        random.Random(0).shuffle(split_rows)
    save_in_memory(rows, tmp_path / "in-memory", config)
    streamed, in_memory = dataset_files(tmp_path / "arrow"), dataset_files(tmp_path / "in-memory")
    assert streamed.keys() == in_memory.keys()
    train = [name for name in streamed if name.startswith("train/") and name.endswith(".arrow")]
    batches = pa.ipc.open_stream(streamed[train[0]]).read_all().to_batches()
    assert len(train) > 2 and len(batches) > 1, "the layout is trivial; shrink the shards and row groups"
    assert [name for name in streamed if streamed[name] != in_memory[name]] == []

    parquet = replace(config, format="parquet")
    build_dataset(tmp_path / "parquet", pool, images, config=parquet)
    save_in_memory(rows, tmp_path / "in-memory-parquet", parquet)
    streamed, in_memory = dataset_files(tmp_path / "parquet"), dataset_files(tmp_path / "in-memory-parquet")
    assert streamed.keys() == in_memory.keys()
    assert pq.ParquetFile(tmp_path / "parquet/data/train-00000-of-00001.parquet").num_row_groups > 1
    assert [name for name in streamed if streamed[name] != in_memory[name]] == []


def test_spill_reads_rows_back_in_id_order_and_sizes_them_as_datasets_does_one_in_memory_table(tmp_path):
    rng = random.Random(0)

    def row(index: int) -> dict:
        clean = rng.randbytes(rng.randrange(50, 900))
        return {
            "id": f"train/{rng.choice('abc')}{index}",
            "task": rng.randrange(len(task_names())),
            "instruction": "x" * rng.randrange(1, 60),
            "clean": {"bytes": clean, "path": None},
            "degraded": {"bytes": clean[::-1], "path": None},
            "params": "{}",
            "source": "s" * rng.randrange(1, 9),
        }

    rows = [row(index) for index in range(159)]
    spill = Spill(tmp_path, features())
    start = 0
    for size in (5, 40, 1, 17, 64, 3, 29):
        spill.add("train", rows[start : start + size])
        start += size
    spill.close()
    assert spill.count("train") == len(rows) == start
    back = [row for table in spill.tables("train", [7, 100, 52]) for row in table.to_pylist()]
    ordered = sorted(rows, key=lambda row: row["id"])
    assert [row["id"] for row in back] == [row["id"] for row in ordered] and back == ordered
    # save_to_disk picks the shard count and write batch rows from this estimate, so it must be datasets' own.
    table = pa.Table.from_batches([pa.RecordBatch.from_pylist(ordered, schema=features().arrow_schema)])
    in_memory = datasets.Dataset(table, info=datasets.DatasetInfo(features=features()))
    assert spill.estimated_nbytes("train") == in_memory._estimate_nbytes()


def test_bad_files_are_skipped_with_reasons_and_the_rest_is_built(tmp_path, pool):
    folder = photo_folder(tmp_path / "photos", 3)
    good = (folder / "photo-00.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "garbage.jpg").write_bytes(b"this is not an image at all")
    photo((40, 40), 9).save(folder / "tiny.png")
    grey = photo((96, 96), 5).convert("L")
    grey.save(folder / "grey.png")
    buffer = io.BytesIO()
    photo((96, 96), 6).convert("RGBA").save(buffer, format="PNG")
    (folder / "rgba.png").write_bytes(buffer.getvalue())
    result = build_dataset(
        tmp_path / "out", pool, folder_images(folder), config=BuildConfig(tasks=("denoise",), patch=64)
    )
    reasons = {
        json.loads(line)["name"].rsplit("/", 1)[-1]: json.loads(line)["reason"]
        for line in (tmp_path / "out/rejects.jsonl").read_text().splitlines()
    }
    assert reasons == {"truncated.png": "truncated", "garbage.jpg": "unreadable", "tiny.png": "too_small"}
    assert result.summary["inputs"]["clean_images"] == 8 and result.summary["samples"] == 5 * 4
    loaded = datasets.load_from_disk(str(tmp_path / "out"))
    assert all(row["clean"].mode == "RGB" for split in loaded for row in loaded[split])


def broken_files(folder: Path) -> set[str]:
    """Write the four kinds of broken photo a user's folder holds; return their names."""
    good = photo((96, 128), 99)
    buffer = io.BytesIO()
    good.save(buffer, format="PNG")
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.jpg").write_bytes(b"not an image, just notes")
    (folder / "cut.png").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    photo((20, 20), 98).save(folder / "icon.png")
    return {"empty.png", "notes.jpg", "cut.png", "icon.png"}


@pytest.mark.parametrize("seed", range(6))
def test_splits_go_to_photos_that_decode_so_no_split_is_lost_to_a_broken_file(tmp_path, pool, seed):
    folder = photo_folder(tmp_path / "photos", 9)
    broken = broken_files(folder)
    config = BuildConfig(tasks=("denoise",), per_image=2, patch=64, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = build_dataset(tmp_path / "out", pool, folder_images(folder), config=config)
    summary = result.summary
    assert all(summary["by_split"][split] >= 2 for split in ("train", "validation", "test")), summary["by_split"]
    assert summary["empty_splits"] == []
    assert {reject["name"] for reject in result.rejects} == broken
    assert summary["inputs"]["clean_images"] == 13 and summary["inputs"]["photos_used"] == 13 - 4
    assert set(datasets.load_from_disk(str(tmp_path / "out"))) == {"train", "validation", "test"}


def test_cli_mixtures_share_of_train_rows_mix_two_or_three_tasks_and_other_splits_never_do(tmp_path):
    tasks = ("denoise", "deblur", "derain", "dehaze")
    photos = photo_folder(tmp_path / "photos", 20, size=(48, 48))
    args = ["data", "build", "--images", str(photos), "--tasks", ",".join(tasks), "--per-image", "4", "--patch", "32"]
    done = run_cli(*args, "--mixtures", "0.5", "--out", str(tmp_path / "ds"), "--no-progress")
    assert done.returncode == 0, done.stderr
    loaded = datasets.load_from_disk(str(tmp_path / "ds"))
    train = loaded["train"].select_columns(["id", "task", "params"])
    # 20 photos: 2 test, 2 validation, 16 train, so 16 x 4 tasks x 4 samples = 256 train rows. Each row mixes with
    # probability 0.5 by its own generator, so the share is Binomial(256, 0.5) / 256 with sd 0.031; 0.15 is 4.8 sd
    # (a false failure about once in a million seeds), while a builder that never or always mixes is 0.5 off.
    assert len(train) == 256
    sizes = {row["id"]: len(json.loads(row["params"])["tasks"]) for row in train}
    mixed = [row for row in train if sizes[row["id"]] > 1]
    assert abs(len(mixed) / len(train) - 0.5) < 0.15, len(mixed)
    assert set(sizes.values()) == {1, 2, 3}
    owner = {name: task for task in tasks for name in get_task(task).degradations}
    for row in mixed:
        params = json.loads(row["params"])
        listed = params["tasks"]
        assert len(set(listed)) == len(listed) and set(listed) <= set(tasks), row["id"]
        assert task_names()[row["task"]] in listed, row["id"]
        assert sorted(owner[step["name"]] for step in params["chain"]) == sorted(listed), "one degradation per task"
    for split in ("validation", "test"):
        assert len(loaded[split]) == 2 * 4 * 4
        for text, task in zip(loaded[split]["params"], loaded[split]["task"], strict=True):
            params = json.loads(text)
            assert params["tasks"] == [task_names()[task]] and len(params["chain"]) == 1, split


def test_a_split_that_should_hold_photos_but_holds_none_is_named():
    config = BuildConfig(validation_fraction=0.1, test_fraction=0.1)
    assert missing_splits({"train": 8, "validation": 0, "test": 2}, photos=3, config=config) == ["validation"]
    assert missing_splits({"train": 8, "validation": 0, "test": 0}, photos=2, config=config) == []
    no_test = BuildConfig(validation_fraction=0.1, test_fraction=0.0)
    assert missing_splits({"train": 8, "validation": 2, "test": 0}, photos=5, config=no_test) == []
    assert missing_splits({"train": 0, "validation": 2, "test": 2}, photos=5, config=config) == ["train"]


def test_same_named_photos_in_two_folders_are_two_photos(tmp_path, pool):
    one = tmp_path / "one"
    one.mkdir()
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    for folder, name, seed in ((a, "img.png", 0), (a, "cat.png", 1), (b, "img.png", 2), (b, "rocket.png", 3)):
        photo((96, 128), seed).save(folder / name)
        photo((96, 128), seed).save(one / f"{folder.name}-{name}")
    args = ["data", "build", "--tasks", "denoise", "--per-image", "1", "--patch", "64", "--no-progress"]
    both = run_cli(*args, "--images", str(a), "--images", str(b), "--out", str(tmp_path / "both"))
    single = run_cli(*args, "--images", str(one), "--out", str(tmp_path / "single"))
    assert both.returncode == 0 and single.returncode == 0, both.stderr + single.stderr
    counts = [json.loads((tmp_path / name / "summary.json").read_text())["by_split"] for name in ("both", "single")]
    assert counts[0] == counts[1] == {"train": 2, "validation": 1, "test": 1}
    ids = [row["id"] for split in datasets.load_from_disk(str(tmp_path / "both")).values() for row in split]
    assert sorted(name.split("/")[1] for name in ids) == ["cat.png", "img.png#1", "img.png#2", "rocket.png"]
    again = run_cli(*args, "--images", str(a), "--images", str(a), "--out", str(tmp_path / "twice"))
    summary = json.loads((tmp_path / "twice" / "summary.json").read_text())
    assert again.returncode == 0 and summary["rejects_by_reason"] == {"duplicate": 2}
    assert summary["inputs"]["photos_used"] == 2


def test_cli_errors_say_what_to_do_and_exit_2(tmp_path):
    done = run_cli("data", "build", "--out", str(tmp_path / "x"))
    assert done.returncode == 2 and "nothing to build from" in done.stderr
    corpus = tmp_path / "only-denoise.jsonl"
    corpus.write_text(json.dumps({"text": "remove the noise", "task": "denoise"}) + "\n")
    photo_folder(tmp_path / "photos", 1)
    done = run_cli(
        "data", "build", "--images", str(tmp_path / "photos"), "--corpus", str(corpus), "--out", str(tmp_path / "y")
    )
    assert done.returncode == 2 and "no requests for deblur" in done.stderr
    (tmp_path / "z").mkdir()
    done = run_cli("data", "build", "--images", str(tmp_path / "photos"), "--out", str(tmp_path / "z"))
    assert done.returncode == 2 and "--overwrite" in done.stderr
    done = run_cli("data", "build", "--samples", "--patch", "100", "--out", str(tmp_path / "w"))
    assert done.returncode == 2 and "multiple of 16" in done.stderr


@pytest.mark.slow
def test_sigkill_mid_build_leaves_nothing_that_loads_and_a_rerun_completes(tmp_path):
    photo_folder(tmp_path / "photos", 30, size=(256, 256))
    out = tmp_path / "ds"
    command = [sys.executable, "-m", "instructir", "data", "build", "--images", str(tmp_path / "photos")]
    command += ["--per-image", "6", "--patch", "128", "--out", str(out), "--no-progress"]
    process = subprocess.Popen(command, env=cli_env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(6)
    assert process.poll() is None, "the build finished before it could be killed; give it more work"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not out.exists()
    with pytest.raises(FileNotFoundError):
        datasets.load_from_disk(str(out))
    leftover = tmp_path / f".ds.partial-{process.pid}"  # where the killed build spilled its rows, if it got there
    leftover.mkdir(exist_ok=True)
    done = run_cli(*command[3:])
    assert done.returncode == 0, done.stderr
    assert sum(len(split) for split in datasets.load_from_disk(str(out)).values()) == 30 * 6 * 8
    assert not leftover.exists(), "the rerun removes what the killed build left"


def test_paired_lol_layout_goes_to_its_splits_with_lowlight_requests(tmp_path, pool):
    root = tmp_path / "LOL"
    for part, count in (("our485", 4), ("eval15", 2)):
        for kind in ("low", "high"):
            (root / part / kind).mkdir(parents=True)
        for index in range(count):
            high = photo((80, 96), index)
            high.save(root / part / "high" / f"{index}.png")
            Image.fromarray((np.asarray(high) * 0.2).astype(np.uint8)).save(root / part / "low" / f"{index}.png")
    out = tmp_path / "ds"
    done = run_cli("data", "build", "--paired", f"lol:{root}", "--patch", "64", "--out", str(out), "--no-progress")
    assert done.returncode == 0, done.stderr
    loaded = datasets.load_from_disk(str(out))
    assert len(loaded["test"]) == 2 and sum(len(loaded[split]) for split in loaded if split != "test") == 4
    test = loaded["test"][0]
    assert test["clean"].size == (96, 80)
    assert task_names()[test["task"]] == "lowlight" and test["instruction"] in pool.by_task["lowlight"]
    assert np.asarray(test["degraded"]).mean() < np.asarray(test["clean"]).mean()
    assert all(row["clean"].size == (64, 64) for row in loaded["train"])


def test_on_the_fly_samples_are_fixed_by_seed_epoch_and_index_and_change_each_epoch(tmp_path, pool):
    images = [np.asarray(photo((128, 128), i), dtype=np.float32) / 255 for i in range(3)]
    data = OnTheFly(images, pool, seed=7, patch=64)
    again = OnTheFly(images, pool, seed=7, patch=64)
    assert len(data) == 3 * len(task_names())
    first = data[5]
    assert np.array_equal(first["degraded"], again[5]["degraded"]) and first["instruction"] == again[5]["instruction"]
    data.set_epoch(1)
    assert not np.array_equal(first["degraded"], data[5]["degraded"])
    assert first["degraded"].shape == (64, 64, 3) and first["degraded"].dtype == np.float32
    assert task_names()[first["task"]] == task_names()[5 % len(task_names())]

    mixed = OnTheFly(images, pool, seed=7, patch=64, mixtures=1.0)
    sizes = {len(json.loads(mixed[i]["params"])["tasks"]) for i in range(len(mixed))}
    assert sizes <= {2, 3} and len(sizes) == 2

    config = BuildConfig(tasks=("derain", "dehaze"), per_image=1, patch=0)
    build_dataset(tmp_path / "ds", pool, folder_images(photo_folder(tmp_path / "photos", 3, (128, 128))), config=config)
    train = datasets.load_from_disk(str(tmp_path / "ds"))["train"]
    epoch0 = train.with_transform(train_transform(pool, seed=1, epoch=0, patch=64))[0]
    epoch1 = train.with_transform(train_transform(pool, seed=1, epoch=1, patch=64))[0]
    assert epoch0["degraded"].shape == (64, 64, 3) and task_names()[epoch0["task"]] in ("derain", "dehaze")
    assert not np.array_equal(epoch0["degraded"], epoch1["degraded"])
    assert epoch0["instruction"] in pool.by_task[task_names()[epoch0["task"]]]
