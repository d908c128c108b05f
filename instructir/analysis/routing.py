"""Routing: which feature channels each instruction opens in every Instruction Condition Block (ICB).

A request becomes ``e`` (the text head's projection of its sentence embedding) and each ICB gates its channels
by ``sigmoid(fc(e))``. This module computes those gates for a corpus, averages them per task, and asks whether
tasks get distinct channel patterns, and whether a real request's gates land nearest its own task's pattern.

Gates are all positive, so raw cosines between any two mean gate vectors are close to 1. Subtracting the centre
(the mean of the task means) leaves what is task-specific; cosines of these centred vectors say which tasks
route alike (positive) or in opposite ways (negative).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from instructir.analysis.clusters import normalise
from instructir.analysis.labelled import LabelledTexts, embed_texts
from instructir.analysis.report import Report
from instructir.model.icb import ICB
from instructir.model.instructir import InstructIR
from instructir.model.text import TextHead
from instructir.tasks import get_task


def icb_blocks(model: InstructIR) -> dict[str, ICB]:
    """The model's ICBs by module name (encoder levels, then decoder levels)."""
    return {name: module for name, module in model.named_modules() if isinstance(module, ICB)}


def instruction_vectors(head: TextHead, sentences: np.ndarray) -> np.ndarray:
    """The unit instruction vectors ``e`` (N, embed_dim) the head makes of sentence embeddings."""
    with torch.inference_mode():
        e, _ = head(torch.from_numpy(np.ascontiguousarray(sentences, dtype=np.float32)))
    return e.numpy()


def gate_vectors(block: ICB, e: np.ndarray) -> np.ndarray:
    """One ICB's channel gates ``sigmoid(fc(e))`` (N, channels)."""
    return gates_of(*fc_weights(block), e)


def fc_weights(block: ICB) -> tuple[np.ndarray, np.ndarray]:
    """The weight (channels, embed_dim) and bias (channels,) of an ICB's gate layer."""
    return block.fc.weight.detach().numpy(), block.fc.bias.detach().numpy()


def gates_of(weight: np.ndarray, bias: np.ndarray, e: np.ndarray) -> np.ndarray:
    """``sigmoid(e W^T + b)``: the gates a layer with these weights gives (N, channels)."""
    return 1 / (1 + np.exp(-(e @ weight.T + bias)))


