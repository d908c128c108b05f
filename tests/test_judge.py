"""The LLM judge filter stage: answers scripted by a loopback server, retries, the reply cache, resume after SIGKILL."""

from __future__ import annotations

import hashlib
import json
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from chat_server import ChatServer, fail_always, fail_first
from conftest import REPO, cli_env, run_cli

from instructir.pipeline.config import validate_config
from instructir.pipeline.runner import fingerprint
from instructir.pipeline.stages import filter_requests
from instructir.prompts.cache import ReplyCache
from instructir.prompts.filters.judge import (
    LLMJudge,
    judge_backend_choice,
    judge_messages,
    load_judge_prompt,
    parse_judgement,
)
from instructir.prompts.openai_backend import OpenAIBackend
from instructir.tasks import Task, all_tasks, task_names

PROMPT = load_judge_prompt()

# (label, text, the judge's scripted answer, the expected verdict: judge_task if kept, else the drop reason)
SCRIPT = [
    ("deblur", "my photo of the dog came out blurry, can you sharpen it?", '{"task": "deblur"}', "deblur"),
    ("lowlight", "This picture is way too dark, please brighten it", '{"task": "denoise"}', "judge_disagrees"),
    ("denoise", "My uncle sold his tractor to a neighbour last spring.", '{"task": "none"}', "judge_disagrees"),
    ("superres", "make this tiny thumbnail big enough to print", '{"Task": "Super-Resolution"}', "superres"),
    ("dehaze", "the fog hides the mountains, please clear it up", '```json\n{"task": "dehaze"}\n```', "dehaze"),
    ("derain", "remove the rain streaks from my street photo", 'Sure! {"task": "rain removal"} is it.', "derain"),
    ("enhance", "the colours look flat, make it pop", "{'task': 'enhance'}", "judge_unparsable"),
    ("denoise", "so much grain in this night shot, clean it", "It is about noise.", "judge_unparsable"),
    ("ambiguous", "can you make my picture look better?", '{"task": "sharpening"}', "judge_unparsable"),
]


def message_of(text: str) -> str:
    """The user message the judge sends for ``text``."""
    return PROMPT.request.substitute(text=text)


def scripted(answers: dict[str, str]):
    """A server reply function: the scripted answer to the row in the last message."""
    return lambda body: answers[body["messages"][-1]["content"]]


def script_rows() -> list[dict]:
    return [{"id": f"r{i}", "task": task, "text": text} for i, (task, text, _, _) in enumerate(SCRIPT)]


def script_server(**settings) -> ChatServer:
    return ChatServer(reply=scripted({message_of(text): answer for _, text, answer, _ in SCRIPT}), **settings)


def verdicts(result) -> dict[str, str]:
    kept = {row["id"]: row["judge_task"] for row in result.kept}
    return kept | {row["id"]: row["reason"] for row in result.dropped}


def test_answers_are_parsed_from_json_in_any_dress_and_garbage_is_not():
    assert parse_judgement('{"task": "deblur"}') == "deblur"
    assert parse_judgement('```json\n{"TASK": "Denoising"}\n```') == "denoise"
    assert parse_judgement('Here you go: {"task": "low-light enhancement"} (sure)') == "lowlight"
    assert parse_judgement('{"task": "NONE"}') == parse_judgement('{"task": null}') == "none"
    assert parse_judgement('{"task": "deblur"} {"task": "deblurring"}') == "deblur"
    garbage = [
        "deblur",
        "",
        '{"task": "sharpen"}',
        '{"task": "deblur"',
        "{task: deblur}",
        '{"task": 1}',
        '{"label": "deblur"}',
        '{"answer": {"task": "deblur"}}',
        '{"task": "deblur"} {"task": "denoise"}',
    ]
    assert [parse_judgement(answer) for answer in garbage] == [None] * len(garbage)


