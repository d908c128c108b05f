"""Generation end to end through the CLI: outputs, determinism, resume after SIGKILL and Ctrl-C, bad input."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from chat_server import ChatServer, default_reply, fingerprint
from conftest import REPO, cli_env, run_cli

from instructir.prompts.generate import CANDIDATE_SCHEMA
from instructir.prompts.templates import load_templates
from instructir.tasks import get_task


def generate_args(url: str, out: Path, *extra: str) -> list[str]:
    return ["prompts", "generate", "--out", str(out), "--base-url", url, "--model", "m", *extra]


def table_without_times(path: Path):
    return pq.read_table(path).drop(["created_at"])


def cached_keys(cache: Path) -> set[str]:
    with sqlite3.connect(cache) as db:
        return {row[0] for row in db.execute("SELECT fingerprint FROM replies")}


def test_generate_writes_candidates_rejects_and_summary(server, tmp_path):
    result = run_cli(*generate_args(server.url, tmp_path, "--tasks", "derain,ambiguous", "--per-task", "12"))
    assert result.returncode == 0, result.stderr
    candidates = pq.read_table(tmp_path / "candidates.parquet")
    assert candidates.schema == CANDIDATE_SCHEMA
    rows = candidates.to_pylist()
    assert {r["task"] for r in rows} == {"derain", "ambiguous"}
    assert sum(r["task"] == "derain" for r in rows) == 12
    assert len({r["id"] for r in rows}) == len(rows) == 24
    assert all(r["backend"] == "openai" and r["model"] == "m" and r["completion_tokens"] > 0 for r in rows)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["candidates"] == 24 and summary["tasks"]["derain"]["calls"] > 0
    assert summary["estimated_cost_usd"] is None
    rejects = pq.read_table(tmp_path / "rejects.parquet").to_pylist()
    assert sum(sum(t["rejects_by_reason"].values()) for t in summary["tasks"].values()) == len(rejects)
    assert "derain" in result.stdout and "24 candidates" in result.stdout


def shown_examples(body: dict) -> list[str]:
    """The example requests listed ("- text" lines) in the user message of an instruct-style request body."""
    user = next(message["content"] for message in body["messages"] if message["role"] == "user")
    return [line[2:] for line in user.splitlines() if line.startswith("- ")]


def test_later_rounds_show_accepted_requests_and_each_call_its_persona_and_register(tmp_path):
    bodies: list[dict] = []

    def recording(body: dict) -> str:
        bodies.append(body)
        return default_reply(body)

    tasks = ("derain", "denoise")
    args = ("--tasks", ",".join(tasks), "--per-task", "15", "--style", "instruct", "--generated-per-prompt", "2")
    with ChatServer(reply=recording) as server:
        result = run_cli(*generate_args(server.url, tmp_path, *args))
        sent = {record["fingerprint"] for record in server.log}
    assert result.returncode == 0, result.stderr
    assert {fingerprint(body) for body in bodies} == sent, "every request that reached the server was recorded"
    rows = pq.read_table(tmp_path / "candidates.parquet").to_pylist()
    assert json.loads((tmp_path / "summary.json").read_text())["rounds"] >= 2

    # A call's sampling seed travels in its body and in its candidates' rows, which tie a body to its call.
    calls = {(row["seed"], row["task"]): row for row in rows}
    by_seed = {body["seed"]: body for body in bodies}
    assert len(by_seed) == len(bodies), "call seeds must be distinct to tell the calls apart"
    assert {seed for seed, _ in calls} <= set(by_seed)
    seeds = {task: set(get_task(task).seeds) for task in tasks}
    accepted_texts = {row["text"] for row in rows}
    for body in bodies:
        assert set(shown_examples(body)) <= set().union(*seeds.values(), accepted_texts), "an example from nowhere"

    templates = load_templates()
    later_calls = 0
    for (seed, task), row in calls.items():
        body, round_number = by_seed[seed], row["round"]
        sent_text = "\n".join(message["content"] for message in body["messages"])
        call = (task, row["call_index"])
        assert [name for name in templates.personas if name in sent_text] == [row["persona"]], call
        assert [cue for cue in templates.registers if cue in sent_text] == [row["register"]], call
        earlier = {other["text"] for other in rows if other["task"] == task and other["round"] < round_number}
        shown = shown_examples(body)
        from_earlier = [text for text in shown if text in earlier]
        assert len(from_earlier) == min(2, len(earlier)), (call, shown, earlier)
        assert set(shown) - set(from_earlier) <= seeds[task], "the other examples are the task's registry seeds"
        later_calls += bool(round_number >= 1 and from_earlier)
    assert later_calls >= 2, "the run must have later-round calls that show accepted requests"


def test_same_seed_same_candidates_and_a_rerun_sends_nothing(server, tmp_path):
    args = ("--tasks", "denoise,lowlight", "--per-task", "10", "--seed", "7")
    assert run_cli(*generate_args(server.url, tmp_path / "a", *args)).returncode == 0
    assert run_cli(*generate_args(server.url, tmp_path / "b", *args)).returncode == 0
    assert table_without_times(tmp_path / "a/candidates.parquet") == table_without_times(
        tmp_path / "b/candidates.parquet"
    )
    sent = len(server.log)
    first = (tmp_path / "a/candidates.parquet").read_bytes()
    rerun = run_cli(*generate_args(server.url, tmp_path / "a", *args))
    assert rerun.returncode == 0 and len(server.log) == sent
    assert (tmp_path / "a/candidates.parquet").read_bytes() == first
    other_seed = run_cli(*generate_args(server.url, tmp_path / "c", "--tasks", "denoise,lowlight", "--per-task", "10"))
    assert other_seed.returncode == 0
    assert table_without_times(tmp_path / "c/candidates.parquet") != table_without_times(
        tmp_path / "a/candidates.parquet"
    )


def start_generation(url: str, out: Path) -> subprocess.Popen:
    args = generate_args(url, out, "--tasks", "deblur,dehaze,enhance", "--per-task", "40", "--concurrency", "3")
    return subprocess.Popen(
        [sys.executable, "-m", "instructir", *args],
        cwd=REPO,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=listen_to_ctrl_c,
    )


def listen_to_ctrl_c() -> None:
    """Undo an inherited SIG_IGN: a harness that runs the suite in the background ignores SIGINT, and a Python
    child that starts with SIGINT ignored never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for_successes(server: ChatServer, count: int, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while server.count(status=200) < count:
        assert time.monotonic() < deadline, "the generation never got going"
        time.sleep(0.01)


@pytest.mark.slow
def test_sigkill_mid_run_then_the_same_command_resumes_without_repeating_calls(tmp_path):
    with ChatServer(delay=0.05) as server:
        process = start_generation(server.url, tmp_path / "run")
        wait_for_successes(server, 10)
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed_at = len(server.log)
        done = cached_keys(tmp_path / "run/cache.sqlite")
        assert done and not (tmp_path / "run/candidates.parquet").exists()

        resumed = start_generation(server.url, tmp_path / "run")
        _, stderr = resumed.communicate(timeout=120)
        assert resumed.returncode == 0, stderr
        repeated = [r for r in server.log[killed_at:] if r["fingerprint"] in done]
        assert repeated == [], "a call that had completed was sent again"

        reference = start_generation(server.url, tmp_path / "reference")
        reference.communicate(timeout=120)
    resumed_table = table_without_times(tmp_path / "run/candidates.parquet")
    assert resumed_table == table_without_times(tmp_path / "reference/candidates.parquet")
    assert resumed_table.num_rows == 120


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_keeps_what_was_done(tmp_path):
    with ChatServer(delay=0.05) as server:
        process = start_generation(server.url, tmp_path)
        wait_for_successes(server, 10)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 130
        assert "run the same command to resume" in stderr.decode()
        assert len(cached_keys(tmp_path / "cache.sqlite")) >= 5
        again = start_generation(server.url, tmp_path)
        again.communicate(timeout=120)
        assert again.returncode == 0


def test_the_api_key_is_never_written_anywhere(tmp_path):
    secret = "sk-test-1234567890-secret"
    with ChatServer(api_key=secret) as server:
        result = run_cli(
            *generate_args(server.url, tmp_path, "--tasks", "denoise", "--per-task", "5"), OPENAI_API_KEY=secret
        )
    assert result.returncode == 0, result.stderr
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert {p.name for p in written} >= {"candidates.parquet", "summary.json", "cache.sqlite"}
    for path in written:
        assert secret.encode() not in path.read_bytes(), path
    assert secret not in result.stdout + result.stderr


def test_a_bad_key_exits_non_zero_and_says_what_to_do(tmp_path):
    with ChatServer(api_key="right") as server:
        result = run_cli(*generate_args(server.url, tmp_path, "--tasks", "denoise"), OPENAI_API_KEY="wrong")
    assert result.returncode == 2
    assert "rejected the API key" in result.stderr and "Traceback" not in result.stderr


def test_an_unknown_task_is_refused_before_any_call(server, tmp_path):
    result = run_cli(*generate_args(server.url, tmp_path, "--tasks", "denoise,dejpeg"))
    assert result.returncode == 2
    assert "dejpeg" in result.stderr and "choose from" in result.stderr
    assert server.log == []


def test_an_unreachable_endpoint_exits_non_zero(tmp_path):
    result = run_cli(*generate_args("http://127.0.0.1:9/v1", tmp_path, "--max-retries", "1", "--tasks", "denoise"))
    assert result.returncode == 2 and "cannot reach the endpoint" in result.stderr


def test_garbage_replies_are_counted_and_the_task_gives_up_at_its_call_limit(tmp_path):
    def chatter(body: dict) -> str:
        return "Sure! Here are some requests:\nI hope these help!"

    with ChatServer(reply=chatter) as server:
        result = run_cli(
            *generate_args(server.url, tmp_path, "--tasks", "superres", "--per-task", "5", "--max-calls-per-task", "7")
        )
        assert len(server.log) == 7
    assert result.returncode == 0 and "stopped short" in result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())["tasks"]["superres"]
    assert summary["candidates"] == 0 and summary["reached_target"] is False
    assert summary["rejects_by_reason"] == {"preamble_or_chatter": 14}


