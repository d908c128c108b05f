"""Build a Hugging Face DatasetDict of (instruction, degraded, clean) triples from clean photos and real pairs.

Splits are made by source image (no photo is in two splits), over the photos that decode, so a broken file never
takes a split's only photo. Same-named photos from different folders stay two photos. Every sample's generator
derives from
(seed, image name, task id, sample index), so the same inputs and seed give byte-identical files whatever the
number of worker processes. Rows go to disk as they are made (``instructir.datasets.spill``), so memory does not
grow with the number of samples, and each split is written sorted by id. The dataset is written under a temporary
name and renamed when complete, so a killed build never leaves a folder that loads as a finished dataset (the next
build of the same folder deletes what it left). Unreadable or unsuitable images are skipped and listed with their
reason in ``rejects.jsonl``; ``summary.json`` and a dataset card sit beside the data.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import time
import warnings
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from instructir.datasets.images import ImageError, crop_to_multiple, encode_png, random_crop
from instructir.datasets.instructions import InstructionPool
from instructir.datasets.paired import PairRef
from instructir.datasets.sources import ImageRef
from instructir.datasets.spill import Spill, save_parquet, save_to_disk
from instructir.datasets.synthesis import Sample, make_sample, restoration_tasks
from instructir.io import replace_folder, write_json
from instructir.tasks import Task, all_tasks, get_task, resolve_tasks, task_names

SPLITS = ("train", "validation", "test")
FORMATS = ("arrow", "parquet")
# A job's rows are all in memory at once (in a worker and here), so a photo's samples are split into jobs of at
# most this many: about 1 MB of rows at --patch 64, 20 MB at 256, whatever --per-image is.
SAMPLES_PER_JOB = 64


@dataclass(frozen=True)
class BuildConfig:
    """What to build: which tasks, how many samples per clean image, crop size, seed, splits and output format."""

    tasks: tuple[str, ...] = ()
    per_image: int = 4
    patch: int = 256
    seed: int = 0
    validation_fraction: float = 0.1
    test_fraction: float = 0.1
    mixtures: float = 0.0
    num_proc: int = 1
    format: str = "arrow"
    corpus: str = "instructir-requests"
    command: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise ValueError that names the bad parameter and the accepted values."""
        checks = {
            "per_image must be >= 1": self.per_image >= 1,
            "patch must be 0 (whole images) or a multiple of 16 >= 32": self.patch == 0
            or (self.patch >= 32 and self.patch % 16 == 0),
            "validation_fraction and test_fraction must be in [0, 0.5]": 0 <= self.validation_fraction <= 0.5
            and 0 <= self.test_fraction <= 0.5,
            "mixtures must be a probability in [0, 1]": 0 <= self.mixtures <= 1,
            "num_proc must be >= 1": self.num_proc >= 1,
            f"format must be one of {', '.join(FORMATS)}": self.format in FORMATS,
        }
        problems = [message for message, ok in checks.items() if not ok]
        if problems:
            raise ValueError("; ".join(problems))
        resolve_tasks(self.tasks or None)


@dataclass
class BuildResult:
    """Where the dataset went and what went into it."""

    path: Path
    summary: dict[str, Any]
    rejects: list[dict[str, Any]]


def load_built(data_dir: str | Path, split: str | None = None):
    """A dataset written by ``build_dataset`` (arrow format): the DatasetDict, or one split of it.

    Errors say what is missing and how to make it, so callers need no checks of their own."""
    from datasets import load_from_disk

    try:
        splits = load_from_disk(str(data_dir))
    except FileNotFoundError:
        raise FileNotFoundError(f"no dataset at {data_dir}; build one with `instructir data build`") from None
    if split is None:
        return splits
    if split not in splits:
        raise ValueError(f"{data_dir} has no {split!r} split; it has {', '.join(splits)}")
    return splits[split]