def test_the_prompt_and_the_answers_come_from_the_registry():
    messages = judge_messages(PROMPT, all_tasks(), "fix it")
    system = messages[0][1]
    for task in all_tasks():
        assert task.name in system and task.label in system and task.description in system
    answers = [json.loads(content)["task"] for role, content in messages if role == "assistant"]
    assert set(answers) == {*task_names(), "none"}
    dejpeg = Task(8, "dejpeg", "JPEG artefact removal", "remove blocky JPEG artefacts", ("fix the blocks",), ())
    tasks = (*all_tasks(), dejpeg)
    assert "remove blocky JPEG artefacts" in judge_messages(PROMPT, tasks, "fix it")[0][1]
    assert parse_judgement('{"task": "jpeg artefact removal"}', tasks) == "dejpeg"
    assert parse_judgement('{"task": "dejpeg"}') is None


def test_scripted_answers_keep_agreeing_rows_and_drop_the_rest_with_reasons(tmp_path):
    rows = [*script_rows(), {"id": "again", "task": "denoise", "text": SCRIPT[0][1]}]
    rows.append({"id": "seed", "task": "deblur", "text": "Deblur this.", "source": "seed"})
    with script_server() as server:
        judge = LLMJudge(OpenAIBackend(model="m", base_url=server.url), ReplyCache(tmp_path / "judge.sqlite"))
        result = judge.run(rows)
        log = server.log
    expected = {f"r{i}": verdict for i, (*_, verdict) in enumerate(SCRIPT)} | {"again": "judge_disagrees"}
    assert verdicts(result) == expected | {"seed": None}
    dropped = {row["id"]: row for row in result.dropped}
    assert dropped["r1"]["judge_task"] == "denoise" and dropped["r2"]["judge_task"] == "none"
    assert dropped["again"]["judge_task"] == "deblur"
    assert dropped["r6"]["judge_answer"] == "{'task': 'enhance'}" and dropped["r6"]["judge_task"] is None
    assert len(log) == len(SCRIPT), "the seed row or the repeated text cost a call"
    assert judge.summary()["new_calls"] == len(SCRIPT) and judge.summary()["cached_calls"] == 0


def test_requests_are_deterministic_and_small(tmp_path):
    request = LLMJudge(OpenAIBackend(model="m", base_url="http://unused"), ReplyCache(tmp_path / "j.sqlite")).request(
        "fix the blur"
    )
    assert request.temperature == 0 and request.seed == 0 and request.max_tokens <= 32
    assert request.messages[-1] == ("user", message_of("fix the blur"))


def test_the_judge_model_picks_its_backend_and_a_missing_key_stops_before_filtering(tmp_path):
    assert judge_backend_choice("local") == ("local", None)
    assert judge_backend_choice("models/judge.gguf") == ("local", "models/judge.gguf")
    assert judge_backend_choice("gpt-4o-mini") == ("openai", "gpt-4o-mini")
    assert judge_backend_choice("local", backend="openai") == ("openai", "local")
    source = tmp_path / "candidates.jsonl"
    source.write_text(json.dumps({"task": "deblur", "text": SCRIPT[0][1]}) + "\n")
    result = run_cli("prompts", "filter", str(source), "--out", str(tmp_path / "out"), "--judge-model", "gpt-4o-mini")
    assert result.returncode == 2 and "judge: no API key" in result.stderr
    assert not (tmp_path / "out").exists()


def test_rate_limits_and_server_errors_are_retried_and_counted(tmp_path):
    with script_server(faults=fail_first("429", "500"), retry_after=0.01) as server:
        backend = OpenAIBackend(model="m", base_url=server.url, max_retries=3, backoff_base=0.001)
        judge = LLMJudge(backend, ReplyCache(tmp_path / "judge.sqlite"))
        result = judge.run(script_rows())
        statuses = Counter(record["status"] for record in server.log)
    assert verdicts(result) == {f"r{i}": verdict for i, (*_, verdict) in enumerate(SCRIPT)}
    assert statuses == {429: len(SCRIPT), 500: len(SCRIPT), 200: len(SCRIPT)}
    assert judge.summary()["failed_attempts_by_reason"] == {"http_500": len(SCRIPT), "rate_limited": len(SCRIPT)}