def planned(mode: str, index: int = 0, pool: tuple[str, ...] = (), **settings):
    """One planned call of the derain task, for a backend that is only a name and a model."""
    from types import SimpleNamespace

    from instructir.prompts.generate import GenerationConfig, plan_call
    from instructir.prompts.templates import load_templates
    from instructir.tasks import get_task

    config = GenerationConfig(style="continue", mode=mode, seed=5, **settings)
    backend = SimpleNamespace(name="local", model="m")
    return plan_call(get_task("derain"), index, 0, list(pool), backend, config, load_templates())


def test_plain_prompts_are_unchanged_so_committed_runs_still_replay_from_their_caches():
    from instructir.prompts.generate import GenerationConfig, plan_call
    from instructir.prompts.templates import load_templates
    from instructir.tasks import get_task

    run = REPO / "corpus" / "runs" / "seed-0003"
    settings = json.loads((run / "summary.json").read_text())["config"]
    row = next(r for r in pq.read_table(run / "candidates.parquet").to_pylist() if r["round"] == 0)
    config = GenerationConfig(per_task=400, seed=3, style="continue", seeds_per_prompt=4, generated_per_prompt=1)
    assert settings["seed"] == 3 and settings["seeds_per_prompt"] == 4 and settings["generated_per_prompt"] == 1
    from types import SimpleNamespace

    backend = SimpleNamespace(name=row["backend"], model=row["model"])
    call = plan_call(get_task(row["task"]), row["call_index"], 0, [], backend, config, load_templates())
    assert call.key == row["fingerprint"] and call.attributes == {}


