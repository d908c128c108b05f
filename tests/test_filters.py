"""The filtering cascade's stages on small real inputs, with the real sentence encoder from its wheel."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import run_cli

from instructir.prompts.candidates import read_candidates
from instructir.prompts.embed import Embedder
from instructir.prompts.filters.cascade import FilterConfig, default_stages, filter_candidates, seed_rows
from instructir.prompts.filters.exact import ExactDedup
from instructir.prompts.filters.label_consistency import LabelConsistency, text_folds
from instructir.prompts.filters.near_duplicates import NearDuplicates, jaccard, shingles
from instructir.prompts.filters.opposite import OppositeRequest
from instructir.prompts.filters.quality import QualityRules
from instructir.prompts.filters.semantic import SemanticDedup, greedy_dedup
from instructir.tasks import all_tasks


def rows(*items: tuple[str, str]) -> list[dict]:
    return [{"id": f"r{i}", "task": task, "text": text} for i, (task, text) in enumerate(items)]


@pytest.fixture(scope="module")
def embedder(tmp_path_factory) -> Embedder:
    return Embedder(cache_dir=tmp_path_factory.mktemp("embeddings"))


def test_exact_duplicates_ignore_case_punctuation_and_spacing():
    result = ExactDedup().run(
        rows(("denoise", "Remove the noise!"), ("deblur", "remove  the noise"), ("denoise", "Remove the grain"))
    )
    assert [r["id"] for r in result.kept] == ["r0", "r2"]
    assert result.dropped[0]["duplicate_of"] == "r0" and result.dropped[0]["reason"] == "exact_duplicate"


def test_near_duplicates_drop_small_edits_and_keep_the_earliest():
    assert jaccard(shingles("remove the noise"), shingles("Remove the noise.")) == 1.0
    data = rows(
        ("denoise", "Please remove the grain from my photo of the beach at night"),
        ("denoise", "please remove the grain from my photo of the beach at night today"),
        ("denoise", "The grain ruins the colours of my wedding portrait, please take it out"),
        ("dehaze", "Could you clear the fog out of this mountain landscape?"),
    )
    result = NearDuplicates(threshold=0.7).run(data)
    assert [r["id"] for r in result.kept] == ["r0", "r2", "r3"]
    assert result.dropped[0]["duplicate_of"] == "r0"


def test_greedy_semantic_dedup_on_vectors_with_known_structure():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(40, 32))
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    close = base + 0.01 * rng.normal(size=base.shape)
    close /= np.linalg.norm(close, axis=1, keepdims=True)
    vectors = np.concatenate([base, close]).astype(np.float32)
    duplicate_of, similarity = greedy_dedup(vectors, threshold=0.95, block_size=16)
    assert (duplicate_of[:40] == -1).all() and (duplicate_of[40:] == np.arange(40)).all()
    assert similarity[40:].min() > 0.95
    data = [{"id": str(i), "task": "denoise", "text": str(i)} for i in range(80)]
    partitioned = SemanticDedup(embedder=None, threshold=0.95, partition_above=10, rows_per_cluster=8)
    assert len(partitioned.run_on_vectors(data, vectors).kept) == 40


def test_semantic_dedup_that_prefers_a_score_keeps_the_best_of_each_group_in_input_order():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(6, 16))
    vectors = np.concatenate([base, base + 0.001 * rng.normal(size=base.shape)])
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    scores = [0.9, 0.2, 0.9, 0.2, 0.9, 0.2, 0.1, 0.8, 0.1, 0.8, 0.1, 0.8]
    data = [{"id": f"r{i}", "task": "denoise", "text": str(i), "quality": q} for i, q in enumerate(scores)]
    data[10]["source"] = "seed"
    for partition_above in (100, 4):
        stage = SemanticDedup(None, threshold=0.95, prefer="quality", partition_above=partition_above)
        stage.rows_per_cluster = 4
        kept = [row["id"] for row in stage.run_on_vectors(data, vectors).kept]
        assert kept == ["r0", "r2", "r7", "r9", "r10", "r11"], "the better paraphrase, and the seed, survive"
    plain = SemanticDedup(None, threshold=0.95).run_on_vectors(data, vectors).kept
    assert [row["id"] for row in plain] == [f"r{i}" for i in range(6)], "without prefer: the first of each group"


def test_semantic_dedup_with_the_real_encoder_and_a_cache_that_recomputes_nothing(embedder):
    data = rows(
        ("denoise", "Please remove the noise from this photo."),
        ("denoise", "Please remove noise from this photograph"),
        ("lowlight", "Make the picture brighter, it is too dark."),
    )
    result = SemanticDedup(embedder, threshold=0.9).run(data)
    assert [r["id"] for r in result.kept] == ["r0", "r2"]
    assert result.dropped[0]["duplicate_of"] == "r0" and result.dropped[0]["similarity"] >= 0.9
    computed = embedder.computed
    again = Embedder(cache_dir=embedder.cache_path.parent)
    vectors = again.encode([r["text"] for r in data])
    assert again.computed == 0 and embedder.computed == computed
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_direct_batches_match_sentence_transformers_encode(embedder):
    texts = [
        "denoise",
        "Please remove the grain from this photo of my grandmother's garden, taken at dusk on an old phone.",
        "Too dark, brighten it up a bit?",
        "The rain streaks ruin the view of the harbour; could you take them out?",
        "sharpen",
    ] * 3
    texts = [f"{text} ({i})" for i, text in enumerate(texts)]
    fresh = Embedder(cache_dir=embedder.cache_path.parent, batch_size=4)
    ours = fresh.encode(texts)
    theirs = fresh._load().encode(texts, batch_size=16, convert_to_numpy=True, normalize_embeddings=True)
    assert fresh.computed == len(texts)
    cosines = (ours * theirs.astype(np.float32)).sum(axis=1)
    assert cosines.min() > 0.995, cosines


def test_quality_rules_keep_english_requests_and_say_why_others_go():
    rules = QualityRules()
    assert all(rules.reason(seed) is None for task in all_tasks() for seed in task.seeds)
    assert rules.reason("Bitte entferne das Rauschen aus meinem Foto") == "not_english"
    assert rules.reason("The fog was so bad that people could see them for a moment.") == "not_a_request"
    assert rules.reason("Here are five requests about blur") == "llm_chatter"
    assert rules.reason("Brighten your shot, fix.") == "editor_voice"
    assert rules.reason("Remove grain noise from your images.") == "editor_voice"
    assert rules.reason("brighten my shot please, it came out dark") is None


def test_label_consistency_flags_a_request_that_asks_for_another_task(embedder):
    data = rows(
        ("denoise", "please get rid of the grainy speckles in my night shot"),
        ("denoise", "the photo is full of noise from high ISO, clean it"),
        ("denoise", "It is so dark I can barely see anyone, please brighten the whole picture"),
        ("lowlight", "lift the exposure of this underexposed photo"),
        ("lowlight", "the restaurant was dim, make the faces brighter"),
        ("deblur", "my hands shook and the shot is blurry, sharpen it"),
        ("deblur", "recover the sharp edges lost to motion blur"),
        ("dehaze", "the valley is covered in fog, clear it away"),
    )
    result = LabelConsistency(embedder, margin=0.3, folds=4).run(data)
    dropped = {r["id"]: r["predicted_task"] for r in result.dropped}
    assert dropped == {"r2": "lowlight"}


def test_label_verdicts_do_not_depend_on_row_order_or_on_unrelated_rows(embedder):
    data = rows(
        *[
            ("denoise", f"{verb} the {noun} in my {shot}")
            for verb in ("remove", "clean up", "reduce")
            for noun in ("grain", "noise", "speckles")
            for shot in ("night shot", "concert photo")
        ],
        *[
            ("lowlight", f"{verb} this {shot}, it is too dark")
            for verb in ("brighten", "lighten", "lift")
            for shot in ("picture", "photo", "night shot")
        ],
        ("denoise", "It is so dark I can barely see anyone, please brighten the whole picture"),
        ("lowlight", "the image is very grainy, remove the noise please"),
    )
    stage = LabelConsistency(embedder, margin=0.2, folds=5)

    def verdicts(subset: list[dict]) -> dict[str, float]:
        result = stage.run(subset)
        return {r["id"]: r.get("own_probability") for r in result.dropped} | {r["id"]: None for r in result.kept}

    forward = verdicts(data)
    assert {"r27", "r28"} <= {key for key, value in forward.items() if value is not None}
    assert verdicts(data[::-1]) == forward
    assert (
        text_folds([r["text"] for r in data[1:]], 5).tolist() == text_folds([r["text"] for r in data], 5)[1:].tolist()
    )


def test_the_opposite_stage_drops_requests_that_contradict_their_own_task_and_keeps_the_rest():
    stage = OppositeRequest()
    assert not stage.run(seed_rows(all_tasks())).dropped, "a seed request matched its own task's opposites"
    result = stage.run(
        rows(
            ("lowlight", "this pic is way too bright, bring it down"),
            ("lowlight", "Darken this photo."),
            ("lowlight", "not too bright, just lift the shadows a little"),
            ("superres", "make it smaller so it fits my email"),
            ("superres", "it's low res, upscale it to 4k"),
            ("deblur", "please make it blurry and soft"),
            ("denoise", "add some grain so it looks like film"),
            ("enhance", "too bright and washed out, fix the colours"),
        )
    )
    dropped = {row["text"][:12]: row["opposite"].lower() for row in result.dropped}
    assert dropped == {
        "this pic is ": "too bright",
        "Darken this ": "darken",
        "make it smal": "smaller",
        "please make ": "make it blurry",
        "add some gra": "add some grain",
    }
    assert {row["reason"] for row in result.dropped} == {"asks_for_the_opposite"}
    assert [row["text"][:12] for row in result.kept] == ["not too brig", "it's low res", "too bright a"]


def test_cascade_funnel_counts_add_up(embedder):
    data = seed_rows(all_tasks()[:2]) + rows(
        ("denoise", "Remove the noise."),
        ("denoise", "Pouvez-vous enlever le bruit de cette photo s'il vous plaît"),
        ("deblur", "please make the blurry photo of my cat sharp again"),
        ("lowlight", "the photo is overexposed, brighten it please"),
    )
    result = filter_candidates(data, default_stages(FilterConfig(), embedder))
    funnel = result.funnel
    assert funnel["in"] == len(data) and funnel["out"] == len(result.kept)
    assert funnel["in"] - funnel["out"] == len(result.rejects)
    assert sum(sum(step["dropped_by_reason"].values()) for step in funnel["stages"]) == len(result.rejects)
    reasons = {r["text"][:10]: (r["stage"], r["reason"]) for r in result.rejects}
    assert reasons["Remove the"] == ("exact", "exact_duplicate")
    assert reasons["Pouvez-vou"] == ("quality", "not_english")
    assert reasons["the photo "] == ("opposite", "asks_for_the_opposite")


def test_filter_cli_carries_columns_through_and_refuses_bad_files(tmp_path):
    source = tmp_path / "candidates.jsonl"
    lines = [
        {"text": "Please sharpen this blurry photo of my dog", "task": "deblur", "origin": "mine"},
        {"text": "please sharpen this blurry photo of my dog!", "task": "deblur", "origin": "mine"},
        {"text": "Brighten the shadows in this dark kitchen photo", "task": "lowlight", "origin": "yours"},
    ]
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    result = run_cli("prompts", "filter", str(source), "--out", str(tmp_path / "out"), "--no-embeddings", "--no-seeds")
    assert result.returncode == 0, result.stderr
    corpus = pq.read_table(tmp_path / "out/corpus.parquet").to_pylist()
    assert [(r["text"][:6], r["origin"]) for r in corpus] == [("Please", "mine"), ("Bright", "yours")]
    rejects = pq.read_table(tmp_path / "out/rejects.parquet").to_pylist()
    assert rejects[0]["duplicate_of"] == "row-0000000" and rejects[0]["stage"] == "exact"
    summary = json.loads((tmp_path / "out/summary.json").read_text())
    assert summary["in"] == 3 and summary["out"] == 2

    source.write_text(source.read_text() + "{not json\n")
    bad = run_cli("prompts", "filter", str(source), "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "candidates.jsonl:4: not valid JSON" in bad.stderr
    source.write_text(json.dumps({"text": "remove jpeg blocks", "task": "dejpeg"}) + "\n")
    unknown = run_cli("prompts", "filter", str(source), "--out", str(tmp_path / "bad"))
    assert unknown.returncode == 2 and "unknown task 'dejpeg'" in unknown.stderr


def test_read_candidates_gives_rows_ids(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(
        '{"text": "fix the blur", "task": "deblur"}\n\n{"text": "less grain", "task": "denoise", "id": 7}\n'
    )
    assert [r["id"] for r in read_candidates(path)] == ["row-0000000", "7"]


def test_generation_with_the_inline_filter_counts_only_filtered_requests(tmp_path):
    from chat_server import ChatServer

    from instructir.prompts.cache import ReplyCache
    from instructir.prompts.filters.cascade import inline_filter
    from instructir.prompts.generate import GenerationConfig, generate_candidates
    from instructir.prompts.openai_backend import OpenAIBackend
    from instructir.tasks import resolve_tasks

    tasks = resolve_tasks(["denoise,dehaze"])
    stages = [QualityRules(), ExactDedup(), NearDuplicates(threshold=0.5)]
    with ChatServer() as server:
        backend = OpenAIBackend(model="m", base_url=server.url)
        config = GenerationConfig(per_task=15, round_size=4)
        result = generate_candidates(
            backend, tasks, config, ReplyCache(tmp_path / "c.sqlite"), inline_filter=inline_filter(stages, tasks)
        )
    assert result.summary["tasks"]["denoise"]["candidates"] == 15 == result.summary["tasks"]["dehaze"]["candidates"]
    refiltered = filter_candidates(seed_rows(tasks) + result.candidates, stages)
    assert len(refiltered.rejects) == 0, "the inline filter let through rows the cascade drops"
    assert any(r["reason"] == "near_duplicate" for r in result.rejects)


def test_show_and_load_a_corpus_by_path(tmp_path):
    from instructir.prompts.candidates import write_rows
    from instructir.prompts.corpus import load_corpus

    write_rows(seed_rows(all_tasks()), tmp_path / "mine" / "corpus.parquet")
    assert load_corpus(tmp_path / "mine").num_rows == sum(len(t.seeds) for t in all_tasks())
    shown = run_cli("prompts", "show", str(tmp_path / "mine"), "--per-task", "2")
    assert shown.returncode == 0 and "denoise" in shown.stdout and "ambiguous" in shown.stdout
    missing = run_cli("prompts", "show", "no-such-corpus")
    assert missing.returncode == 2 and "no corpus named or found" in missing.stderr


def test_topic_relevance_drops_rows_unlike_every_seed_of_their_task(embedder):
    from instructir.prompts.filters.topic import TopicRelevance

    data = rows(
        ("dehaze", "the fog hides the mountains, please clear it up"),
        ("dehaze", "My uncle sold his tractor to a neighbour last spring."),
        ("superres", "make this tiny thumbnail big enough to print"),
    )
    result = TopicRelevance(embedder, min_similarity=0.4).run(data)
    assert [r["id"] for r in result.kept] == ["r0", "r2"]
    assert result.dropped[0]["reason"] == "off_topic" and result.dropped[0]["similarity"] < 0.4


def test_one_embedder_serves_many_threads_like_a_web_demo_does(embedder):
    from concurrent.futures import ThreadPoolExecutor

    texts = [f"please remove the noise from photo number {i}" for i in range(12)]
    expected = embedder.encode(texts[:6])
    with ThreadPoolExecutor(max_workers=4) as pool:
        parts = list(pool.map(lambda i: embedder.encode(texts[i : i + 3]), range(0, 12, 3)))
    np.testing.assert_array_equal(np.concatenate(parts)[:6], expected)
    assert np.concatenate(parts).shape == (12, embedder.dimension())


def test_int8_encoder_stays_close_to_float32_exports_once_and_keeps_its_own_cache(tmp_path):
    texts = [
        "Please remove the grain from this photo of my grandmother's garden.",
        "Get rid of the noise in this picture",
        "It's way too dark, brighten it up",
        "Could you make this night shot lighter?",
        "The photo is blurry, sharpen it please",
        "Undo the camera shake in this image",
    ]
    reference = Embedder(cache_dir=tmp_path, dtype="float32").encode(texts)
    int8 = Embedder(cache_dir=tmp_path, dtype="int8")
    vectors = int8.encode(texts)
    assert int8.computed == len(texts), "int8 vectors must not be read from the float32 cache"
    assert (vectors * reference).sum(axis=1).min() > 0.95
    nearest = [np.argsort(-(found @ found.T), axis=1)[:, 1] for found in (vectors, reference)]
    assert nearest[0].tolist() == nearest[1].tolist(), "int8 changed which request is each one's nearest"
    [model] = tmp_path.glob("encoder-int8-*.onnx")
    exported_at = model.stat().st_mtime_ns
    again = Embedder(cache_dir=tmp_path, dtype="int8")
    assert np.allclose(again.encode([f"{texts[0]} again"]), int8.encode([f"{texts[0]} again"]), atol=1e-6)
    assert model.stat().st_mtime_ns == exported_at and len(list(tmp_path.glob("*.onnx"))) == 1


def test_int8_refusals_say_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="CPU only"):
        Embedder(cache_dir=tmp_path, dtype="int8", device="cuda")
    script = (
        "import sys; sys.modules['onnxruntime'] = None\n"
        "from instructir.prompts.embed import Embedder\n"
        f"Embedder(cache_dir={str(tmp_path)!r}, dtype='int8').encode(['brighten this'])\n"
    )
    missing = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0 and "pip install 'instructir[int8]'" in missing.stderr
    source = tmp_path / "candidates.jsonl"
    source.write_text(json.dumps({"text": "brighten this dark photo", "task": "lowlight"}) + "\n")
    bad = run_cli("prompts", "filter", str(source), "--out", str(tmp_path / "out"), "--embed-dtype", "int16")
    assert bad.returncode == 2 and "dtype must be one of auto, bfloat16, float32, int8" in bad.stderr
    assert not (tmp_path / "out").exists()


def test_decontamination_drops_rows_that_repeat_an_evaluation_request_whatever_their_case_and_punctuation():
    from instructir.prompts.filters.decontaminate import Decontaminate

    stage = Decontaminate(["fix it", "too dark, brighten it"])
    result = stage.run(
        rows(("ambiguous", "Fix it."), ("lowlight", "Too dark - brighten it!"), ("ambiguous", "fix it now"))
    )
    assert [r["text"] for r in result.kept] == ["fix it now"]
    assert {r["reason"] for r in result.dropped} == {"in_evaluation_set"} and len(result.dropped) == 2
