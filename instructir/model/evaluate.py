"""Measure a Restorer: PSNR/SSIM of restored against clean, next to the untouched input's, per task and overall.

Two sources: a dataset from ``instructir data build`` (each row restored with its own instruction; the text head's
intent accuracy is measured too), and the standard benchmark folders (LOL, GoPro, SOTS, Rain100L, CBSD68, ...)
read by ``import_paired``, restored with one fixed plain request per task. Metrics follow the BasicSR protocol
(``instructir.model.metrics``) and are computed in RGB and on the Y channel; Rain100L is conventionally reported
on Y, the others in RGB (``primary`` says which). Means are over images: "overall" weighs every image equally.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from instructir.datasets.images import crop_to_multiple, rgb_array
from instructir.datasets.paired import import_paired
from instructir.model.metrics import psnr, ssim
from instructir.model.restore import Restorer
from instructir.tasks import get_task

# One plain request per task for the benchmark folders, so every run and every model sees the same words.
DEFAULT_INSTRUCTIONS = {
    "denoise": "Remove the noise from this photo.",
    "deblur": "Remove the blur from this photo.",
    "derain": "Remove the rain from this photo.",
    "dehaze": "Remove the haze from this photo.",
    "lowlight": "Brighten this photo, it is too dark.",
    "superres": "Increase the resolution of this photo.",
    "enhance": "Improve the colours and contrast of this photo.",
}
# Sets whose papers report metrics on the Y channel (BasicSR practice for deraining).
Y_CHANNEL_SETS = frozenset({"rain100l"})
METRICS = ("psnr", "ssim", "psnr_y", "ssim_y")


def image_metrics(restored: np.ndarray, clean: np.ndarray, crop_border: int = 0) -> dict[str, float]:
    """PSNR and SSIM of ``restored`` against ``clean``, in RGB and on Y."""
    return {
        "psnr": psnr(restored, clean, crop_border),
        "ssim": ssim(restored, clean, crop_border),
        "psnr_y": psnr(restored, clean, crop_border, test_y_channel=True),
        "ssim_y": ssim(restored, clean, crop_border, test_y_channel=True),
    }


def summarise(samples: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Means of the restored and input metrics over ``samples``, their count, and the intent accuracy if measured."""
    samples = list(samples)
    stats: dict[str, Any] = {"count": len(samples)}
    for name in METRICS:
        stats[name] = _mean(sample[name] for sample in samples)
        stats[f"input_{name}"] = _mean(sample[f"input_{name}"] for sample in samples)
    judged = [sample["intent_correct"] for sample in samples if sample.get("intent_correct") is not None]
    stats["intent_rows"] = len(judged)
    stats["intent_accuracy"] = float(np.mean(judged)) if judged else None
    return stats