def features():
    """The dataset's columns: task is a ClassLabel in registry order, images are stored as PNG bytes."""
    from datasets import ClassLabel, Features, Image, Value

    return Features(
        {
            "id": Value("string"),
            "task": ClassLabel(names=list(task_names())),
            "instruction": Value("string"),
            "clean": Image(),
            "degraded": Image(),
            "params": Value("string"),
            "source": Value("string"),
        }
    )


def content_config(config: BuildConfig) -> dict[str, Any]:
    """The parameters that decide the dataset's content (not how many workers made it, nor the command line)."""
    return {key: value for key, value in asdict(config).items() if key not in ("num_proc", "command")}


def assign_splits(names: Sequence[str], config: BuildConfig) -> dict[str, str]:
    """Split clean images by a seeded hash of their names; with three or more images each split gets one."""
    order = sorted(names, key=lambda name: (zlib.crc32(f"{config.seed}:{name}".encode()), name))
    count = len(order)
    n_test = max(1, round(config.test_fraction * count)) if count >= 3 and config.test_fraction > 0 else 0
    n_val = max(1, round(config.validation_fraction * count)) if count >= 3 and config.validation_fraction > 0 else 0
    splits = {}
    for position, name in enumerate(order):
        splits[name] = "test" if position < n_test else "validation" if position < n_test + n_val else "train"
    return splits


def sample_rng(seed: int, name: str, task: Task, index: int) -> np.random.Generator:
    """The generator of one sample: a pure function of the build seed and the sample's identity."""
    return np.random.default_rng([seed, zlib.crc32(name.encode()), task.id, index])


def build_dataset(
    out: str | Path,
    corpus: InstructionPool,
    images: Sequence[ImageRef] = (),
    pairs: Sequence[PairRef] = (),
    config: BuildConfig | None = None,
    overwrite: bool = False,
    show_progress: bool = False,
) -> BuildResult:
    """Synthesise samples from ``images``, import ``pairs``, and write the DatasetDict to ``out``.

    A split that gets no samples (say, a test-only paired set has no train pairs) is left out of the DatasetDict,
    since ``datasets`` cannot load an empty split from disk; the summary still lists it with 0."""
    config = config or BuildConfig()
    config.validate()
    images = list(images) + [pair.as_image_ref() for pair in pairs if pair.degraded is None]
    pairs = [pair for pair in pairs if pair.degraded is not None]
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; choose another --out or pass --overwrite to replace it")
    if not images and not pairs:
        raise ValueError("nothing to build from: give clean images (--images, --image-list, --samples) or --paired")
    tasks = resolve_tasks(config.tasks or None)
    synthesised = list(tasks)
    if images:
        corpus.require(task.name for task in synthesised)
    corpus.require(sorted({pair.task for pair in pairs}))
    started = time.monotonic()
    given = images
    images, rejects = distinct_photos(given)
    checker = partial(_check_image, config=config)
    checked = list(_map(checker, images, config.num_proc, show_progress, "checking"))
    rejects += [reject for reject in checked if reject is not None]
    usable = [ref for ref, reject in zip(images, checked, strict=True) if reject is None]
    splits = assign_splits([ref.name for ref in usable], config)
    jobs = [job for ref in usable for job in image_jobs(ref, splits[ref.name], synthesised, config.per_image)]
    jobs += [("pair", pair) for pair in pairs]
    worker = partial(_run_job, corpus=corpus, tasks=tuple(synthesised), config=config)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    remove_leftovers(out)
    shutil.rmtree(tmp, ignore_errors=True)
    spilled = tmp / ".rows"
    spilled.mkdir(parents=True)
    try:
        spill = Spill(spilled, features())
        counts: dict[str, Counter[str]] = {split: Counter() for split in SPLITS}
        late_failures: set[str] = set()
        made_by = _map(worker, jobs, config.num_proc, show_progress, "building", "job")
        for job, (made, failed) in zip(jobs, made_by, strict=True):
            for split in SPLITS:
                rows = [row for where, row in made if where == split]
                if rows:
                    spill.add(split, rows)
                    counts[split].update(get_task(row["task"]).name for row in rows)
            if job[0] == "image":
                failed = [reject for reject in failed if reject["name"] not in late_failures]
                late_failures.update(reject["name"] for reject in failed)
            rejects += failed
        spill.close()
        summary = _summary(counts, rejects, config, given, pairs, time.monotonic() - started)
        summary["inputs"]["photos_used"] = len(usable) - len(late_failures)
        summary["empty_splits"] = missing_splits(summary["by_split"], len(usable), config)
        for split in summary["empty_splits"]:
            warnings.warn(f"the {split} split is empty: too few photos decoded to give it one", stacklevel=2)
        _write_splits(spill, tmp, config)
        shutil.rmtree(spilled)
        with (tmp / "rejects.jsonl").open("w") as handle:
            for reject in rejects:
                handle.write(json.dumps(reject, sort_keys=True) + "\n")
        write_json(summary, tmp / "summary.json")
        (tmp / "README.md").write_text(dataset_card(summary, config))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    replace_folder(tmp, out)
    return BuildResult(out, summary, rejects)


