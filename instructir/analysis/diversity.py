"""How varied a request set is, alone or against a second set: lexical, length and embedding diversity.

Lexical: distinct-n (unique n-grams / all n-grams), vocabulary size, length in words. Embedding: the Vendi score
and the mean nearest-neighbour cosine. Two sets: a domain classifier's out-of-fold AUC (0.5 = the sets look
alike) and MAUVE on quantised embeddings (1 = same distribution). Metric functions take texts or embedding
arrays; ``diversity_report`` embeds (disk-cached) and writes a Report.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from instructir.analysis.clusters import nearest_neighbours, normalise, seeded_sample
from instructir.analysis.labelled import LabelledTexts, embed_texts, task_names_for
from instructir.analysis.report import Report
from instructir.prompts.embed import DEFAULT_ENCODER

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def words(text: str) -> list[str]:
    """Lower-cased word tokens (letters and digits, with an inner apostrophe kept: "don't")."""
    return _WORD.findall(text.lower())


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Unique word n-grams over all word n-grams in ``texts`` (n-grams do not cross texts); 0 when there are none."""
    grams = [tuple(tokens[i : i + n]) for tokens in map(words, texts) for i in range(len(tokens) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def vocabulary_size(texts: Sequence[str]) -> int:
    """The number of distinct word tokens."""
    return len({token for text in texts for token in words(text)})


def word_lengths(texts: Sequence[str]) -> np.ndarray:
    """Length of each text in words."""
    return np.array([len(words(text)) for text in texts], dtype=int)


def length_summary(lengths: np.ndarray) -> dict[str, float]:
    """Mean, median, 10th and 90th percentile of lengths."""
    return {
        "mean": float(lengths.mean()),
        "median": float(np.median(lengths)),
        "p10": float(np.percentile(lengths, 10)),
        "p90": float(np.percentile(lengths, 90)),
    }


def vendi_score(embeddings: np.ndarray, sample: int = 2_000, seed: int = 0) -> float:
    """Vendi score (Friedman & Dieng, 2023) with the cosine kernel: exp of the entropy of the eigenvalues of K/n.

    Computed on a seeded sample of ``sample`` rows. For unit rows X, K/n = X X^T / n has the same non-zero
    eigenvalues as X^T X / n, which is only d x d. n identical rows score 1, n orthogonal rows score n.
    """
    if len(embeddings) == 0 or sample < 1:
        return float("nan")
    vectors = normalise(embeddings[seeded_sample(len(embeddings), sample, seed)]).astype(np.float64)
    eigenvalues = np.linalg.eigvalsh(vectors.T @ vectors / len(vectors)).clip(min=0.0)
    eigenvalues = eigenvalues[eigenvalues > 1e-12]
    eigenvalues = eigenvalues / eigenvalues.sum()
    return float(np.exp(-(eigenvalues * np.log(eigenvalues)).sum()))


def mean_nearest_similarity(embeddings: np.ndarray, sample: int = 20_000, seed: int = 0) -> float:
    """Mean cosine between each row and its nearest other row (on a seeded sample of rows); 1 = all duplicated."""
    vectors = embeddings[seeded_sample(len(embeddings), sample, seed)]
    if len(vectors) < 2:
        return float("nan")
    _, cosines = nearest_neighbours(vectors, vectors, 1, skip_self=True)
    return float(cosines[:, 0].mean())


def domain_auc(first: np.ndarray, second: np.ndarray, seed: int, folds: int = 5, per_set: int = 5_000) -> float:
    """Out-of-fold ROC AUC of a logistic regression telling the two sets apart (balanced seeded subsample).

    About 0.5 when the sets are alike, near 1 when a linear boundary separates them. BLAS runs on one thread
    (see ``probe_probabilities``).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from threadpoolctl import threadpool_limits

    size = min(len(first), len(second), per_set)
    if size < folds:
        raise ValueError(f"the domain classifier needs at least {folds} rows in each set")
    vectors = np.concatenate(
        [first[seeded_sample(len(first), size, seed)], second[seeded_sample(len(second), size, seed + 1)]]
    )
    targets = np.repeat([0, 1], size)
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    with threadpool_limits(limits=1, user_api="blas"):
        proba = cross_val_predict(
            LogisticRegression(C=1.0, max_iter=1000), normalise(vectors), targets, cv=splitter, method="predict_proba"
        )
    return float(roc_auc_score(targets, proba[:, 1]))


def quantised_histograms(
    first: np.ndarray, second: np.ndarray, buckets: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """KMeans on the union of both sets into ``buckets`` clusters; each set's share of rows per cluster."""
    from sklearn.cluster import KMeans

    union = normalise(np.concatenate([first, second]))
    clusters = KMeans(n_clusters=buckets, n_init=1, random_state=seed).fit_predict(union)
    p = np.bincount(clusters[: len(first)], minlength=buckets) / len(first)
    q = np.bincount(clusters[len(first) :], minlength=buckets) / len(second)
    return p, q


def kl_divergence(p: np.ndarray, r: np.ndarray) -> float:
    """KL(p || r) in nats for histograms, with 0 log 0 = 0 (r must be positive wherever p is)."""
    support = p > 0
    return float((p[support] * np.log(p[support] / r[support])).sum())


def divergence_curve(
    p: np.ndarray, q: np.ndarray, scale: float = 5.0, points: int = 101
) -> tuple[np.ndarray, np.ndarray]:
    """The MAUVE divergence curve: (exp(-s KL(Q||R_l)), exp(-s KL(P||R_l))) for R_l = l P + (1 - l) Q.

    l runs over (0, 1); the end points (0, 1) and (1, 0) close the curve. Returned sorted by x.
    """
    weights = np.linspace(1e-6, 1 - 1e-6, points)
    xs, ys = [0.0], [1.0]
    for weight in weights:
        mixture = weight * p + (1 - weight) * q
        xs.append(np.exp(-scale * kl_divergence(q, mixture)))
        ys.append(np.exp(-scale * kl_divergence(p, mixture)))
    xs.append(1.0)
    ys.append(0.0)
    order = np.lexsort((-np.array(ys), np.array(xs)))
    return np.array(xs)[order], np.array(ys)[order]


def area_under(xs: np.ndarray, ys: np.ndarray) -> float:
    """The trapezoid-rule area under a curve given by points sorted by x."""
    return float(((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2).sum())


def mauve_score(
    first: np.ndarray,
    second: np.ndarray,
    seed: int,
    buckets: int | None = None,
    scale: float = 5.0,
    per_set: int = 5_000,
) -> dict[str, Any]:
    """MAUVE (Pillutla et al., NeurIPS 2021, "MAUVE: Measuring the Gap Between Neural Text and Human Text using
    Divergence Frontiers") on embeddings: the area under the divergence curve of the quantised distributions.

    The paper's definition: with P and Q histograms over the same buckets and mixtures R_l = l P + (1 - l) Q,
    the divergence curve is C(P, Q) = {(exp(-s KL(Q || R_l)), exp(-s KL(P || R_l))) : l in (0, 1)} and
    MAUVE(P, Q) is the area under C. Both sets are subsampled (seeded, at most ``per_set`` rows each) and
    quantised together by KMeans into ``buckets`` clusters (default as in the paper: a tenth of the smaller set,
    here kept to 2..100). MAUVE is 1 for identical distributions and near 0 for disjoint ones.
    Returns the score, the curve, the bucket count and the scale s.
    """
    first = first[seeded_sample(len(first), per_set, seed)]
    second = second[seeded_sample(len(second), per_set, seed + 1)]
    buckets = buckets or int(np.clip(min(len(first), len(second)) // 10, 2, 100))
    p, q = quantised_histograms(first, second, buckets, seed)
    xs, ys = divergence_curve(p, q, scale)
    return {"mauve": area_under(xs, ys), "curve": (xs, ys), "buckets": buckets, "scale": scale}


def set_diversity(data: LabelledTexts, embeddings: np.ndarray, seed: int, vendi_sample: int = 2_000) -> dict[str, Any]:
    """The single-set metrics of one request set."""
    lengths = word_lengths(data.texts)
    return {
        "rows": len(data),
        "distinct_1": distinct_n(data.texts, 1),
        "distinct_2": distinct_n(data.texts, 2),
        "distinct_3": distinct_n(data.texts, 3),
        "vocabulary": vocabulary_size(data.texts),
        "length_words": length_summary(lengths),
        "vendi": vendi_score(embeddings, vendi_sample, seed),
        "vendi_sample": min(vendi_sample, len(data)),
        "mean_nn_cosine": mean_nearest_similarity(embeddings, seed=seed),
    }


def per_task_diversity(
    data: LabelledTexts, embeddings: np.ndarray, seed: int, vendi_sizes: dict[int, int] | None = None
) -> dict[str, dict[str, Any]]:
    """Size, distinct-2, mean length, Vendi (on ``vendi_sizes[task]`` rows, default 2,000) and mean
    nearest-neighbour cosine of each task's requests."""
    result = {}
    for task in data.task_ids():
        rows = np.flatnonzero(data.labels == task)
        texts = [data.texts[row] for row in rows]
        result[task_names_for([task])[0]] = {
            "rows": len(rows),
            "distinct_2": distinct_n(texts, 2),
            "mean_words": float(word_lengths(texts).mean()),
            "vendi": vendi_score(embeddings[rows], (vendi_sizes or {}).get(task, 2_000), seed),
            "mean_nn_cosine": mean_nearest_similarity(embeddings[rows], seed=seed),
        }
    return result


def pair_divergence(
    first: LabelledTexts, first_vectors: np.ndarray, second: LabelledTexts, second_vectors: np.ndarray, seed: int
) -> dict[str, Any]:
    """Domain-classifier AUC and MAUVE between two sets, overall and (AUC) per shared task with >= 10 rows each."""
    mauve = mauve_score(first_vectors, second_vectors, seed)
    per_task = {}
    for task in sorted(set(first.task_ids()) & set(second.task_ids())):
        a, b = first_vectors[first.labels == task], second_vectors[second.labels == task]
        if min(len(a), len(b)) >= 10:
            per_task[task_names_for([task])[0]] = domain_auc(a, b, seed, per_set=2_000)
    return {
        "domain_auc": domain_auc(first_vectors, second_vectors, seed),
        "mauve": mauve["mauve"],
        "mauve_buckets": mauve["buckets"],
        "mauve_scale": mauve["scale"],
        "domain_auc_per_task": per_task,
        "curve": mauve["curve"],
    }


def write_diversity_report(
    sets: list[LabelledTexts], vectors: list[np.ndarray], names: list[str], out_dir: str | Path, seed: int = 0
) -> tuple[Path, dict[str, Any]]:
    """Diversity of one or two sets side by side: report.html/.md, metrics.json and figures/ in ``out_dir``."""
    from instructir.analysis import plots

    vendi_sample = min(2_000, *(len(data) for data in sets))
    tasks = sorted({task for data in sets for task in data.task_ids()})
    counts = {task: [int((data.labels == task).sum()) for data in sets] for task in tasks}
    vendi_sizes = {task: min(2_000, *(count for count in found if count)) for task, found in counts.items()}
    overall = {
        name: set_diversity(data, v, seed, vendi_sample) for name, data, v in zip(names, sets, vectors, strict=True)
    }
    per_task = {
        name: per_task_diversity(data, v, seed, vendi_sizes) for name, data, v in zip(names, sets, vectors, strict=True)
    }
    metrics: dict[str, Any] = {"seed": seed, "corpora": names, "overall": overall, "per_task": per_task}
    report = Report("Request diversity: " + " vs ".join(names))
    report.text(
        "Words are lower-cased letter/digit tokens. distinct-n = unique n-grams / all n-grams. Vendi score: exp of "
        "the entropy of the eigenvalues of K/n with K the cosine similarity of sentence embeddings, on a seeded "
        f"sample of {vendi_sample:,} rows per corpus (an effective number of distinct requests; it grows with the "
        "sample, so every corpus uses the same sample size). "
        "Mean NN cosine: average similarity of each request to its closest other request (lower = more varied). "
        "distinct-n and vocabulary size depend on corpus size: compare sets of similar size."
    )
    report.heading("Overall")
    report.table(_overall_rows(overall), "One column per corpus.")
    report.figure(
        plots.length_histogram({name: word_lengths(data.texts) for name, data in zip(names, sets, strict=True)}),
        "length_histogram",
        "Distribution of request lengths in words.",
    )
    if len(sets) == 2:
        pair = pair_divergence(sets[0], vectors[0], sets[1], vectors[1], seed)
        curve = pair.pop("curve")
        metrics["pair"] = pair
        _report_pair(report, pair, curve, names)
    report.heading("Per task")
    report.table(_per_task_rows(per_task), "Per task and corpus.")
    report.figure(
        plots.per_task_bars(
            {name: {t: v["vendi"] for t, v in per_task[name].items()} for name in names}, "Vendi score"
        ),
        "vendi_per_task",
        "Vendi score of each task's requests, on a seeded sample of the same size in every corpus (at most 2,000).",
    )
    return report.write(out_dir, metrics), metrics


def diversity_report(
    sets: list[LabelledTexts],
    out_dir: str | Path,
    names: list[str] | None = None,
    model: str = DEFAULT_ENCODER,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Embed one or two sets (disk-cached) and write their diversity report into ``out_dir``."""
    names = names or [data.name or f"set {index + 1}" for index, data in enumerate(sets)]
    if len(names) != len(sets):
        raise ValueError(f"give one name per corpus ({len(sets)}), got {len(names)}: {','.join(names)}")
    if len(set(names)) != len(names):
        names = [f"{name} ({index + 1})" for index, name in enumerate(names)]
    vectors = [embed_texts(data.texts, model, cache_dir, progress) for data in sets]
    path, metrics = write_diversity_report(sets, vectors, names, out_dir, seed)
    return path, {"model": model, **metrics}


def _overall_rows(overall: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    labels = {
        "rows": "requests",
        "distinct_1": "distinct-1",
        "distinct_2": "distinct-2",
        "distinct_3": "distinct-3",
        "vocabulary": "vocabulary size",
        "vendi": "Vendi score",
        "mean_nn_cosine": "mean NN cosine",
    }
    rows = [
        {"metric": label, **{name: values[key] for name, values in overall.items()}} for key, label in labels.items()
    ]
    for key in ("mean", "median", "p10", "p90"):
        rows.append({"metric": f"length {key} (words)", **{n: v["length_words"][key] for n, v in overall.items()}})
    return rows


_PER_TASK_LABELS = {
    "rows": "requests",
    "distinct_2": "distinct-2",
    "mean_words": "mean words",
    "vendi": "Vendi score",
    "mean_nn_cosine": "mean NN cosine",
}


def _per_task_rows(per_task: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for name, tasks in per_task.items():
        for task, values in tasks.items():
            rows.append({"corpus": name, "task": task, **{_PER_TASK_LABELS[key]: v for key, v in values.items()}})
    return rows


def _report_pair(report: Report, pair: dict[str, Any], curve: tuple[np.ndarray, np.ndarray], names: list[str]) -> None:
    from instructir.analysis import plots

    report.heading(f"{names[0]} vs {names[1]}")
    report.text(
        f"Domain classifier (logistic regression on embeddings, balanced subsample, 5-fold out-of-fold): AUC "
        f"{pair['domain_auc']:.3f} (0.5 = indistinguishable, 1 = fully separable). MAUVE (embeddings quantised by "
        f"KMeans into {pair['mauve_buckets']} buckets, s = {pair['mauve_scale']:g}): {pair['mauve']:.3f} "
        "(1 = same distribution)."
    )
    report.figure(
        plots.divergence_curve(curve[0], curve[1], (names[0], names[1]), pair["mauve"]),
        "divergence_curve",
        "MAUVE divergence curve over the mixtures R = l P + (1 - l) Q.",
    )
    report.table(
        [{"task": task, "domain AUC": auc} for task, auc in pair["domain_auc_per_task"].items()],
        "Domain-classifier AUC per task (tasks with at least 10 requests in both sets).",
    )
