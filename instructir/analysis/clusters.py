"""How well request embeddings separate by task: cluster quality, clustering agreement and probe accuracy.

Every metric takes unit-length embeddings and registry task ids as arrays, so it runs without the encoder.
Silhouette is cosine in the original embedding space; k-NN accuracy and the logistic-regression probe are
out-of-fold (stratified, seeded). UMAP maps (5-d for HDBSCAN, 2-d for the scatter) are for exploration only and
are fitted on a seeded subsample when the set is large. ``write_cluster_report`` turns it all into a Report.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from instructir.analysis.labelled import LabelledTexts, embed_texts, task_names_for
from instructir.analysis.report import Report
from instructir.prompts.embed import DEFAULT_ENCODER


@dataclass(frozen=True)
class ClusterSettings:
    """Sizes that keep the analysis fast on large sets; every subsample is drawn from the run seed."""

    folds: int = 5
    knn_k: int = 10
    silhouette_sample: int = 10_000
    knn_queries: int = 20_000
    map_points: int = 20_000
    hover_points: int = 5_000
    map_neighbours: int = 15
    map_epochs: int = 200
    probe_c: float = 10.0
    suspect_threshold: float = 0.1


@dataclass
class ClusterAnalysis:
    """Metrics plus the arrays the report draws from (probe probabilities, UMAP maps)."""

    metrics: dict[str, Any]
    classes: np.ndarray
    probe_proba: np.ndarray
    confusion: np.ndarray
    centroid_cosine: np.ndarray
    map_rows: np.ndarray
    map_2d: np.ndarray
    hdbscan_labels: np.ndarray


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)


def seeded_sample(n: int, size: int, seed: int) -> np.ndarray:
    """Sorted row indices of a seeded sample of ``size`` rows out of ``n`` (all rows when ``size >= n``)."""
    if size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def nearest_neighbours(
    queries: np.ndarray, base: np.ndarray, k: int, skip_self: bool = False, block: int = 2048
) -> tuple[np.ndarray, np.ndarray]:
    """Indices and cosines of the ``k`` most similar ``base`` rows per query (exact, chunked matrix products).

    With ``skip_self`` the queries are the base rows themselves and a row is never its own neighbour.
    """
    import torch

    left = torch.from_numpy(normalise(queries))
    right = torch.from_numpy(normalise(base))
    k = min(k, len(base) - int(skip_self))
    indices = np.zeros((len(left), k), dtype=np.int64)
    cosines = np.zeros((len(left), k), dtype=np.float32)
    for start in range(0, len(left), block):
        scores = left[start : start + block] @ right.T
        if skip_self:
            rows = torch.arange(len(scores))
            scores[rows, rows + start] = -np.inf
        values, found = torch.topk(scores, k, dim=1)
        indices[start : start + block] = found.numpy()
        cosines[start : start + block] = values.numpy()
    return indices, cosines


def silhouette_scores(embeddings: np.ndarray, labels: np.ndarray, sample: int, seed: int) -> dict[str, Any]:
    """Cosine silhouette on a seeded sample of rows: overall mean and mean per task id."""
    from sklearn.metrics import silhouette_samples

    rows = seeded_sample(len(labels), sample, seed)
    values = silhouette_samples(normalise(embeddings[rows]), labels[rows], metric="cosine")
    per_task = {int(task): float(values[labels[rows] == task].mean()) for task in np.unique(labels[rows])}
    return {"overall": float(values.mean()), "per_task": per_task, "sample_size": len(rows)}


def kmeans_agreement(embeddings: np.ndarray, labels: np.ndarray, seed: int) -> dict[str, Any]:
    """KMeans with k = number of tasks on the unit vectors, scored against the task labels."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import (
        adjusted_mutual_info_score,
        adjusted_rand_score,
        normalized_mutual_info_score,
        v_measure_score,
    )

    k = len(np.unique(labels))
    clusters = KMeans(n_clusters=k, n_init=3, random_state=seed).fit_predict(normalise(embeddings))
    return {
        "k": k,
        "nmi": float(normalized_mutual_info_score(labels, clusters)),
        "ami": float(adjusted_mutual_info_score(labels, clusters)),
        "ari": float(adjusted_rand_score(labels, clusters)),
        "v_measure": float(v_measure_score(labels, clusters)),
    }


def fold_count(labels: np.ndarray, folds: int) -> int:
    """The number of stratified folds the smallest task allows (at most ``folds``); ValueError below 2."""
    tasks, counts = np.unique(labels, return_counts=True)
    if len(tasks) < 2:
        raise ValueError("cluster metrics need requests of at least 2 tasks")
    if counts.min() < 2:
        raise ValueError(f"every task needs at least 2 requests; task id {tasks[counts.argmin()]} has 1")
    return int(min(folds, counts.min()))