def remove_leftovers(out: Path) -> None:
    """Delete the partial folders that killed builds of ``out`` left beside it (they hold the spilled rows, as big
    as the dataset); those of builds still running are kept."""
    for folder in out.parent.glob(f".{glob.escape(out.name)}.partial-*"):
        pid = folder.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def distinct_photos(images: Sequence[ImageRef]) -> tuple[list[ImageRef], list[dict[str, Any]]]:
    """Each photo once, each under its own name: a file given twice is kept once (the repeat is a reject), and
    different files that share a name (``a/img.png`` and ``b/img.png`` listed as ``img.png``) become ``img.png#1``
    and ``img.png#2`` in the order given, so neither replaces the other."""
    kept: list[ImageRef] = []
    rejects: list[dict[str, Any]] = []
    seen: set[tuple[str | None, str | None]] = set()
    for ref in images:
        where = (str(Path(ref.path).resolve()) if ref.path else None, ref.key)
        if where in seen:
            rejects.append({"name": ref.name, "source": ref.source, "reason": "duplicate", "message": "given twice"})
            continue
        seen.add(where)
        kept.append(ref)
    counts = Counter(ref.name for ref in kept)
    numbers: Counter[str] = Counter()
    renamed = []
    for ref in kept:
        if counts[ref.name] > 1:
            numbers[ref.name] += 1
            ref = replace(ref, name=f"{ref.name}#{numbers[ref.name]}")
        renamed.append(ref)
    return renamed, rejects


def missing_splits(by_split: dict[str, int], photos: int, config: BuildConfig) -> list[str]:
    """Splits that should hold samples (three or more photos decoded and a non-zero fraction) but hold none."""
    wanted = ["train"] + [
        split
        for split, fraction in (("validation", config.validation_fraction), ("test", config.test_fraction))
        if fraction > 0 and photos >= 3
    ]
    return [split for split in wanted if photos and not by_split[split]]


def _check_image(ref: ImageRef, config: BuildConfig) -> dict[str, Any] | None:
    """None when ``ref`` decodes and is large enough for the patch, else its reject record."""
    try:
        _decode(ref, config)
    except ImageError as error:
        return _reject(ref.name, ref.source, error)
    return None


def _decode(ref: ImageRef, config: BuildConfig) -> np.ndarray:
    image = ref.load()
    if config.patch and min(image.shape[:2]) < config.patch:
        raise ImageError("too_small", f"{image.shape[1]}x{image.shape[0]} is smaller than the {config.patch}px patch")
    return crop_to_multiple(image, 16)