def test_attribute_prompts_carry_the_drawn_situation_and_rewrites_their_source():
    from instructir.tasks import get_task

    task = get_task("derain")
    attributed = [planned("attributes", i) for i in range(6)]
    for call in attributed:
        prompt = "\n".join(text for _, text in call.request.messages)
        assert call.attributes["situation"] in task.situations and call.attributes["situation"] in prompt
        assert call.attributes["subject"] in prompt and call.attributes["channel"] in prompt
    assert len({c.attributes["situation"] for c in attributed}) > 1, "situations must vary between calls"
    assert planned("attributes", 3).key == attributed[3].key, "a call is fixed by the run seed and its index"
    pool = ("the rain ruined my wedding photo, remove it",)
    rewrites = [planned("rewrite", i, pool) for i in range(8)]
    for call in rewrites:
        assert call.attributes["source"] in (*task.seeds, *pool)
        assert f'"{call.attributes["source"]}"' in call.request.messages[-1][1]
    assert planned("plain").attributes == {}


def test_a_users_examples_replace_the_seeds_shown_for_their_task():
    from instructir.tasks import get_task

    mine = (("derain", "raindrops all over my lens, wipe them"), ("derain", "storm streaks everywhere pls fix"))
    call = planned("plain", examples=mine, seeds_per_prompt=2, generated_per_prompt=0)
    shown = call.request.messages[-1][1]
    assert all(text in shown for _, text in mine)
    assert not any(seed in shown for seed in get_task("derain").seeds)
    other = planned("plain", examples=(("denoise", "less grain"),), seeds_per_prompt=2, generated_per_prompt=0)
    assert "less grain" not in other.request.messages[-1][1], "examples of another task are not shown"


