"""The embedded SmolLM2 backend, run for real from its wheel: batching, seeds, stops, prefix sharing, caching."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from instructir.prompts.cache import ReplyCache
from instructir.prompts.generate import GenerationConfig, generate_candidates, write_generation
from instructir.prompts.llm import ChatRequest
from instructir.prompts.local_backend import LocalBackend, embedded_model_path
from instructir.tasks import resolve_tasks

pytestmark = pytest.mark.slow

SYSTEM = ("system", "You write short requests that people send to a photo editor.")


def request(user: str, seed: int, temperature: float = 0.9, max_tokens: int = 24, stop=()) -> ChatRequest:
    return ChatRequest((SYSTEM, ("user", user)), temperature, 0.95, max_tokens, seed, tuple(stop))


@pytest.fixture(scope="module")
def backend() -> LocalBackend:
    return LocalBackend(batch_size=4, dtype="float32")


def test_the_model_file_comes_from_the_wheel():
    assert embedded_model_path().name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert embedded_model_path().stat().st_size > 50_000_000


def test_same_seed_same_reply_other_seed_other_reply(backend):
    batch = [request("Ask me to remove the noise from a photo.", seed) for seed in (1, 2, 3, 1)]
    first = backend.generate(batch)
    again = backend.generate(batch)
    assert [c.content for c in first] == [c.content for c in again]
    assert len({c.content for c in first[:3]}) == 3
    for completion in first:
        assert 0 < completion.completion_tokens <= 24
        assert completion.finish_reason in ("stop", "length")
        assert completion.prompt_tokens > 10


def test_a_stop_string_ends_the_reply_before_it(backend):
    batch = [
        request("List five ways to ask for a sharper photo, one per line.", seed, max_tokens=48, stop=["\n"])
        for seed in range(4)
    ]
    for completion in backend.generate(batch):
        assert "\n" not in completion.content
        assert completion.completion_tokens < 48 or completion.finish_reason == "length"


def test_sharing_the_prompt_prefix_does_not_change_greedy_replies(backend):
    users = [
        "Write a request to brighten a dark photo.",
        "Write a request to remove rain from a street photo, politely and at some length please.",
        "Write a request to upscale a tiny picture.",
    ]
    batch = [request(user, seed=0, temperature=0.0, max_tokens=16) for user in users]
    together = [c.content for c in backend.generate(batch)]
    alone = [backend.generate([r])[0].content for r in batch]
    assert together == alone


def test_local_generation_end_to_end_and_a_cached_rerun_never_loads_the_model(tmp_path):
    tasks = resolve_tasks(["dehaze,enhance"])
    config = GenerationConfig(per_task=6, style="continue", max_tokens=64, round_size=8)
    first = generate_candidates(LocalBackend(batch_size=8), tasks, config, ReplyCache(tmp_path / "cache.sqlite"))
    paths = write_generation(first, tmp_path)
    rows = pq.read_table(paths["candidates"]).to_pylist()
    assert sorted({r["task"] for r in rows}) == ["dehaze", "enhance"] and len(rows) == 12
    assert all(r["backend"] == "local" and r["model"].startswith("SmolLM2-135M-Instruct") for r in rows)

    fresh = LocalBackend(batch_size=8)
    second = generate_candidates(fresh, tasks, config, ReplyCache(tmp_path / "cache.sqlite"))
    assert fresh._loaded is None, "a fully cached run loaded the model"
    assert second.candidates == first.candidates
    assert second.summary["new_calls"] == 0 and second.summary["calls"] == first.summary["calls"]


def test_a_wheel_model_that_is_not_installed_names_the_pip_command(monkeypatch):
    from instructir.prompts import local_backend
    from instructir.prompts.llm import BackendError

    missing = ("pip install tiny-base-gguf", "tiny_base_gguf_absent")
    monkeypatch.setitem(local_backend.WHEEL_MODELS, "tiny-base", missing)
    with pytest.raises(BackendError, match=r"model tiny-base is not installed\. Run `pip install tiny-base-gguf`"):
        LocalBackend("tiny-base")


def test_a_base_model_from_its_wheel_continues_a_plain_document_not_a_chat(tmp_path):
    from instructir.prompts.local_backend import _render

    backend = LocalBackend("gemma3-270m", batch_size=4)
    assert backend.path.name == "gemma-3-270m-q4_k_m.gguf" and backend.path.stat().st_size > 200_000_000
    tasks = resolve_tasks(["derain"])
    config = GenerationConfig(per_task=4, style="complete", max_tokens=32, round_size=4, generated_per_prompt=0)
    result = generate_candidates(backend, tasks, config, ReplyCache(tmp_path / "cache.sqlite"))
    tokenizer = backend._load().tokenizer
    assert not tokenizer.chat_template, "Gemma 3 270M is a base model: no chat template"
    first = result.candidates[0]
    prompt = _render(tokenizer, ChatRequest((("assistant", "Requests:\n- fix it\n-"),), 0.0, 1.0, 8, 0))
    assert prompt == f"{tokenizer.bos_token}Requests:\n- fix it\n-", "no chat markup around the document"
    assert len(result.candidates) == 4 and all(row["style"] == "complete" for row in result.candidates)
    assert first["text"] and "<" not in first["text"]
