"""The learned quality stage: the shipped model loads and ranks rows sensibly, a fitted model survives a
save/load round trip bit for bit, the stage writes its column and drops what is below its threshold, and the
audit split and threshold choice behave as documented. Real encoder, real audit rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, load_script

from instructir.analysis.templates import seed_requests
from instructir.prompts.audit import audit_split, read_audit
from instructir.prompts.embed import Embedder
from instructir.prompts.filters.cascade import FilterConfig, default_stages, filter_candidates, seed_rows
from instructir.prompts.filters.quality_model import (
    FAST_FILE,
    NONE,
    LearnedQuality,
    choose_threshold,
    fit_quality_model,
    load_quality_model,
    shipped_model_path,
)
from instructir.prompts.lm_embed import LMEmbedder
from instructir.tasks import all_tasks, task_names

AUDIT = REPO / "corpus" / "audit" / "labels.jsonl"


@pytest.fixture(scope="module")
def embedder(tmp_path_factory) -> Embedder:
    return Embedder(cache_dir=tmp_path_factory.mktemp("embeddings"), dtype="float32")


@pytest.fixture(scope="module")
def lm_embedder(tmp_path_factory) -> LMEmbedder:
    return LMEmbedder(cache_dir=tmp_path_factory.mktemp("lm"))


PLAIN = ["please remove the rain streaks from this photo", "my picture is way too dark, brighten it"]
NONSENSE = ["I am a mountain but I am not.", "Thank you for your wonderful service."]


@pytest.mark.parametrize("name", ["fast", "full"])
def test_the_shipped_models_prefer_a_plain_request_under_its_own_label(name, embedder, lm_embedder):
    model = load_quality_model(shipped_model_path(FAST_FILE) if name == "fast" else None)
    assert model.classes == (*task_names(), NONE)
    assert model.encoder == "all-MiniLM-L6-v2" and (model.lm_encoder is None) == (name == "fast")

    def score(texts: list[str], labels: list[str]) -> np.ndarray:
        lm = lm_embedder.encode(texts) if model.lm_encoder else None
        return model.score(embedder.encode(texts), labels, texts, lm)

    assert (score(PLAIN, ["derain", "lowlight"]) > 0.5).all()
    assert (score(PLAIN, ["dehaze", "superres"]) < 0.1).all()
    assert (score(NONSENSE, ["dehaze", "derain"]) < 0.2).all()


def test_the_full_model_refuses_to_score_without_the_llm_vectors(embedder):
    with pytest.raises(ValueError, match="lm_vectors"):
        load_quality_model().score(embedder.encode(PLAIN), ["derain", "lowlight"], PLAIN)


def test_the_shipped_models_are_small_safetensors_without_pickle():
    from safetensors import safe_open

    for name in ("quality-v1.safetensors", FAST_FILE):
        path = shipped_model_path(name)
        assert path.stat().st_size < 200_000
        with safe_open(str(path), framework="numpy") as handle:
            assert {"weight", "bias", "signals_mean", "signals_scale"} <= set(handle.keys())


def test_a_fitted_model_survives_save_and_load_and_ranks_held_out_rows(embedder, tmp_path):
    rows = read_audit(AUDIT)[:700]
    fit, held = rows[:500], rows[500:]
    texts = [r["text"] for r in fit]
    classes = [r["true_task"] if r["request"] and r["true_task"] in task_names() else NONE for r in fit]
    seeds = seed_requests()
    written = (embedder.encode(seeds.texts), seeds.texts, [task_names()[int(i)] for i in seeds.labels])
    model, record = fit_quality_model(
        embedder.encode(texts),
        texts,
        classes,
        [r["task"] for r in fit],
        np.ones(len(fit), dtype=bool),
        written,
        "all-MiniLM-L6-v2",
        target_precision=0.8,
        cs=(4.0,),
    )
    assert record["cv_precision"] >= 0.8 and record["rows"] == 500
    loaded = load_quality_model(model.save(tmp_path / "q.safetensors"))
    held_texts = [r["text"] for r in held]
    vectors = embedder.encode(held_texts)
    labels = [r["task"] for r in held]
    assert np.array_equal(model.score(vectors, labels, held_texts), loaded.score(vectors, labels, held_texts))
    assert loaded.threshold == pytest.approx(model.threshold)
    scores = loaded.score(vectors, labels, held_texts)
    right = np.array([r["right"] for r in held])
    assert scores[right].mean() > scores[~right].mean() + 0.2


def test_the_stage_writes_a_quality_column_keeps_seeds_and_drops_below_its_threshold(embedder):
    model = load_quality_model(shipped_model_path(FAST_FILE))
    rows = [
        *seed_rows(all_tasks()[:1]),
        {"id": "a", "task": "deblur", "text": "please sharpen this blurry photo of my son"},
        {"id": "b", "task": "deblur", "text": "I am a mountain but I am not."},
    ]
    result = LearnedQuality(embedder, model).run([dict(r) for r in rows])
    assert [r["id"] for r in result.dropped] == ["b"] and result.dropped[0]["reason"] == "low_quality"
    assert all("quality" in r for r in result.kept + result.dropped)
    assert {r["id"] for r in result.kept} >= {r["id"] for r in rows if r.get("source") == "seed"} | {"a"}
    assert not LearnedQuality(embedder, model, threshold=0.0).run([dict(r) for r in rows]).dropped


def test_the_prefilter_spares_the_llm_the_obvious_failures(embedder, lm_embedder):
    fast, full = load_quality_model(shipped_model_path(FAST_FILE)), load_quality_model()
    rows = [
        {"id": "p0", "task": "derain", "text": PLAIN[0]},
        {"id": "p1", "task": "lowlight", "text": PLAIN[1]},
        {"id": "n0", "task": "dehaze", "text": "Good thanks."},
    ]
    before = lm_embedder.computed
    stage = LearnedQuality(embedder, full, lm_embedder=lm_embedder, prefilter=(fast, 0.5))
    result = stage.run([dict(r) for r in rows])
    assert [r["id"] for r in result.kept] == ["p0", "p1"]
    assert [(r["id"], r["reason"]) for r in result.dropped] == [("n0", "low_quality_prefilter")]
    assert lm_embedder.computed - before <= 2, "the prefilter's drops must not reach the LLM"


def test_the_default_cascade_scores_quality_before_semantic_dedup(embedder):
    stages = default_stages(FilterConfig(labels=False, topic=False, quality_lm=False), embedder)
    names = [stage.name for stage in stages]
    assert names.index("learned_quality") < names.index("semantic_duplicate")
    result = filter_candidates([{"id": "x", "task": "superres", "text": "Upscale this tiny photo please."}], stages)
    assert result.kept and result.kept[0]["quality"] > 0.5


def test_a_file_that_is_not_a_quality_model_is_refused_with_a_reason(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "other.safetensors"
    save_file({"w": np.zeros(3, dtype=np.float32)}, str(path))
    with pytest.raises(ValueError, match="not an instructir quality model"):
        load_quality_model(path)
    with pytest.raises(FileNotFoundError, match="train one"):
        load_quality_model(tmp_path / "missing.safetensors")


def test_the_audit_split_is_fixed_by_the_text_and_halves_the_set():
    assert audit_split("Remove the noise!") == audit_split("remove the  noise")
    rows = read_audit(AUDIT)
    assert all(r["split"] == audit_split(r["text"]) for r in rows)
    share = np.mean([r["split"] == "test" for r in rows])
    assert 0.45 < share < 0.55


def test_choose_threshold_takes_the_lowest_cut_that_reaches_the_precision():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    targets = np.array([1, 1, 0, 1, 0])
    threshold, at = choose_threshold(scores, targets, 0.75)
    assert threshold == 0.6 and at["cv_precision"] == 0.75 and at["cv_recall"] == 1.0
    with pytest.raises(ValueError, match="label more rows"):
        choose_threshold(scores, np.array([0, 0, 1, 0, 0]), 0.9)


def test_audit_labels_are_complete_and_consistent():
    rows = read_audit(AUDIT)
    assert len(rows) >= 1200 and len({r["audit_id"] for r in rows}) == len(rows)
    for row in rows:
        assert row["true_task"] in (*task_names(), "none")
        assert row["request"] or row["true_task"] == "none"
        assert row["right"] == (row["request"] and row["task"] in (row["true_task"], row["alt_task"]))
    assert Path(REPO / "corpus" / "dev" / "README.md").read_text().count("Labelling guide") == 1


def test_the_corpus_threshold_estimate_counts_a_row_only_when_no_better_near_copy_replaces_it():
    script = load_script("corpus/quality/corpus_threshold.py")
    unit = np.eye(3, dtype=np.float32)
    fit_vectors = unit[[0, 1, 2]]
    pool_vectors = np.r_[unit[[0, 1]], unit[[2]]]
    pool_texts = ["a better copy of row 0", "row 1", "a worse copy of row 2"]
    stay = script.survivors(
        fit_vectors,
        ["row 0", "row 1", "row 2"],
        np.array([0.9, 0.9, 0.9]),
        pool_vectors,
        pool_texts,
        np.array([0.95, 0.99, 0.5]),
        similarity=0.85,
    )
    assert stay.tolist() == [False, True, True], "a better copy replaces row 0; row 1 is itself; row 2 beats its copy"
    assert script.corpus_size(np.r_[unit, unit[[0]]], np.array([1.0, 1.0, 1.0, 0.5]), 0.85) == 3


def test_the_corpus_threshold_choice_stays_above_every_threshold_whose_build_failed_the_gate():
    script = load_script("corpus/quality/corpus_threshold.py")
    table = [{"threshold": t, "corpus_precision": p} for t, p in ((0.8, 0.91), (0.85, 0.90), (0.9, 0.93), (0.95, None))]
    assert script.choose_corpus_threshold(table, 0.9, []) == 0.8
    assert script.choose_corpus_threshold(table, 0.9, [0.85]) == 0.9, (
        "0.8 keeps all that the failed 0.85 kept, and more"
    )
    assert script.choose_corpus_threshold(table, 0.95, []) is None
