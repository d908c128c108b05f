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
from chat_server import ChatServer
from conftest import REPO, cli_env, run_cli

from instructir.prompts.generate import CANDIDATE_SCHEMA


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
