"""Package the default model: bf16 weights, figures on the held-out photos and real-style requests, and its card.

Usage: python models/default/card.py [--run models/default/work/finetune] [--base-run RUN ...]
                                     [--data models/default/work/dataset-ft] [--out instructir/data/model]
Reads the run's EMA weights (final.safetensors), writes OUT/default.safetensors in bf16 (float32 would not fit the
package's 15 MB budget; the card states how far the bf16 figures are from the float32 ones), OUT/metrics.json and
OUT/README.md (the card). With --base-run (repeatable), the run fine-tuned those runs' weights in turn: the card
gives every stage and counts every stage's wall time.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from instructir.analysis.labelled import load_labelled
from instructir.datasets.build import load_built
from instructir.datasets.sources import sample_images
from instructir.hardware import cpu_description
from instructir.model.colour import colour_stage_facts, load_colour_stage
from instructir.model.evaluate import evaluate_dataset
from instructir.model.probe import probe
from instructir.model.restore import Restorer
from instructir.tasks import all_tasks, get_task

REPO = Path(__file__).resolve().parents[2]
REAL = REPO / "tests" / "data" / "real_requests.jsonl"
COLOUR_STAGE = "default.colour.safetensors"  # the colour stage's file, beside the weights
REAL_NAME = "160 real-style requests written for this project (tests/data/real_requests.jsonl)"
SPLIT_FIGURES = ("count", "input_psnr", "psnr", "input_ssim", "ssim")


def photos_in(data: Path, split: str) -> list[str]:
    """Names of the photos in one split of the dataset, e.g. ``samples/rocket`` for the test split."""
    ids = load_built(data, split)["id"]
    return sorted({row_id.split("/", 1)[1].rsplit("/", 2)[0] for row_id in ids})


def export(source: Path, target: Path, extra: dict, dtype: torch.dtype) -> None:
    """Write ``source``'s tensors in ``dtype`` to ``target``, keeping its metadata, with ``extra`` merged in."""
    with safe_open(str(source), "pt") as handle:
        metadata = dict(handle.metadata())
    tensors = {key: value.to(dtype) if value.is_floating_point() else value for key, value in load_file(source).items()}
    metadata["extra"] = json.dumps({**json.loads(metadata["extra"]), **extra})
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(target), metadata=metadata)


def intent_accuracy(restorer: Restorer, source: Path) -> dict:
    """Share of requests whose intent the head reads as their labelled task, overall and per task."""
    rows = load_labelled(source)
    restorer.prepare(rows.texts)
    by_task: dict[str, list[bool]] = {}
    for text, label in zip(rows.texts, rows.labels, strict=True):
        task = get_task(int(label)).name
        by_task.setdefault(task, []).append(restorer.intent(text)[0] == task)
    hits = [hit for group in by_task.values() for hit in group]
    return {
        "set": REAL_NAME,
        "rows": len(hits),
        "accuracy": float(np.mean(hits)),
        "by_task": {task: float(np.mean(group)) for task, group in by_task.items()},
    }


def measure(
    checkpoint: Path, data: Path, photos: list[str], ensemble: bool, keep_mean: bool, colour_stage: Path | None
) -> dict:
    """The probe on each held-out photo, the dataset's test split, and intent accuracy, for one checkpoint (with
    ``colour_stage`` as its colour stage when given)."""
    restorer = Restorer.from_checkpoint(checkpoint, device="cpu", ensemble=ensemble, keep_mean=keep_mean, colour=False)
    if colour_stage is not None:
        restorer.colour_stage = load_colour_stage(colour_stage)
    refs = {ref.name: ref for ref in sample_images()}
    test = evaluate_dataset(restorer, data, "test")
    return {
        "probe": {name: probe(restorer, refs[name].load()) for name in photos},
        "test_split": {task: {key: row[key] for key in SPLIT_FIGURES} for task, row in test["tasks"].items()},
        "intent": intent_accuracy(restorer, REAL),
    }


def largest_gap(a: dict, b: dict) -> float:
    """The largest PSNR difference between two measurements' probe figures."""
    return max(
        abs(a["probe"][photo][task]["psnr"] - b["probe"][photo][task]["psnr"])
        for photo in a["probe"]
        for task in a["probe"][photo]
    )


def stage_line(train: dict) -> str:
    """One training stage's settings, as the card states them."""
    line = (
        f"{train['steps']:,} steps of batch {train['batch']} on {train['patch']}x{train['patch']} crops, AdamW, lr "
        f"{train['lr']} with {train['warmup']} warm-up steps and cosine decay, intent cross-entropy weight "
        f"{train['text_weight']}, EMA {train['ema_decay']}"
    )
    if train.get("init"):
        line += f", starting from the weights of {train['init']}"
    if train.get("augment"):
        line += ", each clean crop turned by a random quarter turn and its exposure, white balance and gamma jittered"
    return line + "."