def test_generate_cli_writes_mode_columns_and_refuses_a_bad_mode_or_examples_file(server, tmp_path):
    examples = tmp_path / "mine.jsonl"
    examples.write_text('{"text": "raindrops on my lens, wipe them", "task": "derain"}\n')
    out = tmp_path / "run"
    args = ("--tasks", "derain", "--per-task", "6", "--mode", "attributes", "--examples", str(examples))
    result = run_cli(*generate_args(server.url, out, *args))
    assert result.returncode == 0, result.stderr
    rows = pq.read_table(out / "candidates.parquet").to_pylist()
    assert {r["mode"] for r in rows} == {"attributes"}
    assert all(json.loads(r["attributes"])["situation"] for r in rows)
    assert json.loads((out / "summary.json").read_text())["config"]["examples"] == 1
    bad = run_cli(*generate_args(server.url, tmp_path / "b", "--mode", "poetry"))
    assert bad.returncode == 2 and "unknown generation mode 'poetry'" in bad.stderr
    (tmp_path / "broken.jsonl").write_text('{"text": "x", "task": "cooking"}\n')
    broken = run_cli(*generate_args(server.url, tmp_path / "c", "--examples", str(tmp_path / "broken.jsonl")))
    assert broken.returncode == 2 and "unknown task 'cooking'" in broken.stderr


def test_the_complete_style_is_a_plain_list_for_a_base_model_to_continue_in_plain_mode_only():
    from instructir.prompts.generate import GenerationConfig
    from instructir.prompts.templates import build_messages

    templates = load_templates()
    examples = ["get the rain off this street shot", "raindrops all over my holiday pic, fix?"]
    messages = build_messages(templates, "complete", "remove rain streaks", examples, 5, "a teen", "short")
    assert len(messages) == 1 and messages[0][0] == "assistant"
    document = messages[0][1]
    assert "remove rain streaks" in document.splitlines()[0]
    assert document.endswith("- get the rain off this street shot\n- raindrops all over my holiday pic, fix?\n-")
    with pytest.raises(ValueError, match="plain-mode prompts only"):
        build_messages(templates, "complete", "remove rain streaks", examples, 5, "a teen", "short", "rewrite")
    config = GenerationConfig(style="complete")
    assert config.stop_strings == ("\n\n",) and config.reply_tokens == 96


def test_with_seeds_a_call_draws_from_the_users_examples_and_the_registry_seeds():
    from instructir.prompts.generate import GenerationConfig

    task = get_task("derain")
    mine = (("derain", "rain all over my holiday pic, fix?"), ("dehaze", "so foggy"))
    assert GenerationConfig(examples=mine).shown_examples(task) == ("rain all over my holiday pic, fix?",)
    both = GenerationConfig(examples=mine, examples_with_seeds=True).shown_examples(task)
    assert both == ("rain all over my holiday pic, fix?", *task.seeds)
    assert GenerationConfig(examples_with_seeds=True).shown_examples(get_task("deblur")) == get_task("deblur").seeds
