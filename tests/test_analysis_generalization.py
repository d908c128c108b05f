"""Intent generalisation, prompt-set ablation and ICB routing: real code on small real data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, run_cli, save_tiny_checkpoint

from instructir.analysis import templates
from instructir.analysis.ablation import diverse_subset, farthest_points, random_subset, task_quota
from instructir.analysis.intent import (
    HeadTraining,
    class_weights,
    classification_metrics,
    head_predict,
    probe_predict,
    train_head,
    train_probe,
)
from instructir.analysis.labelled import load_labelled
from instructir.analysis.routing import gate_vectors, icb_blocks, instruction_vectors
from instructir.datasets.build import BuildConfig, build_dataset
from instructir.datasets.instructions import InstructionPool
from instructir.datasets.sources import sample_images
from instructir.tasks import all_tasks, task_names

FAST = HeadTraining(epochs=5, min_steps=150)
REAL_FILE = REPO / "tests" / "data" / "real_requests.jsonl"
# Our own small set of people-style requests, 5 per task, distinct from the registry seeds.
FIXTURE = [
    ("there's all this weird colored dots on my night photo, can you smooth that out", "denoise"),
    ("Photo from my old phone looks like sandpaper. Can it be cleaned up?", "denoise"),
    ("the pic of my cat at night is so speckly lol help", "denoise"),
    ("Could you take out the graininess? Shot it indoors with no flash.", "denoise"),
    ("this has that staticky look, please fix", "denoise"),
    ("my kid moved and now her face is smeared, can you fix that", "deblur"),
    ("Camera wasn't focused on anything, everything is soft. Can you make it crisp?", "deblur"),
    ("the car is just a streak, can you make it look sharp", "deblur"),
    ("Sharpen the text on the whiteboard, it's unreadable because I was walking.", "deblur"),
    ("fuzzy photo, my hands were shaking. make it clear pls", "deblur"),
    ("it was pouring when I took this, can you get the streaks out", "derain"),
    ("There are drops all over the shot from the storm, please clean it", "derain"),
    ("take the rain out of my wedding photo :(", "derain"),
    ("Lines of rain across the whole street view, remove them please.", "derain"),
    ("can you make it look like a dry day, those white rain lines ruin it", "derain"),
    ("the mountains are lost in the fog, can you bring them back", "dehaze"),
    ("City photo looks grey and murky from the smog, clear it up please", "dehaze"),
    ("everything in the distance is washed out by mist, fix it", "dehaze"),
    ("Can you cut through the haze over the lake?", "dehaze"),
    ("it looks like theres a white veil over the landscape, remove it", "dehaze"),
    ("I can barely see anyone in this party pic, it's way too dark", "lowlight"),
    ("Shot this at dusk and it came out almost black. Lighten it?", "lowlight"),
    ("pls make it brighter i cant see my face", "lowlight"),
    ("The basement photo is really dim, bring up the light.", "lowlight"),
    ("underexposed, can you fix the exposure so the shadows show", "lowlight"),
    ("this is a tiny image, can you make it bigger without it getting blurry", "superres"),
    ("I need to print this but it's only 200 pixels wide. Upscale it?", "superres"),
    ("the screenshot is super low res and blocky, make it higher quality", "superres"),
    ("Can you enlarge the old thumbnail so it looks like a real photo?", "superres"),
    ("make this 4 times bigger with more detail please", "superres"),
    ("colors look kind of washed out and blah, make them richer", "enhance"),
    ("Everything has a blue tint, can you warm it up and fix the colors?", "enhance"),
    ("add some contrast and make the sky bluer please", "enhance"),
    ("The photo looks flat, can you give it that edited instagram look?", "enhance"),
    ("skin tones look orange, correct the colour balance", "enhance"),
    ("idk what's wrong with it but it looks bad, fix?", "ambiguous"),
    ("Can you just make this look nicer for my profile?", "ambiguous"),
    ("make it better", "ambiguous"),
    ("could you touch this up a bit before I send it to my mom", "ambiguous"),
    ("Please improve this photo however you think is best.", "ambiguous"),
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One embedding cache for the module, so every text is embedded once."""
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INSTRUCTIR_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Our real-request fixture and the first 60 requests per task of the shipped corpus, as JSONL files."""
    folder = tmp_path_factory.mktemp("requests")
    corpus = load_labelled("instructir-requests")
    rows = [row for task in all_tasks() for row in np.flatnonzero(corpus.labels == task.id)[:60]]
    small = [{"text": corpus.texts[row], "task": task_names()[corpus.labels[row]]} for row in rows]
    return {
        "real": write_jsonl(folder / "real.jsonl", [{"text": text, "task": task} for text, task in FIXTURE]),
        "corpus": write_jsonl(folder / "corpus.jsonl", small),
    }


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A small InstructIR and an 8-class head with random weights, saved as our checkpoint format."""
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "final.safetensors")


