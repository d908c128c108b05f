"""The corpus that ships inside the package: loadable by name, and clean by every rule the filter enforces."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, cli_env, load_script, run_cli

from instructir.prompts.audit import corpus_precision, read_audit
from instructir.prompts.corpus import SHIPPED_CORPUS, load_corpus, shipped_corpora
from instructir.prompts.embed import Embedder
from instructir.prompts.filters.cascade import FilterConfig
from instructir.prompts.filters.quality import QualityRules
from instructir.prompts.filters.quality_model import load_quality_model
from instructir.prompts.rules import normalise
from instructir.tasks import all_tasks


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return load_corpus().to_pylist()


def test_the_corpus_ships_and_loads_by_its_short_name(rows):
    assert SHIPPED_CORPUS in shipped_corpora()
    assert {task.name for task in all_tasks()} == {row["task"] for row in rows}
    assert sum(row["source"] == "seed" for row in rows) >= 80
    shown = run_cli("prompts", "show", "--per-task", "1")
    assert shown.returncode == 0 and f"{len(rows)} rows" in shown.stdout


def test_the_corpus_meets_its_size_minimums(rows):
    counts = {task.name: sum(row["task"] == task.name for row in rows) for task in all_tasks()}
    assert len(rows) >= 3_000
    assert all(counts[task.name] >= 150 for task in all_tasks()), counts


def test_every_generated_row_passed_the_learned_quality_stage_at_the_threshold_the_build_chose(rows):
    build = load_script("corpus/build_corpus.py")
    chosen = build.chosen_threshold()
    shipped = json.loads((REPO / "instructir/data/instructir-requests/summary.json").read_text())["config"]
    assert shipped["quality_threshold"] == chosen, "ship what python corpus/build_corpus.py builds"
    threshold = round(chosen or load_quality_model().threshold, 4)  # the quality column holds 4 decimals
    generated = [row for row in rows if row["source"] != "seed"]
    assert generated and all(row["quality"] >= threshold for row in generated)


def test_the_corpus_is_precise_on_the_hand_labelled_audit_test_half(rows):
    measured = corpus_precision(rows, read_audit(REPO / "corpus" / "audit" / "labels.jsonl"))["test"]
    assert measured["kept"] >= 30 and measured["precision"] >= 0.9, measured


def test_the_audit_set_holds_every_drawn_row_once():
    labels = read_audit(REPO / "corpus" / "audit" / "labels.jsonl")
    drawn = [row for path in sorted((REPO / "corpus" / "audit").glob("unlabelled*.jsonl")) for row in read_audit(path)]
    assert sorted(row["audit_id"] for row in labels) == sorted(row["audit_id"] for row in drawn)
    assert len({row["audit_id"] for row in labels}) == len(labels), "two draws share audit ids"


def test_merging_draws_that_share_audit_ids_is_refused(tmp_path):
    row = '{"audit_id": "a00-0000", "text": "remove the grain", "task": "denoise", "run": "seed-0001"}\n'
    label = '{"audit_id": "a00-0000", "request": true, "true_task": "denoise", "alt_task": null}\n'
    for name, text in {"one.jsonl": row, "two.jsonl": row, "labels.jsonl": label}.items():
        (tmp_path / name).write_text(text)
    merge = [sys.executable, str(REPO / "corpus" / "audit" / "merge.py"), "--out", str(tmp_path / "out.jsonl")]
    files = ["--drawn", str(tmp_path / "one.jsonl"), str(tmp_path / "two.jsonl")]
    files += ["--labels", str(tmp_path / "labels.jsonl")]
    done = subprocess.run([*merge, *files], capture_output=True, text=True, env=cli_env(), timeout=120)
    assert done.returncode != 0 and "more than one drawn file" in done.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_the_hand_read_sample_is_drawn_from_this_corpus_generated_rows(rows):
    sampler = load_script("corpus/audit/sample_corpus.py")
    committed = [json.loads(line) for line in (REPO / "corpus/audit/shipped/sample.jsonl").read_text().splitlines()]
    seed = int(committed[0]["audit_id"][1:3])
    drawn = sampler.sample_rows(rows, len(committed), seed)
    assert drawn == committed, "corpus/audit/shipped/ must be a sample of the corpus that ships; draw it again"
    assert all(row["run"] for row in drawn) and len({row["text"] for row in drawn}) == len(drawn)
    labels = read_audit(REPO / "corpus" / "audit" / "shipped" / "labels.jsonl")
    assert sorted(label["audit_id"] for label in labels) == sorted(row["audit_id"] for row in committed)


def test_an_audit_draw_writes_blind_parts_and_refuses_a_seed_an_earlier_draw_used(tmp_path):
    draw = [sys.executable, str(REPO / "corpus" / "audit" / "draw.py"), "--runs", "seed-0001", "--per-task", "2"]
    first = [*draw, "--seed", "97", "--out", str(tmp_path / "a.jsonl"), "--parts", "x", "y", "--shared", "4"]
    done = subprocess.run([*first, "--parts-dir", str(tmp_path)], capture_output=True, text=True, env=cli_env())
    assert done.returncode == 0, done.stderr
    sample = read_audit(tmp_path / "a.jsonl")
    parts = [read_audit(tmp_path / f"part-{name}.jsonl") for name in ("x", "y")]
    assert len(sample) == 2 * len(all_tasks()) and [len(part) for part in parts] == [10, 10]
    assert {row["audit_id"] for part in parts for row in part} == {row["audit_id"] for row in sample}
    assert all(set(row) == {"audit_id", "text"} for part in parts for row in part), "labellers must not see the task"
    again = [*draw, "--seed", "97", "--out", str(tmp_path / "b.jsonl"), "--exclude", str(tmp_path / "a.jsonl")]
    refused = subprocess.run(again, capture_output=True, text=True, env=cli_env())
    assert refused.returncode != 0 and "was used by an earlier draw" in refused.stderr
    assert not (tmp_path / "b.jsonl").exists()


def test_the_labellers_blind_files_share_the_first_rows_and_split_the_rest(rows):
    sampler = load_script("corpus/audit/sample_corpus.py")
    sample = sampler.sample_rows(rows, 50, 3)
    parts = sampler.blind_parts(sample, 2, 10, 3)
    ids = [{row["audit_id"] for row in part} for part in parts]
    shared = {row["audit_id"] for row in sample[:10]}
    assert ids[0] & ids[1] == shared and ids[0] | ids[1] == {row["audit_id"] for row in sample}
    assert [len(part) for part in parts] == [30, 30]
    assert all(set(row) == {"audit_id", "text"} for part in parts for row in part), "labellers must not see the task"
    assert [row["audit_id"] for row in parts[0][:10]] != [row["audit_id"] for row in sample[:10]], "shuffled"


def test_no_exact_duplicates_and_every_row_passes_the_quality_rules(rows):
    keys = [normalise(row["text"]) for row in rows]
    assert len(set(keys)) == len(keys)
    assert len({row["id"] for row in rows}) == len(rows)
    rules = QualityRules()
    failing = [(row["text"], rules.reason(row["text"])) for row in rows if rules.reason(row["text"])]
    assert failing == []


@pytest.mark.slow
def test_no_pair_of_rows_is_above_the_semantic_threshold(rows, tmp_path):
    vectors = Embedder(cache_dir=tmp_path, dtype="float32").encode([row["text"] for row in rows])
    threshold = FilterConfig().semantic_threshold
    worst = 0.0
    for start in range(0, len(vectors), 2048):
        block = vectors[start : start + 2048] @ vectors.T
        for offset in range(len(block)):
            block[offset, start + offset] = -1.0
        worst = max(worst, float(block.max()))
    assert worst < threshold, f"two rows have cosine {worst:.3f} >= {threshold}"
    assert np.isfinite(worst)