def test_calls_that_fail_for_good_drop_their_rows_and_are_asked_again_next_time(tmp_path):
    with script_server(faults=fail_always("500")) as server:
        backend = OpenAIBackend(model="m", base_url=server.url, max_retries=1, backoff_base=0.001)
        failed = LLMJudge(backend, ReplyCache(tmp_path / "judge.sqlite")).run(script_rows())
    assert {row["reason"] for row in failed.dropped} == {"judge_failed"} and not failed.kept
    assert {row["judge_error"] for row in failed.dropped} == {"http_500"}
    with script_server() as server:
        backend = OpenAIBackend(model="m", base_url=server.url)
        healed = LLMJudge(backend, ReplyCache(tmp_path / "judge.sqlite")).run(script_rows())
        assert len(server.log) == len(SCRIPT)
    assert verdicts(healed) == {f"r{i}": verdict for i, (*_, verdict) in enumerate(SCRIPT)}


def test_a_rerun_sends_no_call_and_gives_the_same_verdicts(tmp_path):
    with script_server() as server:
        first = LLMJudge(OpenAIBackend(model="m", base_url=server.url), ReplyCache(tmp_path / "judge.sqlite"))
        before = first.run(script_rows())
        sent = len(server.log)
        again = LLMJudge(OpenAIBackend(model="m", base_url=server.url), ReplyCache(tmp_path / "judge.sqlite"))
        after = again.run(script_rows())
        assert len(server.log) == sent == len(SCRIPT)
    assert (after.kept, after.dropped) == (before.kept, before.dropped)
    assert again.summary()["cached_calls"] == len(SCRIPT) and again.summary()["new_calls"] == 0


def test_filter_cli_runs_the_judge_last_and_writes_its_funnel_columns_and_cache(tmp_path):
    source = tmp_path / "candidates.jsonl"
    usable = [(task, text) for task, text, *_ in SCRIPT if "tractor" not in text]
    source.write_text("".join(json.dumps({"task": task, "text": text}) + "\n" for task, text in usable))
    out = tmp_path / "out"
    args = ["prompts", "filter", str(source), "--out", str(out), "--no-embeddings", "--no-seeds"]
    with script_server() as server:
        result = run_cli(*args, "--judge-model", "m", "--judge-base-url", server.url)
        assert result.returncode == 0, result.stderr
        sent = len(server.log)
        rerun = run_cli(*args, "--judge-model", "m", "--judge-base-url", server.url)
        assert rerun.returncode == 0 and len(server.log) == sent == len(usable), "the rerun sent calls"
    summary = json.loads((out / "summary.json").read_text())
    stages = [step["stage"] for step in summary["stages"]]
    assert stages[-1] == "judge" and len(stages) > 1
    assert summary["stages"][-1]["dropped_by_reason"] == {"judge_disagrees": 1, "judge_unparsable": 3}
    assert summary["judge"]["cached_calls"] == len(usable) and summary["judge"]["model"] == "m"
    corpus = pq.read_table(out / "corpus.parquet").to_pylist()
    assert {(row["task"], row["judge_task"]) for row in corpus} == {
        (t, t) for t in ("deblur", "superres", "dehaze", "derain")
    }
    rejects = [row for row in pq.read_table(out / "rejects.parquet").to_pylist() if row["stage"] == "judge"]
    assert {row["judge_task"] for row in rejects if row["reason"] == "judge_disagrees"} == {"denoise"}
    assert (out / "judge_cache.sqlite").is_file()
    assert "judge" in result.stdout and "judge_unparsable 3" in result.stdout