def knn_accuracy(
    embeddings: np.ndarray, labels: np.ndarray, seed: int, k: int = 10, folds: int = 5, max_queries: int = 20_000
) -> dict[str, Any]:
    """Out-of-fold k-NN accuracy (cosine, similarity-weighted vote) over a seeded sample of query rows.

    Each query is matched against every row outside its fold, so only the number of queries is capped.
    """
    from sklearn.model_selection import StratifiedKFold

    vectors = normalise(embeddings)
    classes, targets = np.unique(labels, return_inverse=True)
    chosen = np.zeros(len(labels), dtype=bool)
    chosen[seeded_sample(len(labels), max_queries, seed)] = True
    correct = 0
    splitter = StratifiedKFold(fold_count(labels, folds), shuffle=True, random_state=seed)
    for train, test in splitter.split(vectors, targets):
        test = test[chosen[test]]
        found, cosines = nearest_neighbours(vectors[test], vectors[train], k)
        votes = np.zeros((len(test), len(classes)))
        np.add.at(votes, (np.arange(len(test))[:, None], targets[train][found]), cosines)
        correct += int((votes.argmax(1) == targets[test]).sum())
    return {"accuracy": correct / int(chosen.sum()), "k": k, "queries": int(chosen.sum())}


def probe_probabilities(
    embeddings: np.ndarray, labels: np.ndarray, seed: int, folds: int = 5, c: float = 10.0
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold class probabilities of a logistic-regression probe, and the class (task id) of each column.

    BLAS runs on one thread: lbfgs's small products are faster so, and many times faster on a busy machine.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from threadpoolctl import threadpool_limits

    splitter = StratifiedKFold(fold_count(labels, folds), shuffle=True, random_state=seed)
    probe = LogisticRegression(C=c, max_iter=1000)
    with threadpool_limits(limits=1, user_api="blas"):
        proba = cross_val_predict(probe, normalise(embeddings), labels, cv=splitter, method="predict_proba")
    return proba, np.unique(labels)


def confusion_from(proba: np.ndarray, labels: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Counts of (given task, predicted task), rows and columns in ``classes`` order."""
    given = np.searchsorted(classes, labels)
    matrix = np.zeros((len(classes), len(classes)), dtype=int)
    np.add.at(matrix, (given, proba.argmax(1)), 1)
    return matrix


def centroid_cosines(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cosine similarity between the mean unit vectors of each task (tasks in ascending id order)."""
    vectors = normalise(embeddings)
    centroids = np.stack([vectors[labels == task].mean(0) for task in np.unique(labels)])
    centroids = normalise(centroids)
    return centroids @ centroids.T


def confusable_pairs(confusion: np.ndarray, classes: np.ndarray, top: int = 5) -> list[dict[str, Any]]:
    """Task pairs ranked by the share of their requests the probe gave to the other task of the pair."""
    totals = confusion.sum(1)
    pairs = []
    for a in range(len(classes)):
        for b in range(a + 1, len(classes)):
            swapped = int(confusion[a, b] + confusion[b, a])
            if swapped:
                rate = swapped / max(int(totals[a] + totals[b]), 1)
                pairs.append({"a": int(classes[a]), "b": int(classes[b]), "swapped": swapped, "rate": rate})
    return sorted(pairs, key=lambda pair: -pair["rate"])[:top]


def pair_examples(
    proba: np.ndarray, labels: np.ndarray, classes: np.ndarray, a: int, b: int, per_side: int = 2
) -> list[int]:
    """Rows of task ``a`` the probe gave to ``b`` and vice versa, most confident mistakes first."""
    rows = []
    for given, other in ((a, b), (b, a)):
        column = int(np.searchsorted(classes, other))
        wrong = np.flatnonzero((labels == given) & (classes[proba.argmax(1)] == other))
        rows += wrong[np.argsort(-proba[wrong, column], kind="stable")][:per_side].tolist()
    return rows


def likely_mislabelled(proba: np.ndarray, labels: np.ndarray, classes: np.ndarray, top: int = 20) -> np.ndarray:
    """Rows whose given task gets the lowest out-of-fold probe probability, lowest first."""
    given = proba[np.arange(len(labels)), np.searchsorted(classes, labels)]
    return np.argsort(given, kind="stable")[:top]


def umap_maps(
    embeddings: np.ndarray, seed: int, neighbours: int = 15, epochs: int = 200
) -> tuple[np.ndarray, np.ndarray]:
    """A 5-d UMAP (for density clustering) and a 2-d UMAP (for plotting), sharing one exact cosine k-NN graph."""
    import warnings

    import umap

    found, cosines = nearest_neighbours(embeddings, embeddings, neighbours)
    graph = (found, np.clip(1.0 - cosines, 0.0, 2.0).astype(np.float32))
    maps = []
    for components, min_dist in ((5, 0.0), (2, 0.1)):
        reducer = umap.UMAP(
            n_neighbors=found.shape[1],
            n_components=components,
            min_dist=min_dist,
            metric="cosine",
            n_epochs=epochs,
            precomputed_knn=graph,
            random_state=seed,
            n_jobs=1,
            low_memory=True,
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*knn_search_index.*", category=UserWarning)
            maps.append(reducer.fit_transform(normalise(embeddings)).astype(np.float32))
    return maps[0], maps[1]


def hdbscan_summary(points: np.ndarray, labels: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    """HDBSCAN on low-dimensional points: cluster count, noise share, agreement with tasks on clustered rows."""
    from sklearn.cluster import HDBSCAN
    from sklearn.metrics import normalized_mutual_info_score

    size = max(10, len(points) // 100)
    clusters = HDBSCAN(min_cluster_size=size, min_samples=10, copy=True).fit_predict(points)
    kept = clusters >= 0
    nmi = float(normalized_mutual_info_score(labels[kept], clusters[kept])) if kept.any() else 0.0
    summary = {
        "clusters": int(clusters.max() + 1),
        "noise_fraction": float(1.0 - kept.mean()),
        "min_cluster_size": size,
        "nmi_clustered": nmi,
    }
    return summary, clusters


def cluster_metrics(
    embeddings: np.ndarray, labels: np.ndarray, seed: int, settings: ClusterSettings | None = None
) -> dict[str, Any]:
    """Silhouette, KMeans agreement, k-NN and probe accuracy as a dict (no UMAP), for tests and quick checks."""
    settings = settings or ClusterSettings()
    labels = np.asarray(labels)
    proba, classes = probe_probabilities(embeddings, labels, seed, settings.folds, settings.probe_c)
    return {
        "silhouette": silhouette_scores(embeddings, labels, settings.silhouette_sample, seed),
        "kmeans": kmeans_agreement(embeddings, labels, seed),
        "knn": knn_accuracy(embeddings, labels, seed, settings.knn_k, settings.folds, settings.knn_queries),
        "probe": {"accuracy": float((classes[proba.argmax(1)] == labels).mean())},
    }


def analyse_clusters(
    embeddings: np.ndarray,
    labels: np.ndarray,
    seed: int,
    settings: ClusterSettings | None = None,
    progress: bool = False,
) -> ClusterAnalysis:
    """Every cluster metric plus the UMAP maps and HDBSCAN clusters, timing each step (a progress bar on stderr)."""
    from tqdm.auto import tqdm

    settings = settings or ClusterSettings()
    labels = np.asarray(labels)
    folds = fold_count(labels, settings.folds)
    timings: dict[str, float] = {}
    bar = tqdm(total=7, desc="clusters", file=sys.stderr, disable=not progress, unit="step")

    def step(name: str, work: Callable[[], Any]) -> Any:
        bar.set_postfix_str(name)
        start = time.perf_counter()
        result = work()
        timings[name] = round(time.perf_counter() - start, 3)
        bar.update()
        return result

    silhouette = step("silhouette", lambda: silhouette_scores(embeddings, labels, settings.silhouette_sample, seed))
    kmeans = step("kmeans", lambda: kmeans_agreement(embeddings, labels, seed))
    knn = step(
        "knn", lambda: knn_accuracy(embeddings, labels, seed, settings.knn_k, settings.folds, settings.knn_queries)
    )
    proba, classes = step(
        "probe", lambda: probe_probabilities(embeddings, labels, seed, settings.folds, settings.probe_c)
    )
    centroids = step("centroids", lambda: centroid_cosines(embeddings, labels))
    map_rows = seeded_sample(len(labels), settings.map_points, seed)
    map_5d, map_2d = step(
        "umap", lambda: umap_maps(embeddings[map_rows], seed, settings.map_neighbours, settings.map_epochs)
    )
    density, clusters = step("hdbscan", lambda: hdbscan_summary(map_5d, labels[map_rows]))
    bar.close()

    confusion = confusion_from(proba, labels, classes)
    given = proba[np.arange(len(labels)), np.searchsorted(classes, labels)]
    recall = np.diag(confusion) / confusion.sum(1).clip(min=1)
    metrics = {
        "rows": len(labels),
        "tasks": task_names_for(classes),
        "seed": seed,
        "silhouette": {**silhouette, "per_task": _by_name(silhouette["per_task"])},
        "kmeans": kmeans,
        "knn": {**knn, "folds": folds},
        "probe": {
            "accuracy": float(np.trace(confusion) / confusion.sum()),
            "folds": folds,
            "recall_per_task": dict(zip(task_names_for(classes), recall.round(4).tolist(), strict=True)),
        },
        "hdbscan": {**density, "points": len(map_rows), "space": "5-d UMAP"},
        "umap": {"points": len(map_rows), "neighbours": settings.map_neighbours, "epochs": settings.map_epochs},
        "confusable_pairs": [
            {**pair, "a": task_names_for([pair["a"]])[0], "b": task_names_for([pair["b"]])[0]}
            for pair in confusable_pairs(confusion, classes)
        ],
        "suspect_labels": {
            "threshold": settings.suspect_threshold,
            "count": int((given < settings.suspect_threshold).sum()),
        },
        "centroid_cosine": centroids.round(4).tolist(),
        "probe_confusion": confusion.tolist(),
        "seconds": timings,
    }
    return ClusterAnalysis(metrics, classes, proba, confusion, centroids, map_rows, map_2d, clusters)


def write_cluster_report(
    data: LabelledTexts,
    embeddings: np.ndarray,
    out_dir: str | Path,
    seed: int = 0,
    settings: ClusterSettings | None = None,
    progress: bool = False,
    extra: dict[str, Any] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Analyse ``embeddings`` of ``data`` and write report.html/.md, metrics.json, figures/ and scatter.html."""
    from instructir.analysis import plots

    settings = settings or ClusterSettings()
    analysis = analyse_clusters(embeddings, data.labels, seed, settings, progress)
    metrics = {"corpus": data.name, **(extra or {}), **analysis.metrics}
    report = _build_report(data, analysis, metrics, settings, seed)
    hover = seeded_sample(len(analysis.map_rows), settings.hover_points, seed)
    rows = analysis.map_rows[hover]
    snippet = plots.interactive_scatter(
        analysis.map_2d[hover], data.labels[rows], [data.texts[row] for row in rows], "UMAP of requests by task"
    )
    report.heading("Interactive map")
    report.text(f"{len(rows):,} requests of the 2-D UMAP (seeded subsample); hover a point to read the request.")
    report.raw_html(snippet, "The interactive version of the map (hover shows the request) is in scatter.html.")
    path = report.write(out_dir, metrics)
    (Path(out_dir) / "scatter.html").write_text(plots.standalone_page(snippet, report.title), encoding="utf-8")
    return path, metrics


def cluster_report(
    data: LabelledTexts,
    out_dir: str | Path,
    model: str = DEFAULT_ENCODER,
    seed: int = 0,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> tuple[Path, dict[str, Any]]:
    """Embed ``data`` (disk-cached) and write its cluster report into ``out_dir``."""
    embeddings = embed_texts(data.texts, model, cache_dir, progress)
    return write_cluster_report(data, embeddings, out_dir, seed, progress=progress, extra={"model": model})


def _by_name(per_task: dict[int, float]) -> dict[str, float]:
    return {task_names_for([task])[0]: value for task, value in per_task.items()}


def _build_report(
    data: LabelledTexts, analysis: ClusterAnalysis, metrics: dict[str, Any], settings: ClusterSettings, seed: int
) -> Report:
    from instructir.analysis import plots

    names = task_names_for(analysis.classes)
    report = Report(f"Embedding clusters: {data.name or 'requests'}")
    silhouette, kmeans, knn, probe = (metrics[key] for key in ("silhouette", "kmeans", "knn", "probe"))
    report.text(
        f"{len(data):,} requests over {len(names)} tasks, seed {seed}. Silhouette is cosine in the original "
        f"embedding space on a seeded sample of {silhouette['sample_size']:,} rows; k-NN (k={knn['k']}) and the "
        f"logistic-regression probe are {knn['folds']}-fold stratified out-of-fold estimates; k-NN is scored on "
        f"{knn['queries']:,} query rows, each matched against every row outside its fold."
    )
    report.heading("Summary")
    report.table(
        [
            {"metric": "silhouette (cosine)", "value": silhouette["overall"]},
            {"metric": "KMeans NMI", "value": kmeans["nmi"]},
            {"metric": "KMeans AMI", "value": kmeans["ami"]},
            {"metric": "KMeans ARI", "value": kmeans["ari"]},
            {"metric": "KMeans V-measure", "value": kmeans["v_measure"]},
            {"metric": f"{knn['k']}-NN accuracy", "value": knn["accuracy"]},
            {"metric": "linear probe accuracy", "value": probe["accuracy"]},
        ],
        f"KMeans with k = {kmeans['k']} (the number of tasks) against the task labels.",
    )
    counts = np.bincount(np.searchsorted(analysis.classes, data.labels), minlength=len(names))
    report.table(
        [
            {
                "task": name,
                "requests": int(count),
                "silhouette": silhouette["per_task"].get(name),
                "probe recall": probe["recall_per_task"][name],
            }
            for name, count in zip(names, counts, strict=True)
        ],
        "Per task.",
    )
    report.heading("Task map")
    report.figure(
        plots.task_scatter(analysis.map_2d, data.labels[analysis.map_rows], "2-D UMAP of request embeddings"),
        "umap_scatter",
        f"2-D UMAP (cosine, {settings.map_neighbours} neighbours) of {len(analysis.map_rows):,} requests, "
        "coloured by task.",
    )
    density = metrics["hdbscan"]
    report.text(
        f"HDBSCAN (min cluster size {density['min_cluster_size']}) on a 5-D UMAP of the same "
        f"{density['points']:,} rows finds {density['clusters']} clusters and leaves "
        f"{density['noise_fraction']:.1%} of rows as noise; NMI with the tasks on the clustered rows: "
        f"{density['nmi_clustered']:.3f}. UMAP and HDBSCAN are for exploration, not for the scores above."
    )
    report.table(_density_rows(analysis, data.labels), "The largest HDBSCAN clusters and their main task.")
    report.heading("Task similarity")
    report.figure(
        plots.similarity_heatmap(analysis.centroid_cosine, names, "Cosine similarity of task centroids"),
        "centroid_cosine",
        "Cosine similarity between the mean embeddings of each task.",
    )
    report.figure(
        plots.confusion_heatmap(analysis.confusion, names, "Out-of-fold linear probe confusion"),
        "probe_confusion",
        "Rows: given task; columns: the probe's out-of-fold prediction (share of the row).",
    )
    report.heading("Most confusable task pairs")
    pairs = metrics["confusable_pairs"]
    report.table(
        [{"pair": f"{p['a']} / {p['b']}", "swapped": p["swapped"], "rate": p["rate"]} for p in pairs],
        "Share of the two tasks' requests that the probe gave to the other task of the pair.",
    )
    examples = []
    for pair in confusable_pairs(analysis.confusion, analysis.classes):
        for row in pair_examples(analysis.probe_proba, data.labels, analysis.classes, pair["a"], pair["b"]):
            examples.append(_row_view(row, data, analysis))
    report.table(examples, "Example requests from each pair that the probe gave to the other task.")
    report.heading("Likely mislabelled requests")
    report.text(
        f"{metrics['suspect_labels']['count']:,} requests get an out-of-fold probe probability below "
        f"{settings.suspect_threshold} for their given task; the 20 lowest are listed."
    )
    rows = likely_mislabelled(analysis.probe_proba, data.labels, analysis.classes)
    report.table([_row_view(row, data, analysis) for row in rows], "Lowest probability of the given task.")
    return report


def _row_view(row: int, data: LabelledTexts, analysis: ClusterAnalysis) -> dict[str, Any]:
    proba = analysis.probe_proba[row]
    given = int(np.searchsorted(analysis.classes, data.labels[row]))
    return {
        "text": data.texts[row],
        "given task": task_names_for([data.labels[row]])[0],
        "predicted task": task_names_for([analysis.classes[proba.argmax()]])[0],
        "p(given)": float(proba[given]),
        "p(predicted)": float(proba.max()),
    }


def _density_rows(analysis: ClusterAnalysis, labels: np.ndarray, top: int = 12) -> list[dict[str, Any]]:
    clusters = analysis.hdbscan_labels
    tasks = labels[analysis.map_rows]
    ids, sizes = np.unique(clusters[clusters >= 0], return_counts=True)
    rows = []
    for cluster, size in sorted(zip(ids, sizes, strict=True), key=lambda item: -item[1])[:top]:
        members, counts = np.unique(tasks[clusters == cluster], return_counts=True)
        rows.append(
            {
                "cluster": int(cluster),
                "size": int(size),
                "main task": task_names_for([members[counts.argmax()]])[0],
                "purity": float(counts.max() / size),
            }
        )
    return rows
