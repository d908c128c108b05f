"""Prompt-set ablation: how held-out intent accuracy grows with the size and diversity of the training requests.

The text head is trained on templates, the registry's seeds, random corpus subsets of rising size, the full
corpus and a diversity-pruned subset (greedy farthest-point selection on embeddings within each task), each
with several seeds, and scored on the same real requests. Random and pruned subsets keep the corpus's task
proportions, so at equal size they differ only in which requests are kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from instructir.analysis.intent import HeadTraining, classification_metrics, head_predict, train_head
from instructir.analysis.labelled import LabelledTexts, embed_texts
from instructir.analysis.report import Report
from instructir.analysis.templates import seed_requests, seeds_and_templates, template_requests
from instructir.prompts.embed import DEFAULT_ENCODER

DEFAULT_SIZES = (1000, 3000, 10000)
DEFAULT_DIVERSE = 3000
_COLOURS = {
    "templates": "tab:orange",
    "seeds": "tab:green",
    "random": "tab:blue",
    "full": "tab:blue",
    "diverse": "tab:red",
    "seeds+templates": "tab:olive",
    "corpus+seeds+templates": "tab:purple",
}


def task_quota(labels: np.ndarray, size: int) -> dict[int, int]:
    """How many of ``size`` rows each task gets, proportional to its share of ``labels`` (largest remainders)."""
    tasks, counts = np.unique(labels, return_counts=True)
    exact = counts * size / counts.sum()
    quota = np.floor(exact).astype(int)
    for slot in np.argsort(-(exact - quota), kind="stable")[: size - quota.sum()]:
        quota[slot] += 1
    return {int(task): int(min(q, c)) for task, q, c in zip(tasks, quota, counts, strict=True)}


def random_subset(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Row indices of a random subset of ``size`` rows with the tasks in their corpus proportions."""
    quota = task_quota(labels, size)
    rows = [rng.choice(np.flatnonzero(labels == task), n, replace=False) for task, n in quota.items()]
    return np.sort(np.concatenate(rows))


def farthest_points(vectors: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy max-min cosine selection: start at a random row, then add the row farthest from all chosen ones."""
    count = min(count, len(vectors))
    chosen = [int(rng.integers(len(vectors)))]
    nearest = 1 - vectors @ vectors[chosen[0]]
    for _ in range(count - 1):
        nearest[chosen[-1]] = -np.inf
        pick = int(np.argmax(nearest))
        chosen.append(pick)
        nearest = np.minimum(nearest, 1 - vectors @ vectors[pick])
    return np.array(chosen, dtype=int)


def diverse_subset(vectors: np.ndarray, labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Row indices of a farthest-point subset of ``size`` rows, chosen within each task at its corpus share."""
    rows = []
    for task, n in task_quota(labels, size).items():
        members = np.flatnonzero(labels == task)
        rows.append(members[farthest_points(vectors[members], n, rng)])
    return np.sort(np.concatenate(rows))


def ablation_metrics(
    corpus: LabelledTexts,
    real: LabelledTexts,
    sizes: Sequence[int] = DEFAULT_SIZES,
    diverse: int | None = DEFAULT_DIVERSE,
    repeats: int = 3,
    seed: int = 0,
    encoder: str = DEFAULT_ENCODER,
    cache_dir: str | Path | None = None,
    progress: bool = False,
    settings: HeadTraining | None = None,
) -> dict[str, Any]:
    """Held-out accuracy and macro-F1 of the head per prompt set, over ``repeats`` seeds (seed, seed+1, ...)."""
    from tqdm.auto import tqdm

    hand = seeds_and_templates(seed=seed)
    sets = {
        "templates": template_requests(seed=seed),
        "seeds": seed_requests(),
        "seeds+templates": hand,
        "corpus": corpus,
        "corpus+seeds+templates": LabelledTexts(
            corpus.texts + hand.texts, np.concatenate([corpus.labels, hand.labels]), f"{corpus.name}+seeds+templates"
        ),
    }
    vectors = {name: embed_texts(texts.texts, encoder, cache_dir, progress) for name, texts in sets.items()}
    real_vectors = embed_texts(real.texts, encoder, cache_dir, progress)
    plans = [("templates", "templates", None), ("seeds", "seeds", None), ("seeds+templates", "seeds+templates", None)]
    plans += [(f"corpus-{_short(n)}", "random", n) for n in sizes if n < len(corpus)]
    if diverse is not None and diverse < len(corpus):
        plans.append((f"diverse-{_short(diverse)}", "diverse", diverse))
    plans.append(("corpus-full", "full", len(corpus)))
    plans.append(("corpus+seeds+templates", "corpus+seeds+templates", None))
    runs = []
    jobs = [(plan, repeat) for plan in plans for repeat in range(repeats)]
    for (name, kind, size), repeat in tqdm(jobs, desc="ablation", disable=not progress):
        run_seed = seed + repeat
        rng = np.random.default_rng([run_seed, size or 0])
        source = "corpus" if kind in ("random", "diverse", "full") else kind
        rows = np.arange(len(sets[source]))
        if kind == "random":
            rows = random_subset(corpus.labels, size, rng)
        elif kind == "diverse":
            rows = diverse_subset(vectors["corpus"], corpus.labels, size, rng)
        head = train_head(vectors[source][rows], sets[source].labels[rows], run_seed, settings=settings)
        scores = classification_metrics(real.labels, head_predict(head, real_vectors)[0])
        runs.append(
            {"set": name, "kind": kind, "seed": run_seed, "size": len(rows)}
            | {"accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"]}
        )
    return {
        "corpus": corpus.name,
        "real": real.name,
        "real_size": len(real),
        "real_about": real.about(),
        "encoder": encoder,
        "repeats": repeats,
        "sets": summarise_runs(runs),
        "runs": runs,
    }