def test_pipeline_filter_stage_runs_the_configured_judge_and_fingerprints_it(tmp_path):
    candidates = tmp_path / "generate" / "candidates.jsonl"
    candidates.parent.mkdir()
    candidates.write_text("".join(json.dumps({"task": t, "text": x}) + "\n" for t, x, *_ in SCRIPT))
    base = {"out": str(tmp_path), "generate": {"tasks": ["deblur", "superres"]}, "filter": {"embeddings": False}}
    with script_server() as server:
        judged = validate_config(
            {**base, "filter": {"embeddings": False, "judge": {"model": "m", "base_url": server.url}}}
        )
        outputs = {"generate": {"candidates": str(candidates)}}
        produced = filter_requests(judged, tmp_path / "filter", outputs, progress=False)
        sent = len(server.log)
    assert sent == sum("tractor" not in text for _, text, *_ in SCRIPT)
    summary = json.loads(Path(produced["summary"]).read_text())
    assert summary["stages"][-1]["stage"] == "judge" and summary["judge"]["new_calls"] == sent
    corpus = pq.read_table(produced["corpus"]).to_pylist()
    assert {row["judge_task"] for row in corpus if row.get("source") != "seed"} == {
        "deblur",
        "superres",
        "dehaze",
        "derain",
    }
    assert (tmp_path / "judge_cache.sqlite").is_file()
    plain = validate_config(base)
    assert plain.filter.judge is None
    assert fingerprint("filter", plain, {"generate": "g"}) != fingerprint("filter", judged, {"generate": "g"})


@pytest.mark.slow
def test_generate_with_filter_and_judge_keeps_only_what_the_judge_agrees_with(tmp_path):
    def judge_or_generate(body):
        if '"task"' not in body["messages"][0]["content"]:
            from chat_server import default_reply

            return default_reply(body)
        text = body["messages"][-1]["content"].lower()
        # This judge reads only noise requests: every lowlight row that reaches it is dropped, whichever rows the
        # earlier stages let through (their borderline calls differ between CPUs).
        return '{"task": "denoise"}' if "noise" in text or "grain" in text else '{"task": "none"}'

    out = tmp_path / "gen"
    with ChatServer(reply=judge_or_generate) as server:
        args = ["prompts", "generate", "--out", str(out), "--base-url", server.url, "--model", "m"]
        judge = ["--judge-model", "m", "--judge-base-url", server.url]
        alone = run_cli(*args, "--tasks", "denoise", "--per-task", "2", *judge)
        assert alone.returncode == 2 and "add --filter" in alone.stderr
        isolate = ("--no-learned-quality",)  # so the rows the judge disagrees with reach it
        result = run_cli(*args, "--tasks", "denoise,lowlight", "--per-task", "4", "--filter", *isolate, *judge)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["judge"]["calls"] > 0 and (out / "judge_cache.sqlite").is_file()
    rejects = pq.read_table(out / "rejects.parquet").to_pylist()
    dropped = [row for row in rejects if row["reason"] == "judge_disagrees"]
    assert dropped and all(row["task"] == "lowlight" or "noise" not in row["text"].lower() for row in dropped)
    kept = pq.read_table(out / "candidates.parquet").to_pylist()
    assert all(
        row["task"] == "denoise" and ("noise" in row["text"].lower() or "grain" in row["text"].lower()) for row in kept
    ), kept


class Gate:
    """A fault plan that lets the first ``open_for`` requests through and then holds every later one (the "slow"
    fault) until ``release`` is called."""

    def __init__(self, open_for: int) -> None:
        self.left: int | None = open_for

    def __call__(self, fingerprint: str, attempt: int) -> str | None:
        if self.left is None:
            return None
        self.left -= 1
        return None if self.left >= 0 else "slow"

    def release(self) -> None:
        self.left = None


def kill_test_rows() -> tuple[list[dict], dict[str, str]]:
    """The registry's seed texts as candidates, each with a scripted answer: mostly agreeing, some not."""
    rows, answers = [], {}
    tasks = all_tasks()
    for task in tasks:
        for text in task.seeds:
            rows.append({"task": task.name, "text": text})
            pick = int(hashlib.sha256(text.encode()).hexdigest(), 16) % 10
            other = tasks[(task.id + 1) % len(tasks)].name
            answer = {0: f'{{"task": "{other}"}}', 1: '{"task": "none"}', 2: "no idea"}.get(pick)
            answers[message_of(text)] = answer or f'{{"task": "{task.label}"}}'
    return rows, answers