def card(metrics: dict) -> str:
    """The model card (Markdown) from the measured figures."""
    train = metrics["training"]
    stages = [*metrics.get("base_training", []), train]
    held_out = set(metrics["held_out"])
    lines = [
        "# instructir default model",
        "",
        "The model `instructir restore`, `eval` and `demo` use when no `--checkpoint` is given and no quick run "
        "exists.",
        f"InstructIR (NAFNet + instruction condition blocks) of width {train['width']}, encoder blocks "
        f"{train['enc_blks']}, {train['middle_blk_num']} middle, decoder {train['dec_blks']}: "
        f"{metrics['parameters']:,} parameters, stored in {metrics['dtype']} ({metrics['bytes'] / 1e6:.1f} MB). "
        f"It reads requests through {train['encoder']} and knows {', '.join(metrics['tasks'])}.",
        "",
        "## Recipe",
        "",
        "`bash models/default/train.sh` (resumes from its newest checkpoint; `models/default/sweep.sh` chose the "
        "size).",
        f"Data: the {metrics['train_photos']} bundled photos of the train split, each crop degraded afresh every epoch"
        " (`--on-the-fly`) for a task drawn in turn, with a request for that task drawn from the shipped corpus "
        "(instructir-requests). Held out of training: "
        f"{', '.join(metrics['held_out'])} (test) and {', '.join(metrics['validation'])} (validation, used to pick"
        " the size).",
        *[f"Stage {number}: {stage_line(stage)}" for number, stage in enumerate(stages, 1)],
        f"Wall time {metrics['wall_seconds'] / 3600:.2f} h in all on {metrics['machine']} (PyTorch "
        f"{metrics['torch']}).",
        "",
        "## Unseen photos, fixed damage, plain request",
        "",
        "Each row damages a whole photo that training never saw once (settings in "
        "`instructir.model.probe.FIXED_DAMAGE`) and restores it with the plain request shown: the test photo, and "
        "the validation photo that chose the recipe. PSNR/SSIM in RGB against the clean photo; measured on "
        f"{metrics['machine']}.",
        *(
            [
                "",
                "The model asks for the self-ensemble (`ensemble` in its metadata), so every figure here, and "
                "`instructir restore`, `eval` and `demo` by default, average the outputs of four copies of each "
                "image (as is, upside down, mirrored, both), turned back: four times the work. `--no-ensemble` "
                "restores in one pass. `models/default/train.sh` says how the validation photo chose it.",
            ]
            if metrics.get("ensemble")
            else []
        ),
        *(
            [
                "",
                "It also asks to keep the mean colour (`keep_mean`): for a request read as a task whose damage keeps "
                f"a photo's mean colour ({', '.join(t.name for t in all_tasks() if t.keeps_mean)}), the output is "
                "shifted back to the input's mean colour, "
                "which a small model trained on 9 photos lets drift. `--no-keep-mean` turns it off. "
                "`models/default/train.sh` says how the validation photos chose it.",
            ]
            if metrics.get("keep_mean")
            else []
        ),
        *(
            [
                "",
                "It ships with a colour stage (`default.colour.safetensors`, `instructir/model/colour.py`): for a "
                "request read as a task whose damage is one colour function of the whole photo "
                f"({', '.join(t.name for t in all_tasks() if t.global_colour)}), the output is the mean of the "
                "network's output and a global colour transform of the input (a monotone curve per channel, then a "
                "3x3 colour matrix and an offset) that a small MLP picks from the photo's colour statistics. It was "
                "trained by "
                f"`python models/default/colour_stage.py` for {metrics['colour_stage']['steps']:,} steps on the "
                f"same {len(metrics['colour_stage']['photos'])} training photos with retouches drawn from the "
                f"training ranges ({metrics['colour_stage']['wall_seconds']:.0f} s on "
                f"{metrics['colour_stage']['machine']}); the network alone made the test photo's retouch worse. "
                "`--no-colour` turns it off.",
            ]
            if metrics.get("colour_stage")
            else []
        ),
        "",
        "| photo | task | damage | request | input PSNR | restored PSNR | gain (dB) | input SSIM | restored SSIM |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for photo, tasks in metrics["figures"]["probe"].items():
        role = "test" if photo in held_out else "validation"
        for task, row in tasks.items():
            lines.append(
                f"| {photo} ({role}) | {task} | {row['damage']['name']} | {row['instruction']} | "
                f"{row['input_psnr']:.2f} | {row['psnr']:.2f} | {row['psnr'] - row['input_psnr']:+.2f} | "
                f"{row['input_ssim']:.3f} | {row['ssim']:.3f} |"
            )
    lines += [
        "",
        "## Held-out photo, damage drawn from the training ranges",
        "",
        "The dataset's test split: the held-out photo's 256x256 crops, each with a degradation and a request drawn "
        "as in training.",
        "",
        "| task | crops | input PSNR | restored PSNR | input SSIM | restored SSIM |",
        "|---|---|---|---|---|---|",
    ]
    for task, row in metrics["figures"]["test_split"].items():
        lines.append(
            f"| {task} | {row['count']} | {row['input_psnr']:.2f} | {row['psnr']:.2f} | {row['input_ssim']:.3f} | "
            f"{row['ssim']:.3f} |"
        )
    intent = metrics["figures"]["intent"]
    gains = {
        task: row["psnr"] - row["input_psnr"]
        for photo, rows in metrics["figures"]["probe"].items()
        if photo in held_out
        for task, row in rows.items()
    }
    helped = [task for task, gain in gains.items() if gain > 0]
    hurt = [task for task, gain in gains.items() if gain <= 0]
    lines += [
        "",
        "## Reading requests",
        "",
        f"Intent accuracy on {intent['set']}: **{intent['accuracy']:.3f}** ({intent['rows']} rows); per task: "
        + ", ".join(f"{task} {value:.2f}" for task, value in intent["by_task"].items())
        + ".",
        "",
        "## Limits",
        "",
        f"A small network trained for {metrics['wall_seconds'] / 3600:.1f} hours on {metrics['train_photos']} photos. "
        f"On the test photo, damaged once per task, it improves {', '.join(helped) or 'no task'}"
        + (
            f" and does not improve {', '.join(hurt)} (the rows above with a negative gain)"
            if hurt
            else " (every task)"
        )
        + "; the test split's crops, with damage drawn from the training ranges, show where it still loses. "
        "For those, use a model trained longer on your own photos (`instructir run`, or `models/default/train.sh` "
        "with more data and steps).",
        f"Stored in bf16 to fit the package's size budget: the held-out PSNR figures differ from the float32 "
        f"weights' by at most {metrics['bf16_gap_db']:.3f} dB.",
        "",
    ]
    return "\n".join(lines)


def wall_seconds(run: Path) -> float:
    """The wall time of every segment of a run (train.sh appends one line per segment to segments.jsonl)."""
    lines = (run / "segments.jsonl").read_text().splitlines()
    return float(sum(json.loads(line)["seconds"] for line in lines if line))


def run_config(run: Path) -> dict:
    """The training settings a run's final weights carry."""
    with safe_open(str(run / "final.safetensors"), "pt") as handle:
        return json.loads(handle.metadata()["config"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=REPO / "models/default/work/finetune")
    parser.add_argument(
        "--base-run", type=Path, action="append", default=[], help="The runs --run fine-tuned, first to last."
    )
    parser.add_argument("--data", type=Path, default=REPO / "models/default/work/dataset-ft")
    parser.add_argument("--out", type=Path, default=REPO / "instructir/data/model")
    parser.add_argument(
        "--ensemble",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Ship the model asking for the self-ensemble, and measure it so (chosen on the validation photo).",
    )
    parser.add_argument(
        "--keep-mean",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Ship the model asking to keep the mean colour of deblur and superres outputs (chosen on validation).",
    )
    parser.add_argument(
        "--colour-stage",
        type=Path,
        default=REPO / "models/default/work/colour.safetensors",
        help="The colour stage to ship beside the weights (from colour_stage.py); skipped when the file is missing.",
    )
    args = parser.parse_args()
    final = args.run / "final.safetensors"
    saved = run_config(args.run)
    runs = [*args.base_run, args.run]
    wall = float(sum(wall_seconds(run) for run in runs))
    photos = photos_in(args.data, "test")
    validation = photos_in(args.data, "validation")
    train_photos = len(photos_in(args.data, "train"))
    facts = {"recipe": "models/default/train.sh", "held_out": photos, "wall_seconds": wall, "ensemble": args.ensemble}
    facts["keep_mean"] = args.keep_mean
    facts["machine"] = cpu_description()
    stage = args.colour_stage if args.colour_stage.is_file() else None
    stage_facts = None
    if stage is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(stage, args.out / COLOUR_STAGE)
        facts["colour_stage"] = COLOUR_STAGE
        stage_facts = colour_stage_facts(stage)

    fp32 = measure(final, args.data, photos + validation, args.ensemble, args.keep_mean, stage)
    candidate = args.out / "default.safetensors"
    export(final, candidate, facts, torch.bfloat16)
    bf16 = measure(candidate, args.data, photos + validation, args.ensemble, args.keep_mean, stage)
    gap = largest_gap(fp32, bf16)
    parameters = sum(tensor.numel() for tensor in load_file(candidate).values())
    with safe_open(str(candidate), "pt") as handle:
        tasks = json.loads(handle.metadata()["extra"])["tasks"]
    metrics = {
        "training": saved,
        "base_training": [run_config(run) for run in args.base_run],
        "tasks": tasks,
        "held_out": photos,
        "validation": validation,
        "train_photos": train_photos,
        "parameters": parameters,
        "dtype": "bfloat16",
        "ensemble": args.ensemble,
        "keep_mean": args.keep_mean,
        "colour_stage": stage_facts,
        "bytes": candidate.stat().st_size,
        "bf16_gap_db": gap,
        "wall_seconds": wall,
        "machine": cpu_description(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "figures": bf16,
        "figures_float32": fp32,
    }
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (args.out / "README.md").write_text(card(metrics))
    print(card(metrics))


if __name__ == "__main__":
    main()
