"""Cluster and diversity analysis: metrics on embeddings of known structure, and the CLI on real requests."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli

from instructir.analysis.clusters import cluster_metrics, kmeans_agreement, nearest_neighbours
from instructir.analysis.diversity import distinct_n, domain_auc, mauve_score, vendi_score, vocabulary_size
from instructir.analysis.labelled import load_labelled
from instructir.analysis.plots import interactive_scatter


def gaussian_clusters(rng: np.random.Generator, per_class: int = 60, classes: int = 4, spread: float = 0.05):
    """Unit vectors scattered tightly around orthogonal centres, labelled by centre (task ids 0..classes-1)."""
    centres = np.eye(32)[:classes]
    labels = np.repeat(np.arange(classes), per_class)
    vectors = centres[labels] + rng.normal(0.0, spread, (len(labels), 32))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True), labels


def test_separated_clusters_score_perfectly():
    vectors, labels = gaussian_clusters(np.random.default_rng(0))
    metrics = cluster_metrics(vectors, labels, seed=0)
    assert metrics["kmeans"]["nmi"] == pytest.approx(1.0)
    assert metrics["kmeans"]["ari"] == pytest.approx(1.0)
    assert metrics["knn"]["accuracy"] == 1.0
    assert metrics["probe"]["accuracy"] == 1.0
    assert metrics["silhouette"]["overall"] > 0.8
    assert min(metrics["silhouette"]["per_task"].values()) > 0.8


def test_shuffled_labels_agree_with_nothing():
    vectors, labels = gaussian_clusters(np.random.default_rng(1))
    shuffled = np.random.default_rng(2).permutation(labels)
    assert abs(kmeans_agreement(vectors, shuffled, seed=0)["ari"]) < 0.05


def test_nearest_neighbours_skip_the_row_itself_even_for_duplicates():
    vectors = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    found, cosines = nearest_neighbours(vectors, vectors, 1, skip_self=True)
    assert found[:, 0].tolist()[:2] == [1, 0]
    assert cosines[:2, 0] == pytest.approx([1.0, 1.0])


def test_same_distribution_is_indistinguishable():
    rng = np.random.default_rng(3)
    first, _ = gaussian_clusters(rng, per_class=150)
    second, _ = gaussian_clusters(rng, per_class=150)
    assert mauve_score(first, first, seed=0)["mauve"] == pytest.approx(1.0)
    assert mauve_score(first, second, seed=0)["mauve"] > 0.9
    assert domain_auc(first, second, seed=0) == pytest.approx(0.5, abs=0.1)


def test_disjoint_sets_are_told_apart():
    rng = np.random.default_rng(4)
    first, _ = gaussian_clusters(rng, per_class=100, classes=2)
    second = np.roll(gaussian_clusters(rng, per_class=100, classes=2)[0], 8, axis=1)
    assert mauve_score(first, second, seed=0)["mauve"] < 0.1
    assert domain_auc(first, second, seed=0) > 0.99


def test_vendi_counts_distinct_directions():
    assert vendi_score(np.tile([[0.6, 0.8, 0.0]], (50, 1))) == pytest.approx(1.0)
    assert vendi_score(np.eye(12)) == pytest.approx(12.0)


def test_distinct_n_by_hand():
    texts = ["The cat sat.", "the cat ran"]
    # unigrams: the cat sat the cat ran -> 4 unique of 6; bigrams: 3 unique of 4; trigrams: 2 of 2.
    assert distinct_n(texts, 1) == pytest.approx(4 / 6)
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)
    assert distinct_n(texts, 3) == pytest.approx(1.0)
    assert distinct_n(["one"], 2) == 0.0
    assert vocabulary_size(texts) == 4


def test_interactive_scatter_is_self_contained_and_escapes_text():
    snippet = interactive_scatter(np.array([[0.0, 1.0], [2.0, 3.0]]), np.array([0, 5]), ["a </script> b", "c"], "t")
    assert "<canvas" in snippet and "http" not in snippet
    assert "</script> b" not in snippet and "superres" in snippet


@pytest.fixture(scope="module")
def small_corpora(tmp_path_factory):
    """40 shipped requests per task in two JSONL halves (20 per task each), and a shared embedding cache."""
    folder = tmp_path_factory.mktemp("corpus")
    data = load_labelled("instructir-requests")
    rng = np.random.default_rng(0)
    rows = np.concatenate([rng.choice(np.flatnonzero(data.labels == t), 40, replace=False) for t in data.task_ids()])
    rng.shuffle(rows)
    paths = []
    for half, part in enumerate((rows[::2], rows[1::2])):
        path = folder / f"half{half}.jsonl"
        lines = [json.dumps({"text": data.texts[r], "task": int(data.labels[r])}) for r in part]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(path)
    whole = folder / "small.jsonl"
    whole.write_text(paths[0].read_text() + paths[1].read_text(), encoding="utf-8")
    return {"whole": whole, "halves": paths, "cache": str(folder / "cache")}


@pytest.mark.slow
def test_clusters_cli_on_real_requests(small_corpora, tmp_path):
    out = tmp_path / "clusters"
    result = run_cli(
        "analyze", "clusters", str(small_corpora["whole"]), "--out", str(out), INSTRUCTIR_CACHE=small_corpora["cache"]
    )
    assert result.returncode == 0, result.stderr
    assert "report:" in result.stdout
    for name in ("report.html", "report.md", "metrics.json", "scatter.html", "figures/umap_scatter.png"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["rows"] == 320 and len(metrics["tasks"]) == 8
    assert metrics["knn"]["accuracy"] > 0.5
    assert metrics["probe"]["accuracy"] > 0.5
    assert 0.0 < metrics["kmeans"]["nmi"] <= 1.0
    assert 0.0 <= metrics["hdbscan"]["noise_fraction"] <= 1.0
    assert "<canvas" in (out / "report.html").read_text()


@pytest.mark.slow
def test_diversity_cli_compares_two_sets(small_corpora, tmp_path):
    out = tmp_path / "diversity"
    first, second = (str(path) for path in small_corpora["halves"])
    result = run_cli(
        "analyze", "diversity", first, second, "--out", str(out), "--names", "a,b",
        INSTRUCTIR_CACHE=small_corpora["cache"],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["overall"]) == {"a", "b"}
    for name in ("a", "b"):
        assert 0.0 < metrics["overall"][name]["distinct_2"] <= 1.0
        assert metrics["overall"][name]["vendi"] > 1.0
    assert 0.3 < metrics["pair"]["domain_auc"] < 0.75
    assert 0.0 < metrics["pair"]["mauve"] <= 1.0
    assert (out / "figures" / "length_histogram.png").is_file()


def test_cli_rejects_bad_input(tmp_path):
    missing = run_cli("analyze", "clusters", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "out"))
    assert missing.returncode != 0
    assert "nope.jsonl" in missing.stderr
    unlabelled = tmp_path / "unlabelled.jsonl"
    unlabelled.write_text('{"text": "fix the blur", "task": "deblur"}\n{"text": "remove the noise"}\n')
    result = run_cli("analyze", "diversity", str(unlabelled), "--out", str(tmp_path / "out"))
    assert result.returncode != 0
    assert "row 2" in result.stderr and "task" in result.stderr