def clustered(count: int, rng: np.random.Generator, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors scattered tightly around one of ``centres`` each, with their centre's index as the label."""
    labels = rng.integers(len(centres), size=count)
    points = centres[labels] + 0.02 * rng.standard_normal((count, centres.shape[1]))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32), labels


def test_head_and_probe_learn_separable_embeddings_but_not_shuffled_labels():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((len(all_tasks()), 384))
    train_x, train_y = clustered(400, rng, centres)
    test_x, test_y = clustered(200, rng, centres)
    head = train_head(train_x, train_y, seed=1, settings=FAST)
    probe = train_probe(train_x, train_y, seed=1)
    assert classification_metrics(test_y, head_predict(head, test_x)[0])["accuracy"] == 1.0
    assert classification_metrics(test_y, probe_predict(probe, test_x)[0])["accuracy"] == 1.0
    shuffled = rng.permutation(train_y)
    chance_head = classification_metrics(
        test_y, head_predict(train_head(train_x, shuffled, 1, settings=FAST), test_x)[0]
    )
    chance_probe = classification_metrics(test_y, probe_predict(train_probe(train_x, shuffled, 1), test_x)[0])
    assert chance_head["accuracy"] < 0.35 and chance_probe["accuracy"] < 0.35
    again = train_head(train_x, train_y, seed=1, settings=FAST)
    for name, value in head.state_dict().items():
        assert torch.equal(value, again.state_dict()[name]), name


def test_metrics_and_class_weights_on_a_hand_worked_example():
    truth, predicted = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])
    scores = classification_metrics(truth, predicted)
    assert scores["accuracy"] == 0.75
    assert scores["accuracy_ci95"] == pytest.approx([0.301, 0.954], abs=1e-3)
    assert scores["per_task"]["denoise"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert scores["per_task"]["deblur"]["precision"] == pytest.approx(2 / 3)
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)  # over the tasks present only
    assert scores["confusion"][0][:2] == [1, 1] and scores["confusion"][1][:2] == [0, 2]
    assert class_weights(np.array([0, 0, 0, 1]), 3).tolist() == pytest.approx([2 / 3, 2.0, 0.0])


def test_templates_cover_every_task_deterministically(monkeypatch):
    every = templates.template_requests()
    assert every.task_ids() == [task.id for task in all_tasks()]
    assert all(text.endswith(".") and "  " not in text and text[0].isupper() for text in every.texts)
    assert "Get rid of the grain in the photo." in templates.task_templates("denoise")
    sample = templates.template_requests(per_task=10, seed=3)
    assert len(sample) == 10 * len(all_tasks())
    assert sample.texts == templates.template_requests(per_task=10, seed=3).texts
    assert sample.texts != templates.template_requests(per_task=10, seed=4).texts
    assert len(templates.seed_requests()) == sum(len(task.seeds) for task in all_tasks())
    monkeypatch.delitem(templates.VOCABULARIES, "derain")
    with pytest.raises(RuntimeError, match="missing for: derain"):
        templates._check_vocabularies()


def test_subsets_keep_task_shares_and_farthest_points_spread_out():
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    assert task_quota(labels, 10) == {0: 6, 1: 3, 2: 1}
    rows = random_subset(labels, 20, np.random.default_rng(0))
    assert np.bincount(labels[rows]).tolist() == [12, 6, 2]
    rng = np.random.default_rng(0)
    crowd = np.eye(8)[0] + 0.01 * rng.standard_normal((20, 8))
    vectors = np.vstack([crowd, np.eye(8)[1:4]])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    chosen = farthest_points(vectors, 4, np.random.default_rng(1))
    assert {20, 21, 22} <= set(chosen.tolist()) and len(set(chosen.tolist())) == 4
    pruned = diverse_subset(vectors, np.array([0] * 12 + [1] * 11), 6, np.random.default_rng(2))
    assert len(pruned) == len(set(pruned.tolist())) == 6


def test_gates_have_one_value_per_channel_of_each_icb(checkpoint):
    from instructir.model.checkpoint import load_checkpoint

    model, head, _ = load_checkpoint(checkpoint)
    blocks = icb_blocks(model)
    assert list(blocks) == ["enc_cond.0", "enc_cond.1", "dec_cond.0", "dec_cond.1"]
    e = instruction_vectors(head, np.random.default_rng(0).standard_normal((5, 384)))
    assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    for block, channels in zip(blocks.values(), (8, 16, 16, 8), strict=True):
        gates = gate_vectors(block, e)
        assert gates.shape == (5, channels) and ((gates > 0) & (gates < 1)).all()