def summarise_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation (over seeds) of accuracy and macro-F1 per prompt set, in run order."""
    names = list(dict.fromkeys(run["set"] for run in runs))
    summary = []
    for name in names:
        group = [run for run in runs if run["set"] == name]
        entry = {"set": name, "kind": group[0]["kind"], "size": group[0]["size"], "runs": len(group)}
        for key in ("accuracy", "macro_f1"):
            values = np.array([run[key] for run in group])
            entry |= {key: float(values.mean()), f"{key}_std": float(values.std())}
        summary.append(entry)
    return summary


def build_report(metrics: dict[str, Any]) -> Report:
    """The ablation report: the table of prompt sets and the size-vs-score curve."""
    report = Report("Prompt-set ablation of the intent classifier")
    report.text(
        f"The text head is trained on each prompt set and tested on {metrics['real_about']} ("
        f"{metrics['encoder']} embeddings, {metrics['repeats']} seeds per set: subsets are "
        f"redrawn and the head re-initialised for each). Random corpus subsets and the diversity-pruned subset "
        f"(greedy farthest-point selection, max-min cosine distance, within each task) keep the task proportions "
        f"of the corpus '{metrics['corpus']}'. Only the intent classifier is ablated here: retraining the image "
        "model on each prompt set needs a GPU and is out of scope for this report."
    )
    rows = [
        {
            "prompt set": entry["set"],
            "requests": entry["size"],
            "seeds": entry["runs"],
            "accuracy": f"{entry['accuracy']:.3f} ± {entry['accuracy_std']:.3f}",
            "macro-F1": f"{entry['macro_f1']:.3f} ± {entry['macro_f1_std']:.3f}",
        }
        for entry in metrics["sets"]
    ]
    report.table(rows, caption="held-out accuracy and macro-F1 on the test requests (mean ± std over seeds)")
    report.figure(curve_figure(metrics["sets"]), "ablation", "held-out scores against training-set size")
    return report


def curve_figure(sets: list[dict[str, Any]]):
    """Accuracy and macro-F1 (mean ± std) against training-set size on a log axis, each point labelled."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    random_sizes = [entry for entry in sets if entry["kind"] in ("random", "full")]
    for axis, (key, title) in zip(axes, (("accuracy", "accuracy"), ("macro_f1", "macro-F1")), strict=True):
        axis.plot(
            [entry["size"] for entry in random_sizes],
            [entry[key] for entry in random_sizes],
            color="tab:blue",
            alpha=0.5,
            label="random corpus subsets",
        )
        for entry in sets:
            colour = _COLOURS.get(entry["kind"], "tab:blue")
            axis.errorbar(entry["size"], entry[key], yerr=entry[f"{key}_std"], fmt="o", color=colour, capsize=3)
            below = entry["kind"] in ("random", "full")
            offset = (5, -12) if below else (5, 6)
            axis.annotate(
                entry["set"], (entry["size"], entry[key]), textcoords="offset points", xytext=offset, fontsize=8
            )
        axis.set_xscale("log")
        axis.margins(x=0.12)
        axis.set_xlabel("training requests (log scale)")
        axis.set_title(f"held-out {title} on the test requests")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("score (mean ± std over seeds)")
    handles = [
        plt.Line2D([], [], marker="o", linestyle="", color=colour, label=label)
        for label, colour in (
            ("templates", _COLOURS["templates"]),
            ("registry seeds", _COLOURS["seeds"]),
            ("random corpus subset / full corpus", _COLOURS["random"]),
            ("diversity-pruned subset", _COLOURS["diverse"]),
            ("seeds + templates", _COLOURS["seeds+templates"]),
            ("corpus + seeds + templates", _COLOURS["corpus+seeds+templates"]),
        )
    ]
    fig.tight_layout()
    fig.legend(handles=handles, loc="upper center", ncols=3, fontsize=8, bbox_to_anchor=(0.5, 0.0))
    return fig


def _short(size: int) -> str:
    return f"{size // 1000}k" if size >= 1000 and size % 1000 == 0 else str(size)