def shuffled(weight: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The same weight values in random places: a gate layer with the trained scale but no learned routing."""
    return rng.permutation(weight.ravel()).reshape(weight.shape)


def task_means(gates: np.ndarray, labels: np.ndarray, task_ids: list[int]) -> np.ndarray:
    """Mean gate vector of each task (len(task_ids), channels)."""
    return np.stack([gates[labels == task].mean(axis=0) for task in task_ids])


def cosine_matrix(vectors: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarity of the rows."""
    unit = normalise(vectors)
    return unit @ unit.T


def nearest_mean(gates: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Row index into ``means`` of the task mean each gate vector is nearest to; both are unit rows (cosine)."""
    return np.argmax(gates @ means.T, axis=1)


def routing_metrics(
    model: InstructIR,
    head: TextHead,
    corpus: LabelledTexts,
    real: LabelledTexts | None,
    encoder: str,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Per-ICB task-mean gates, centred between-task cosines and, with ``real``, nearest-own-mean rates.

    The rates come with a control: the same ICB with its gate weights shuffled (seeded), which keeps the task
    structure of ``e`` but none of the learned routing. Returns the JSON-ready metrics and the task-mean gate
    matrices (tasks x channels) per ICB for the figures.
    """
    rng = np.random.default_rng(seed)
    task_ids = corpus.task_ids()
    corpus_e = instruction_vectors(head, embed_texts(corpus.texts, encoder, cache_dir, progress))
    metrics: dict[str, Any] = {
        "corpus": corpus.name,
        "encoder": encoder,
        "seed": seed,
        "tasks": [get_task(task).name for task in task_ids],
        "blocks": {},
    }
    means_by_block: dict[str, np.ndarray] = {}
    for name, block in icb_blocks(model).items():
        means = task_means(gate_vectors(block, corpus_e), corpus.labels, task_ids)
        centre = means.mean(axis=0)
        means_by_block[name] = means
        metrics["blocks"][name] = {
            "channels": int(means.shape[1]),
            "mean_gate": float(means.mean()),
            "between_task_spread": float((means - centre).std()),
            "cosine_raw": cosine_matrix(means).round(4).tolist(),
            "cosine_centred": cosine_matrix(means - centre).round(4).tolist(),
        }
    if real is None:
        return metrics, means_by_block
    usable = np.isin(real.labels, task_ids)
    real_e = instruction_vectors(head, embed_texts(real.texts, encoder, cache_dir, progress))[usable]
    labels = real.labels[usable]
    joined: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {"trained": ([], []), "shuffled": ([], [])}
    for name, block in icb_blocks(model).items():
        weight, bias = fc_weights(block)
        for kind, layer in (("trained", weight), ("shuffled", shuffled(weight, rng))):
            gates, means = _centred_units(layer, bias, corpus_e, corpus.labels, real_e, task_ids)
            key = "nearest_own_mean" if kind == "trained" else "nearest_own_mean_shuffled"
            metrics["blocks"][name][key] = _own_rate(nearest_mean(gates, means), labels, task_ids)
            joined[kind][0].append(gates)
            joined[kind][1].append(means)
    metrics["real"] = real.name
    metrics["real_about"] = real.about()
    metrics["real_requests"] = int(usable.sum())
    for kind, key in (("trained", "nearest_own_mean_all_blocks"), ("shuffled", "nearest_own_mean_shuffled_all")):
        gates, means = (np.hstack(parts) for parts in joined[kind])
        metrics[key] = _own_rate(nearest_mean(gates, means), labels, task_ids)
    metrics["chance"] = 1 / len(task_ids)
    return metrics, means_by_block


def _centred_units(
    weight: np.ndarray,
    bias: np.ndarray,
    corpus_e: np.ndarray,
    corpus_labels: np.ndarray,
    real_e: np.ndarray,
    task_ids: list[int],
) -> tuple[np.ndarray, np.ndarray]:
    """Real requests' gates and the corpus task means, centred on the mean of the task means, unit length."""
    means = task_means(gates_of(weight, bias, corpus_e), corpus_labels, task_ids)
    centre = means.mean(axis=0)
    return normalise(gates_of(weight, bias, real_e) - centre), normalise(means - centre)


def build_report(metrics: dict[str, Any], means: dict[str, np.ndarray], checkpoint: str) -> Report:
    """The routing report: gate heatmaps, centred cosine matrices and, with real requests, nearest-mean rates."""
    report = Report("Instruction routing through the ICB gates")
    report.text(
        f"Checkpoint {checkpoint}; requests from '{metrics['corpus']}' embedded with {metrics['encoder']} and "
        "projected by the checkpoint's text head to e; each ICB's gates are sigmoid(W e + b), one per channel. "
        "Heatmaps show each task's mean gate per channel (each ICB on its own colour scale, from its lowest to "
        "its highest task-mean gate), channels sorted by the task whose gate is highest "
        "relative to the other tasks, then by that margin, so channels a task opens most appear as a block."
    )
    report.figure(gate_heatmaps(means, metrics["tasks"]), "gates", "task-mean gate per channel, per ICB")
    report.heading("Between-task similarity of the routing")
    report.text(
        "Gates are all positive, so the raw cosine of two tasks' mean gate vectors is near 1 whatever they do. "
        "We subtract the centre (the mean of the task means) first: the centred cosine is positive for tasks "
        "that open the same channels more than average, negative for tasks that route in opposite ways."
    )
    report.table(block_rows(metrics), caption="per ICB: channels, mean gate, spread of task means around centre")
    report.figure(cosine_grid(metrics), "cosines", "centred cosine of task-mean gate vectors, per ICB")
    if "real" in metrics:
        report.heading("Do the test requests route like their task?")
        report.text(
            f"For each of the {metrics['real_about']}, the task whose centred "
            "mean gate vector is nearest (cosine) to the request's centred gates; the rate at which it is the "
            f"request's own task, per ICB and with all ICBs' gates concatenated. Chance is {metrics['chance']:.3f} "
            f"(1 / {len(metrics['tasks'])} tasks). All ICBs (each block's centred gates scaled to unit length, then "
            f"concatenated, so every ICB weighs the same): {metrics['nearest_own_mean_all_blocks']:.3f}. "
            "Control: the same ICBs with their gate weights shuffled (same values, random places; seed "
            f"{metrics['seed']}), all ICBs: {metrics['nearest_own_mean_shuffled_all']:.3f}. The head already "
            "separates tasks in e and any fixed linear map keeps much of that, so routing is learned only as far "
            "as the trained rate beats the control."
        )
        report.figure(nearest_figure(metrics), "nearest_mean", "nearest-own-mean rate per ICB against chance")
    return report


def block_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per ICB: channel count, mean gate, between-task spread, and the nearest-own-mean rate if known."""
    rows = []
    for name, entry in metrics["blocks"].items():
        row = {"ICB": name, "channels": entry["channels"], "mean gate": entry["mean_gate"]}
        row["spread of task means"] = entry["between_task_spread"]
        if "nearest_own_mean" in entry:
            row["real nearest own mean"] = entry["nearest_own_mean"]
            row["shuffled-weights control"] = entry["nearest_own_mean_shuffled"]
        rows.append(row)
    return rows


def channel_order(means: np.ndarray) -> np.ndarray:
    """Channels grouped by the task that opens them most relative to the centre, by descending margin within."""
    centred = means - means.mean(axis=0)
    owner = centred.argmax(axis=0)
    margin = centred.max(axis=0)
    return np.lexsort((-margin, owner))


def gate_heatmaps(means: dict[str, np.ndarray], tasks: list[str]):
    """One tasks x channels heatmap of mean gates per ICB, channels sorted by ``channel_order``, own colour scale."""
    import matplotlib.pyplot as plt

    names = list(means)
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 1.0 + 0.24 * len(tasks) * len(names)), squeeze=False)
    for axis, name in zip(axes[:, 0], names, strict=True):
        matrix = means[name][:, channel_order(means[name])]
        image = axis.imshow(matrix, aspect="auto", cmap="viridis", interpolation="nearest")
        axis.set_yticks(range(len(tasks)), tasks, fontsize=7)
        axis.set_title(f"{name} ({matrix.shape[1]} channels)", fontsize=9)
        axis.set_ylabel("task", fontsize=8)
        axis.tick_params(axis="x", labelsize=7)
        fig.colorbar(image, ax=axis, label="mean gate", pad=0.01)
    axes[-1, 0].set_xlabel("channel (sorted by the task that opens it most)")
    fig.tight_layout()
    return fig


def cosine_grid(metrics: dict[str, Any]):
    """Centred-cosine matrices (tasks x tasks) of every ICB, side by side on one colour scale."""
    import matplotlib.pyplot as plt

    names, tasks = list(metrics["blocks"]), metrics["tasks"]
    columns = min(4, len(names))
    rows = -(-len(names) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.3 * columns + 1, 3.3 * rows), squeeze=False)
    for axis in axes.flat[len(names) :]:
        axis.axis("off")
    for axis, name in zip(axes.flat, names, strict=False):
        image = axis.imshow(np.array(metrics["blocks"][name]["cosine_centred"]), cmap="RdBu_r", vmin=-1, vmax=1)
        axis.set_xticks(range(len(tasks)), tasks, rotation=90, fontsize=7)
        axis.set_yticks(range(len(tasks)), tasks if axis in axes[:, 0] else [], fontsize=7)
        axis.set_title(name, fontsize=9)
    fig.colorbar(image, ax=axes, label="cosine of centred task-mean gates", shrink=0.8)
    return fig


def nearest_figure(metrics: dict[str, Any]):
    """Bars of the nearest-own-mean rate per ICB and for all ICBs together, the control beside, chance as a line."""
    import matplotlib.pyplot as plt

    names = [*metrics["blocks"], "all ICBs"]
    blocks = metrics["blocks"].values()
    trained = [entry["nearest_own_mean"] for entry in blocks] + [metrics["nearest_own_mean_all_blocks"]]
    control = [entry["nearest_own_mean_shuffled"] for entry in blocks] + [metrics["nearest_own_mean_shuffled_all"]]
    positions = np.arange(len(names))
    fig, axis = plt.subplots(figsize=(max(5.0, 0.9 * len(names) + 1.5), 3.8))
    for offset, values, label, colour in (
        (-0.2, trained, "trained gate weights", "tab:blue"),
        (0.2, control, "shuffled-weights control", "tab:gray"),
    ):
        bars = axis.bar(positions + offset, values, width=0.4, label=label, color=colour)
        axis.bar_label(bars, fmt="%.2f", fontsize=7)
    axis.set_xticks(positions, names, rotation=30, ha="right")
    axis.axhline(metrics["chance"], color="black", linestyle="--", label=f"chance ({metrics['chance']:.2f})")
    axis.set_ylim(0, 1.08)
    axis.set_ylabel("test requests nearest own task mean")
    axis.legend(loc="upper center", fontsize=8, ncols=3, bbox_to_anchor=(0.5, -0.3))
    fig.tight_layout()
    return fig


def _own_rate(nearest: np.ndarray, labels: np.ndarray, task_ids: list[int]) -> float:
    return float(np.mean(np.array(task_ids)[nearest] == labels)) if len(labels) else 0.0


def routing_report(
    checkpoint: str | Path,
    corpus: LabelledTexts,
    out_dir: str | Path,
    real: LabelledTexts | None = None,
    head: str | Path | None = None,
    model: str | None = None,
    seed: int = 0,
    progress: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Load a checkpoint and write its gate-routing report; ``model`` defaults to the head's training encoder."""
    from instructir.model.restore import Restorer

    restorer = Restorer.from_checkpoint(checkpoint, encoder=model, head_path=head, device="cpu")
    encoder = restorer.encoder.embedder.model_name
    metrics, means = routing_metrics(restorer.model, restorer.head, corpus, real, encoder, seed, progress=progress)
    metrics["checkpoint"] = str(checkpoint)
    return build_report(metrics, means, str(checkpoint)).write(out_dir, metrics), metrics