def test_unknown_task_in_real_requests_fails_naming_the_row(tmp_path):
    rows = [{"text": text, "task": task} for text, task in FIXTURE[:2]] + [{"text": "crisp it up", "task": "sharpen"}]
    real = write_jsonl(tmp_path / "bad.jsonl", rows)
    done = run_cli("analyze", "generalization", "--real", str(real), "--out", str(tmp_path / "out"), "--no-progress")
    assert done.returncode != 0
    assert "row 3" in done.stderr and "sharpen" in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_generalization_cli_with_baselines_and_psnr_by_wording(tmp_path, files, cache, checkpoint):
    data = tmp_path / "data"
    config = BuildConfig(tasks=("denoise", "lowlight"), per_image=1, patch=64)
    build_dataset(data, InstructionPool.from_corpus(), sample_images()[:3], config=config)
    real = REAL_FILE if REAL_FILE.is_file() else files["real"]
    out = tmp_path / "gen"
    args = ["--corpus", str(files["corpus"]), "--real", str(real), "--out", str(out), "--no-progress"]
    described = "real-style requests written for this project"
    done = run_cli(
        "analyze",
        "generalization",
        *args,
        "--real-description",
        described,
        "--checkpoint",
        str(checkpoint),
        "--data",
        str(data),
        "--limit",
        "1",
        INSTRUCTIR_CACHE=str(cache),
    )
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    chance = 1 / len(all_tasks())
    assert metrics["accuracy"] > 4 * chance and metrics["probe"]["accuracy"] > 4 * chance
    assert set(metrics["per_task"]) == set(task_names())
    for section in (metrics, metrics["probe"]):
        assert set(section["baselines"]) == {"seeds", "templates", "seeds_templates"}
        assert all(0.25 < scores["accuracy"] <= 1 for scores in section["baselines"].values())
        assert 0 <= section["macro_f1"] <= 1
    assert len(metrics["misclassified"]) == round((1 - metrics["accuracy"]) * metrics["count"])
    assert set(metrics["psnr"]["tasks"]) == {"denoise", "lowlight"}
    for values in metrics["psnr"]["tasks"].values():
        assert values["images"] == 1
        assert all(np.isfinite(values[key]) for key in ("input", "real", "corpus", "template", "other_task", "empty"))
    assert {path.name for path in (out / "figures").iterdir()} == {
        "scores.png",
        "confusion_head.png",
        "confusion_probe.png",
        "psnr.png",
    }
    report = (out / "report.md").read_text()
    assert "Misclassified" in report and (out / "report.html").is_file()
    assert f"{metrics['count']} {described} ('{real.stem}')" in report, "the report names the set by its provenance"
    assert "real requests" not in report.lower()


@pytest.mark.slow
def test_ablation_and_routing_clis_on_small_sets(tmp_path, files, cache, checkpoint):
    common = ["--corpus", str(files["corpus"]), "--real", str(files["real"]), "--no-progress"]
    out = tmp_path / "ablation"
    done = run_cli(
        "analyze",
        "ablation",
        *common,
        "--out",
        str(out),
        "--sizes",
        "40,120",
        "--diverse",
        "120",
        "--repeats",
        "2",
        INSTRUCTIR_CACHE=str(cache),
    )
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    sets = {entry["set"]: entry for entry in metrics["sets"]}
    assert list(sets) == [
        "templates",
        "seeds",
        "seeds+templates",
        "corpus-40",
        "corpus-120",
        "diverse-120",
        "corpus-full",
        "corpus+seeds+templates",
    ]
    assert sets["corpus-full"]["size"] == 480 and sets["diverse-120"]["size"] == 120
    hand = sets["seeds"]["size"] + sets["templates"]["size"]
    assert sets["seeds+templates"]["size"] == hand and sets["corpus+seeds+templates"]["size"] == 480 + hand
    assert all(
        entry["runs"] == 2 and 0 <= entry["accuracy"] <= 1 and entry["accuracy_std"] >= 0 for entry in sets.values()
    )
    assert (out / "figures" / "ablation.png").is_file()
    assert "requests of unstated provenance" in (out / "report.md").read_text(), "an undescribed set says so"

    out = tmp_path / "routing"
    done = run_cli(
        "analyze",
        "routing",
        "--checkpoint",
        str(checkpoint),
        *common,
        "--out",
        str(out),
        INSTRUCTIR_CACHE=str(cache),
    )
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["blocks"]) == ["enc_cond.0", "enc_cond.1", "dec_cond.0", "dec_cond.1"]
    for entry in metrics["blocks"].values():
        assert np.array(entry["cosine_centred"]).shape == (8, 8)
        assert np.allclose(np.diag(entry["cosine_raw"]), 1, atol=1e-3)
        assert 0 <= entry["nearest_own_mean"] <= 1 and 0 <= entry["nearest_own_mean_shuffled"] <= 1
    assert 0 <= metrics["nearest_own_mean_all_blocks"] <= 1 and metrics["chance"] == pytest.approx(1 / 8)
    assert {path.name for path in (out / "figures").iterdir()} == {"gates.png", "cosines.png", "nearest_mean.png"}