def evaluate_dataset(
    restorer: Restorer,
    data_dir: str | Path,
    split: str = "test",
    crop_border: int = 0,
    limit: int | None = None,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Restore every row of a built dataset's ``split`` with its instruction; per-task and overall metrics.

    Besides the restored metrics each group carries the input's (degraded against clean) as the baseline, and
    the intent accuracy: predicted task == the row's task, counting only rows whose task the head can name (an
    official 7-class head is not judged on task ids 7 and up).
    """
    from tqdm.auto import tqdm

    from instructir.datasets.build import load_built

    rows = load_built(data_dir, split)
    if limit is not None:
        rows = rows.select(range(min(limit, len(rows))))
    restorer.prepare(rows["instruction"])
    samples = []
    for row in tqdm(rows, desc="evaluating", unit="image", disable=not show_progress):
        clean, degraded = rgb_array(row["clean"]), rgb_array(row["degraded"])
        task = get_task(row["task"])
        predicted, confidence = restorer.intent(row["instruction"])
        restored = restorer.restore(degraded, row["instruction"])
        sample = {"id": row.get("id"), "task": task.name, "instruction": row["instruction"]}
        sample |= {"predicted": predicted, "confidence": confidence}
        sample["intent_correct"] = predicted == task.name if task.id < restorer.num_classes else None
        samples.append(sample | _pair_metrics(restored, degraded, clean, crop_border))
    overall = summarise(samples)
    return {
        "data": str(data_dir),
        "split": split,
        "crop_border": crop_border,
        "primary": "rgb",
        "tasks": _group(samples, "task"),
        "overall": overall,
        "intent_accuracy": overall["intent_accuracy"],
        "samples": samples,
    }


def evaluate_paired(
    restorer: Restorer,
    spec: str,
    instruction: str | None = None,
    split: str = "test",
    crop_border: int = 0,
    limit: int | None = None,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Restore a benchmark set given as "KIND:DIR" (see ``import_paired``) and report metrics per group.

    Both images are cropped at the bottom and right edges to a multiple of 16 first. The instruction is
    ``instruction`` if given, else the task's entry in ``DEFAULT_INSTRUCTIONS``. Groups are the set, split by
    noise level for the denoising sets (e.g. "cbsd68 sigma=25"), as papers report them.
    """
    from tqdm.auto import tqdm

    pairs = import_paired(spec)
    kind = spec.partition(":")[0].strip().lower()
    usable = [pair for pair in pairs if pair.degraded is not None or "sigma" in pair.params]
    if not usable:
        raise ValueError(f"{spec} holds clean training images only; evaluate on a test set (lol, gopro, sots, ...)")
    chosen = [pair for pair in usable if pair.split == split]
    if not chosen:
        found = ", ".join(sorted({pair.split for pair in usable}))
        raise ValueError(f"{spec} has no {split!r} pairs (it has {found})")
    if limit is not None:
        chosen = chosen[:limit]
    requests = {pair.task: instruction or DEFAULT_INSTRUCTIONS.get(pair.task) for pair in chosen}
    missing = [task for task, text in requests.items() if not text]
    if missing:
        raise ValueError(f"no default instruction for task(s) {', '.join(missing)}; pass one")
    restorer.prepare(list(requests.values()))
    samples = []
    for pair in tqdm(chosen, desc=kind, unit="image", disable=not show_progress):
        clean = np.ascontiguousarray(crop_to_multiple(pair.load_clean(), 16))
        degraded = np.ascontiguousarray(crop_to_multiple(pair.load_degraded(), 16))
        if clean.shape != degraded.shape:
            raise ValueError(f"{pair.name}: clean {clean.shape} and degraded {degraded.shape} differ in size")
        text = requests[pair.task]
        predicted, confidence = restorer.intent(text)
        restored = restorer.restore(degraded, text)
        sigma = pair.params.get("sigma")
        group = f"{pair.source} sigma={sigma}" if sigma is not None else pair.source
        sample = {"id": pair.name, "group": group, "task": pair.task, "instruction": text}
        sample |= {"predicted": predicted, "confidence": confidence}
        sample["intent_correct"] = predicted == pair.task if get_task(pair.task).id < restorer.num_classes else None
        samples.append(sample | _pair_metrics(restored, degraded, clean, crop_border))
    overall = summarise(samples)
    return {
        "spec": spec,
        "kind": kind,
        "split": split,
        "crop_border": crop_border,
        "primary": "y" if kind in Y_CHANNEL_SETS else "rgb",
        "instructions": requests,
        "unmatched": list(pairs.unmatched),
        "groups": _group(samples, "group"),
        "overall": overall,
        "intent_accuracy": overall["intent_accuracy"],
        "samples": samples,
    }


SUMMARY_COLUMNS = ("group", "images", "PSNR in", "PSNR out", "SSIM in", "SSIM out", "intent")


def summary_table(result: dict[str, Any]) -> list[list[str]]:
    """One row of formatted cells per task or group, then "overall", in the result's primary channel (SUMMARY_COLUMNS):
    the one table the CLI prints and the pipeline writes as Markdown."""
    suffix = "_y" if result["primary"] == "y" else ""
    groups = result.get("tasks") or result.get("groups") or {}
    rows = []
    for name, stats in [*groups.items(), ("overall", result["overall"])]:
        accuracy = stats["intent_accuracy"]
        rows.append(
            [
                name,
                str(stats["count"]),
                _decimal(stats[f"input_psnr{suffix}"], 2),
                _decimal(stats[f"psnr{suffix}"], 2),
                _decimal(stats[f"input_ssim{suffix}"], 4),
                _decimal(stats[f"ssim{suffix}"], 4),
                "-" if accuracy is None else f"{accuracy:.1%}",
            ]
        )
    return rows


def jsonable(value: Any) -> Any:
    """``value`` with non-finite floats (an identical pair's infinite PSNR) as None, so the JSON is strict."""
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _decimal(value: float | None, places: int) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{places}f}"


def _pair_metrics(restored: np.ndarray, degraded: np.ndarray, clean: np.ndarray, crop_border: int) -> dict[str, float]:
    ours = image_metrics(restored, clean, crop_border)
    baseline = image_metrics(degraded, clean, crop_border)
    return ours | {f"input_{name}": value for name, value in baseline.items()}


def _group(samples: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    names = sorted({sample[key] for sample in samples}, key=lambda name: (_order(name), name))
    return {name: summarise(sample for sample in samples if sample[key] == name) for name in names}


def _order(name: str) -> int:
    try:
        return get_task(name).id
    except KeyError:
        return -1


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return float(np.mean(values)) if values else None
