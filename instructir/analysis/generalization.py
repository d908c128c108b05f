"""Synthetic-to-real generalisation: train the intent classifier on a corpus, test it on real requests.

The text head and a logistic probe are trained on three request sets (the corpus, the registry's seeds and
InstructIR-style templates) and tested on the same real requests, so the report says how much an LLM-written
corpus buys over the cheap alternatives. Given a checkpoint and a built dataset it also measures what the
wording costs in pixels: PSNR per task when the model is told with a real request, a corpus request, a template,
another task's request or nothing at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from instructir.analysis.intent import (
    HeadTraining,
    classification_metrics,
    head_predict,
    probe_predict,
    train_head,
    train_probe,
)
from instructir.analysis.labelled import LabelledTexts, embed_texts
from instructir.analysis.report import Report
from instructir.analysis.templates import seed_requests, seeds_and_templates, task_templates, template_requests
from instructir.prompts.embed import DEFAULT_ENCODER
from instructir.tasks import all_tasks, get_task

BASELINES = ("seeds", "templates", "seeds_templates")
CONDITIONS = ("real", "corpus", "template", "other_task", "empty")
MISCLASSIFIED_SHOWN = 100


@dataclass(frozen=True)
class Predictions:
    """One classifier's answers on the real requests: predicted ids and the probability of each prediction."""

    predicted: np.ndarray
    confidence: np.ndarray


def evaluate_on_real(
    train: LabelledTexts,
    train_vectors: np.ndarray,
    real: LabelledTexts,
    real_vectors: np.ndarray,
    seed: int,
    settings: HeadTraining | None = None,
) -> dict[str, tuple[dict[str, Any], Predictions]]:
    """Train the head and the probe on ``train`` and score both on ``real``: {"head"|"probe": (metrics, answers)}."""
    head = train_head(train_vectors, train.labels, seed, settings=settings)
    probe = train_probe(train_vectors, train.labels, seed)
    results = {}
    for name, (predicted, probabilities) in (
        ("head", head_predict(head, real_vectors)),
        ("probe", probe_predict(probe, real_vectors)),
    ):
        answers = Predictions(predicted, probabilities[np.arange(len(predicted)), predicted])
        metrics = classification_metrics(real.labels, predicted) | {"trained_on": len(train)}
        results[name] = (metrics, answers)
    return results


def generalization_metrics(
    corpus: LabelledTexts,
    real: LabelledTexts,
    seed: int = 0,
    encoder: str = DEFAULT_ENCODER,
    cache_dir: str | Path | None = None,
    progress: bool = False,
    settings: HeadTraining | None = None,
) -> tuple[dict[str, Any], dict[str, Predictions]]:
    """Metrics of head and probe trained on corpus, seeds and templates, tested on ``real``; and their answers.

    The top level holds the corpus-trained head; "baselines" the heads trained on the seeds, the templates and
    both together ("seeds_templates"); "probe" the
    same for the logistic probe. The answers are those of the corpus-trained head and probe.
    """
    sets = {
        "corpus": corpus,
        "seeds": seed_requests(),
        "templates": template_requests(seed=seed),
        "seeds_templates": seeds_and_templates(seed=seed),
    }
    real_vectors = embed_texts(real.texts, encoder, cache_dir, progress)
    scores = {}
    for name, train in sets.items():
        vectors = embed_texts(train.texts, encoder, cache_dir, progress)
        scores[name] = evaluate_on_real(train, vectors, real, real_vectors, seed, settings)
    metrics: dict[str, Any] = {
        "corpus": corpus.name,
        "real": real.name,
        "real_about": real.about(),
        "encoder": encoder,
        "seed": seed,
        "sizes": {name: len(train) for name, train in sets.items()} | {"real": len(real)},
    }
    for classifier in ("head", "probe"):
        section = dict(scores["corpus"][classifier][0])
        section["baselines"] = {name: scores[name][classifier][0] for name in BASELINES}
        if classifier == "head":
            metrics |= section
        else:
            metrics["probe"] = section
    answers = {classifier: scores["corpus"][classifier][1] for classifier in ("head", "probe")}
    metrics["misclassified"] = misclassified(real, answers)
    return metrics, answers