def _map(worker, jobs: list, num_proc: int, show_progress: bool, desc: str = "images", unit: str = "image"):
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc=desc, unit=unit, disable=not show_progress)
    with bar:
        if num_proc == 1 or len(jobs) <= 1:
            for job in jobs:
                yield worker(job)
                bar.update()
            return
        with get_context("spawn").Pool(num_proc) as pool:
            for result in pool.imap(worker, jobs, chunksize=1):
                yield result
                bar.update()


def _run_job(job: tuple[str, Any], corpus: InstructionPool, tasks: tuple[Task, ...], config: BuildConfig):
    kind, payload = job
    if kind == "image":
        return _image_samples(*payload, corpus=corpus, tasks=tasks, config=config)
    return _pair_sample(payload, corpus=corpus, config=config)


def image_jobs(ref: ImageRef, split: str, tasks: Sequence[Task], per_image: int) -> list[tuple[str, Any]]:
    """The jobs that make one photo's samples: its (task, sample index) pairs, SAMPLES_PER_JOB at a time, in the
    order of their ids, so the rows reach the spill in about the order they are saved in."""
    samples = [(task, index) for task in tasks for index in range(per_image)]
    samples.sort(key=lambda sample: sample_id(split, ref.name, *sample))
    return [
        ("image", (ref, split, tuple(samples[start : start + SAMPLES_PER_JOB])))
        for start in range(0, len(samples), SAMPLES_PER_JOB)
    ]


def _image_samples(
    ref: ImageRef,
    split: str,
    samples: tuple[tuple[Task, int], ...],
    corpus: InstructionPool,
    tasks: tuple[Task, ...],
    config: BuildConfig,
):
    try:
        image = _decode(ref, config)
    except ImageError as error:
        return [], [_reject(ref.name, ref.source, error)]
    degradable = restoration_tasks(tasks)
    made = []
    for task, index in samples:
        rng = sample_rng(config.seed, ref.name, task, index)
        crop = random_crop(image, config.patch, rng) if config.patch else image
        mixture = 1
        if split == "train" and config.mixtures and rng.random() < config.mixtures:
            mixture = int(rng.integers(2, 4))
        sample = make_sample(crop, task, corpus, rng, degradable, mixture)
        made.append((split, _row(sample_id(split, ref.name, task, index), sample, ref.source)))
    return made, []


def sample_id(split: str, name: str, task: Task, index: int) -> str:
    """The id of a photo's sample; each split is saved sorted by id."""
    return f"{split}/{name}/{task.name}/{index}"


def _pair_sample(pair: PairRef, corpus: InstructionPool, config: BuildConfig):
    try:
        clean, degraded = pair.load_clean(), pair.load_degraded()
        if clean.shape != degraded.shape:
            raise ImageError("size_mismatch", f"clean {clean.shape} and degraded {degraded.shape} differ")
    except ImageError as error:
        return [], [_reject(pair.name, pair.source, error)]
    task = get_task(pair.task)
    rng = sample_rng(config.seed, pair.name, task, 0)
    split = pair.split
    if split == "train" and config.validation_fraction and rng.random() < config.validation_fraction:
        split = "validation"
    both = np.concatenate([clean, degraded], axis=2)
    try:
        both = random_crop(both, config.patch, rng) if split == "train" and config.patch else crop_to_multiple(both, 16)
    except ImageError as error:
        return [], [_reject(pair.name, pair.source, error)]
    params = {"paired": True, **pair.params}
    sample = Sample(task, corpus.draw(task.name, rng), both[..., :3], both[..., 3:], params)
    return [(split, _row(f"{split}/{pair.source}/{pair.name}", sample, pair.source))], []


def _row(sample_id: str, sample: Sample, source: str) -> dict[str, Any]:
    return {
        "id": sample_id,
        "task": sample.task.id,
        "instruction": sample.instruction,
        "clean": {"bytes": encode_png(sample.clean), "path": None},
        "degraded": {"bytes": encode_png(sample.degraded), "path": None},
        "params": sample.params_json(),
        "source": source,
    }