def cached_count(path: Path) -> int:
    try:
        with sqlite3.connect(path) as db:
            return db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def start_filter(source: Path, out: Path, url: str) -> subprocess.Popen:
    args = ["prompts", "filter", str(source), "--out", str(out), "--no-embeddings", "--no-seeds"]
    args += ["--judge-model", "m", "--judge-base-url", url, "--judge-concurrency", "4"]
    command = [sys.executable, "-m", "instructir", *args]
    return subprocess.Popen(command, cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def outputs(out: Path) -> tuple[list[dict], list[dict]]:
    return pq.read_table(out / "corpus.parquet").to_pylist(), pq.read_table(out / "rejects.parquet").to_pylist()


@pytest.mark.slow
def test_sigkill_mid_judging_then_a_rerun_sends_no_answered_call_again_and_gives_the_same_corpus(tmp_path):
    rows, answers = kill_test_rows()
    source = tmp_path / "candidates.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    answered_before_kill = 20
    gate = Gate(answered_before_kill)
    with ChatServer(reply=scripted(answers), delay=0.02, faults=gate, slow_seconds=600) as server:
        killed = start_filter(source, tmp_path / "run", server.url)
        deadline = time.monotonic() + 120
        while cached_count(tmp_path / "run/judge_cache.sqlite") < answered_before_kill:
            assert killed.poll() is None and time.monotonic() < deadline, "the judge never got going"
            time.sleep(0.05)
        time.sleep(0.3)
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        assert not (tmp_path / "run/corpus.parquet").exists()
        assert cached_count(tmp_path / "run/judge_cache.sqlite") == answered_before_kill == server.count(status=200)
        before_kill = {record["fingerprint"] for record in server.log}

        gate.release()
        resumed = start_filter(source, tmp_path / "run", server.url)
        _, stderr = resumed.communicate(timeout=120)
        assert resumed.returncode == 0, stderr.decode()
        log = server.log
        reference = start_filter(source, tmp_path / "reference", server.url)
        _, stderr = reference.communicate(timeout=120)
        assert reference.returncode == 0, stderr.decode()

    answered = Counter(record["fingerprint"] for record in log if record["status"] == 200)
    assert set(answered.values()) == {1}, "a judge request was answered twice across the two runs"
    assert not [record for record in log[len(before_kill) :] if record["fingerprint"] in before_kill]
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    assert len(answered) == summary["stages"][-1]["in"] == summary["judge"]["calls"]
    assert summary["judge"]["cached_calls"] == answered_before_kill
    assert outputs(tmp_path / "run") == outputs(tmp_path / "reference")
    assert {"judge_disagrees", "judge_unparsable"} <= {row["reason"] for row in outputs(tmp_path / "run")[1]}


@pytest.mark.slow
def test_the_embedded_model_judges_every_row_and_a_cached_rerun_never_loads_it(tmp_path):
    from instructir.prompts.local_backend import LocalBackend

    rows = script_rows()[:4]
    judge = LLMJudge(LocalBackend(batch_size=4), ReplyCache(tmp_path / "judge.sqlite"))
    result = judge.run(rows)
    assert len(result.kept) + len(result.dropped) == len(rows)
    for row in result.kept + result.dropped:
        assert row["judge_task"] in {*task_names(), "none"} or row["reason"] == "judge_unparsable", row
    assert judge.summary()["new_calls"] == len(rows) and judge.summary()["backend"] == "local"
    fresh = LocalBackend(batch_size=4)
    again = LLMJudge(fresh, ReplyCache(tmp_path / "judge.sqlite")).run(rows)
    assert fresh._loaded is None, "a fully cached rerun loaded the model"
    assert verdicts(again) == verdicts(result)