def misclassified(real: LabelledTexts, answers: dict[str, Predictions]) -> list[dict[str, Any]]:
    """The real requests the corpus-trained head gets wrong, with what the head and the probe said."""
    head, probe = answers["head"], answers["probe"]
    rows = []
    for index in np.flatnonzero(head.predicted != real.labels):
        rows.append(
            {
                "text": real.texts[index],
                "task": get_task(int(real.labels[index])).name,
                "head": get_task(int(head.predicted[index])).name,
                "head_confidence": float(head.confidence[index]),
                "probe": get_task(int(probe.predicted[index])).name,
            }
        )
    return rows


def pick_requests(
    tasks: list[str], corpus: LabelledTexts, real: LabelledTexts, seed: int
) -> list[dict[str, str | None]]:
    """For each row's task, one request per condition (real, corpus, template, another task's, empty), seeded.

    "other_task" is a corpus request of a different restoration task; "real" is None where ``real`` has none.
    """
    rng = np.random.default_rng(seed)
    restoring = [task.id for task in all_tasks() if task.degradations]
    picks = []
    for name in tasks:
        task = get_task(name)
        other = int(rng.choice([task_id for task_id in restoring if task_id != task.id]))
        picks.append(
            {
                "real": _choose(_texts_of(real, task.id), rng),
                "corpus": _choose(_texts_of(corpus, task.id), rng),
                "template": _choose(task_templates(task.id), rng),
                "other_task": _choose(_texts_of(corpus, other), rng),
                "empty": "",
            }
        )
    return picks