def _reject(name: str, source: str, error: ImageError) -> dict[str, Any]:
    return {"name": name, "source": source, "reason": getattr(error, "reason", "unreadable"), "message": str(error)}


def _write_splits(spill: Spill, folder: Path, config: BuildConfig) -> None:
    """Save the splits that hold rows, sorted by id, as ``DatasetDict.save_to_disk`` or ``to_parquet`` would."""
    from datasets import DatasetInfo

    splits = [split for split in SPLITS if spill.count(split)]
    if config.format == "arrow":
        fingerprint = hashlib.sha256(json.dumps(content_config(config), sort_keys=True).encode()).hexdigest()[:16]
        info = DatasetInfo(features=features(), description="instructir (instruction, degraded, clean) triples")
        save_to_disk(spill, splits, folder, info, fingerprint)
        return
    (folder / "data").mkdir()
    for split in splits:
        save_parquet(spill, split, folder / "data" / f"{split}-00000-of-00001.parquet")


def _summary(counts, rejects, config: BuildConfig, images, pairs, seconds: float) -> dict[str, Any]:
    by_split = {split: sum(counts[split].values()) for split in SPLITS}
    by_task = {split: dict(sorted(counts[split].items())) for split in SPLITS}
    sources = Counter(ref.source for ref in images) + Counter(pair.source for pair in pairs)
    return {
        "samples": sum(by_split.values()),
        "by_split": by_split,
        "by_task": by_task,
        "inputs": {"clean_images": len(images), "pairs": len(pairs), "by_source": dict(sorted(sources.items()))},
        "rejects": len(rejects),
        "rejects_by_reason": dict(sorted(Counter(reject["reason"] for reject in rejects).items())),
        "config": asdict(config),
        "seconds": round(seconds, 2),
    }


def dataset_card(summary: dict[str, Any], config: BuildConfig) -> str:
    """README.md for the dataset folder: how it was made, counts, parameters and the command."""
    lines = []
    if config.format == "parquet":
        lines += ["---", "configs:", "- config_name: default", "  data_files:"]
        for split in SPLITS:
            if summary["by_split"][split]:
                lines += [f"  - split: {split}", f"    path: data/{split}-*.parquet"]
        lines += ["---", ""]
    lines += [
        "# instructir restoration triples",
        "",
        "Each row holds a request (`instruction`), a `degraded` image, its `clean` target, the `task` (a ClassLabel",
        "in the order of `instructir.tasks`), the degradation parameters as JSON (`params`, enough to remake the",
        "pair) and the `source` of the clean image. Validation and test are frozen; train can also be served on",
        "the fly with `instructir.datasets.onthefly`.",
        "",
        f"Made with `{config.command or 'instructir.datasets.build.build_dataset'}`.",
        "",
        "| split | samples | " + " | ".join(task.name for task in all_tasks()) + " |",
        "|---|---|" + "---|" * len(all_tasks()),
    ]
    for split in SPLITS:
        per_task = [str(summary["by_task"][split].get(task.name, 0)) for task in all_tasks()]
        lines.append(f"| {split} | {summary['by_split'][split]} | " + " | ".join(per_task) + " |")
    lines += [
        "",
        f"Inputs: {summary['inputs']['clean_images']} clean images, {summary['inputs']['pairs']} real pairs; "
        f"by source: {json.dumps(summary['inputs']['by_source'])}.",
        f"Skipped: {summary['rejects']} ({json.dumps(summary['rejects_by_reason'])}); see rejects.jsonl.",
        "",
        "Parameters:",
        "",
        "```json",
        json.dumps(content_config(config), indent=2, sort_keys=True),
        "```",
        "",
        "Load it with `datasets.load_from_disk(PATH)` (arrow) or",
        '`datasets.load_dataset("parquet", data_dir=PATH + "/data")` (parquet).',
        "",
    ]
    return "\n".join(lines)