def psnr_by_request(
    checkpoint: str | Path,
    data: str | Path,
    corpus: LabelledTexts,
    real: LabelledTexts,
    limit: int = 4,
    split: str = "test",
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """PSNR of a checkpoint's restorations per task and request condition on up to ``limit`` images per task."""
    from tqdm.auto import tqdm

    from instructir.datasets.build import load_built
    from instructir.datasets.images import rgb_array
    from instructir.model.metrics import psnr
    from instructir.model.restore import Restorer

    rows = load_built(data, split)
    chosen = _first_per_task(list(rows["task"]), limit)
    restorer = Restorer.from_checkpoint(checkpoint, device="cpu")
    picks = pick_requests([rows[index]["task"] for index in chosen], corpus, real, seed)
    restorer.prepare([text for pick in picks for text in pick.values() if text is not None])
    samples = []
    for index, pick in tqdm(list(zip(chosen, picks, strict=True)), desc="restoring", disable=not progress):
        row = rows[index]
        clean, degraded = rgb_array(row["clean"]), rgb_array(row["degraded"])
        sample = {"task": get_task(row["task"]).name, "input": psnr(degraded, clean)}
        for condition, text in pick.items():
            sample[condition] = None if text is None else psnr(restorer.restore(degraded, text), clean)
        samples.append(sample)
    return {"data": str(data), "split": split, "limit": limit, "tasks": _psnr_means(samples), "samples": samples}


def build_report(metrics: dict[str, Any], psnr: dict[str, Any] | None = None) -> Report:
    """The generalisation report: scores, per-task table, confusion matrices, errors, and PSNR if measured."""
    report = Report("Synthetic-to-real generalisation of the intent classifier")
    sizes = metrics["sizes"]
    report.text(
        f"Classifiers trained on the corpus '{metrics['corpus']}' ({sizes['corpus']} requests), on the registry's "
        f"seeds ({sizes['seeds']}) and on InstructIR-style templates ({sizes['templates']}), each tested on "
        f"{metrics['real_about']}. 'head' is the model's text head (projection to "
        f"the unit vector e, then a linear classifier) trained alone on {metrics['encoder']} embeddings with "
        "class-balanced cross-entropy; 'probe' is a class-balanced logistic regression on the same embeddings. "
        f"Seed {metrics['seed']}. Macro-F1 averages over the tasks present in the real set; the accuracy interval is "
        "Wilson's 95% score interval over the test requests, so overlapping intervals mean the test set cannot "
        "tell the training sets apart."
    )
    report.heading("Scores on the test requests")
    report.table(score_rows(metrics), caption="accuracy and macro-F1 on the test requests, by training set")
    report.figure(score_figure(metrics), "scores", "accuracy and macro-F1 on the test requests by training set")
    report.heading("Per task (trained on the corpus)")
    report.table(per_task_rows(metrics), caption="precision, recall and F1 per task on the test requests")
    for classifier, section in (("head", metrics), ("probe", metrics["probe"])):
        caption = f"confusion matrix of the corpus-trained {classifier} (counts; colour = share of the true task)"
        report.figure(confusion_figure(section["confusion"], classifier), f"confusion_{classifier}", caption)
    report.heading("Misclassified test requests (corpus-trained head)")
    wrong = metrics["misclassified"]
    report.text(f"{len(wrong)} of the {sizes['real']} test requests are misclassified by the head.")
    report.table(wrong[:MISCLASSIFIED_SHOWN], caption=f"first {MISCLASSIFIED_SHOWN} at most; all in metrics.json")
    if psnr is not None:
        report.heading("PSNR by request wording")
        report.text(
            f"Checkpoint restorations of up to {psnr['limit']} '{psnr['split']}' images per task of {psnr['data']}, "
            "told with: a real request of the task, a corpus request, a template, a corpus request of another "
            "(restoration) task, or an empty string. 'input' is the degraded image's PSNR."
        )
        report.table(psnr_rows(psnr), caption="mean PSNR (dB) per task and request condition")
        report.figure(psnr_figure(psnr), "psnr", "mean PSNR per task and request condition")
    return report


def score_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (classifier, training set) with accuracy and macro-F1."""
    rows = []
    for classifier, section in (("head", metrics), ("probe", metrics["probe"])):
        for name in ("corpus", *BASELINES):
            scores = section if name == "corpus" else section["baselines"][name]
            rows.append(
                {
                    "classifier": classifier,
                    "trained on": name,
                    "requests": scores["trained_on"],
                    "accuracy": scores["accuracy"],
                    "accuracy 95% CI": "{:.3f}-{:.3f}".format(*scores["accuracy_ci95"]),
                    "macro-F1": scores["macro_f1"],
                }
            )
    return rows


def per_task_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-task precision, recall and F1 of the corpus-trained head and probe."""
    rows = []
    for name, head in metrics["per_task"].items():
        probe = metrics["probe"]["per_task"][name]
        row = {"task": name, "test requests": head["support"]}
        row |= {"head P": head["precision"], "head R": head["recall"], "head F1": head["f1"]}
        row |= {"probe P": probe["precision"], "probe R": probe["recall"], "probe F1": probe["f1"]}
        rows.append(row)
    return rows


def psnr_rows(psnr: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per task: image count, input PSNR and the mean PSNR under each condition."""
    return [{"task": name, **values} for name, values in psnr["tasks"].items()]


def score_figure(metrics: dict[str, Any]):
    """Grouped bars: accuracy and macro-F1 per training set, head and probe side by side."""
    import matplotlib.pyplot as plt

    rows = score_rows(metrics)
    sets = ["corpus", *BASELINES]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for axis, (key, title) in zip(axes, (("accuracy", "accuracy"), ("macro-F1", "macro-F1")), strict=True):
        for offset, classifier in ((-0.2, "head"), (0.2, "probe")):
            mine = {row["trained on"]: row[key] for row in rows if row["classifier"] == classifier}
            values = [mine[name] for name in sets]
            bars = axis.bar(np.arange(len(sets)) + offset, values, width=0.4, label=classifier)
            axis.bar_label(bars, fmt="%.2f", fontsize=8)
        axis.set_xticks(range(len(sets)), sets)
        axis.set_xlabel("training set")
        axis.set_title(f"{title} on the test requests")
        axis.set_ylim(0, 1.08)
    axes[0].set_ylabel("score")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.tight_layout()
    fig.legend(handles, labels, title="classifier", loc="upper center", ncols=2, bbox_to_anchor=(0.5, 1.12))
    return fig


def confusion_figure(confusion: list[list[int]], classifier: str):
    """A tasks x tasks confusion matrix: counts written in the cells, colour = fraction of the true task's rows."""
    import matplotlib.pyplot as plt

    counts = np.array(confusion, dtype=float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    names = [task.name for task in all_tasks()]
    fig, axis = plt.subplots(figsize=(6.4, 5.4))
    image = axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (row, column), count in np.ndenumerate(counts):
        if count:
            colour = "white" if shares[row, column] > 0.6 else "black"
            axis.text(column, row, f"{int(count)}", ha="center", va="center", color=colour, fontsize=9)
    axis.set_xticks(range(len(names)), names, rotation=45, ha="right")
    axis.set_yticks(range(len(names)), names)
    axis.set_xlabel(f"predicted task ({classifier})")
    axis.set_ylabel("true task")
    axis.set_title(f"Test requests: corpus-trained {classifier}")
    fig.colorbar(image, ax=axis, label="share of the true task's requests")
    fig.tight_layout()
    return fig


def psnr_figure(psnr: dict[str, Any]):
    """Grouped bars of mean PSNR per task, one bar per condition, the input's PSNR as a black tick."""
    import matplotlib.pyplot as plt

    names = list(psnr["tasks"])
    width = 0.8 / len(CONDITIONS)
    fig, axis = plt.subplots(figsize=(max(6.0, 1.3 * len(names) + 2), 3.8))
    for slot, condition in enumerate(CONDITIONS):
        values = [psnr["tasks"][name][condition] for name in names]
        positions = np.arange(len(names)) + (slot - (len(CONDITIONS) - 1) / 2) * width
        axis.bar(positions, [np.nan if v is None else v for v in values], width=width, label=condition)
    inputs = [psnr["tasks"][name]["input"] for name in names]
    axis.scatter(range(len(names)), inputs, marker="_", s=600, color="black", label="input (degraded)", zorder=3)
    axis.set_xticks(range(len(names)), names)
    axis.set_xlabel("task of the image")
    axis.set_ylabel("mean PSNR (dB)")
    axis.legend(title="request", fontsize=8, ncols=3, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    fig.tight_layout()
    return fig


def _texts_of(labelled: LabelledTexts, task_id: int) -> list[str]:
    return [text for text, label in zip(labelled.texts, labelled.labels, strict=True) if label == task_id]


def _choose(texts: list[str], rng: np.random.Generator) -> str | None:
    return texts[int(rng.integers(len(texts)))] if texts else None


def _first_per_task(tasks: list[str], limit: int) -> list[int]:
    """Row indices of the first ``limit`` rows of every task, in row order."""
    taken: dict[str, int] = {}
    chosen = []
    for index, task in enumerate(tasks):
        if taken.get(task, 0) < limit:
            taken[task] = taken.get(task, 0) + 1
            chosen.append(index)
    return chosen


def _psnr_means(samples: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    names = sorted({sample["task"] for sample in samples}, key=lambda name: get_task(name).id)
    means = {}
    for name in names:
        group = [sample for sample in samples if sample["task"] == name]
        entry: dict[str, Any] = {"images": len(group)}
        for key in ("input", *CONDITIONS):
            values = [sample[key] for sample in group if sample[key] is not None and np.isfinite(sample[key])]
            entry[key] = float(np.mean(values)) if values else None
        means[name] = entry
    return means


def generalization_report(
    corpus: LabelledTexts,
    real: LabelledTexts,
    out_dir: str | Path,
    model: str = DEFAULT_ENCODER,
    seed: int = 0,
    checkpoint: str | Path | None = None,
    data: str | Path | None = None,
    limit: int = 4,
    split: str = "test",
    progress: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Classifiers trained on ``corpus`` tested on ``real`` (plus PSNR by wording with a checkpoint and dataset)."""
    if (checkpoint is None) != (data is None):
        raise ValueError("the PSNR part needs both a checkpoint and a dataset")
    metrics, _ = generalization_metrics(corpus, real, seed, model, progress=progress)
    psnr = None
    if checkpoint is not None:
        psnr = psnr_by_request(checkpoint, data, corpus, real, limit, split, seed, progress=progress)
        metrics["psnr"] = psnr
    return build_report(metrics, psnr).write(out_dir, metrics), metrics
