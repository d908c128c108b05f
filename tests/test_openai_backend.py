"""The OpenAI-compatible backend against a real HTTP server on loopback that misbehaves on purpose."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
from chat_server import ChatServer, fail_always, fail_first

from instructir.prompts.cache import ReplyCache
from instructir.prompts.generate import GenerationConfig, generate_candidates
from instructir.prompts.llm import BackendError, ChatRequest, Completion, Failure
from instructir.prompts.openai_backend import OpenAIBackend
from instructir.prompts.ratelimit import RateLimiter
from instructir.tasks import resolve_tasks


def requests(count: int) -> list[ChatRequest]:
    return [ChatRequest((("user", f"write request {i}"),), 0.9, 0.95, 32, i) for i in range(count)]


def run_all(backend: OpenAIBackend, batch: list[ChatRequest]) -> dict[int, object]:
    outcomes: dict[int, object] = {}

    def collect(results):
        for index, outcome in results:
            assert index not in outcomes, "an outcome was reported twice"
            outcomes[index] = outcome

    backend.run(batch, collect)
    return outcomes


def test_every_fault_is_retried_and_each_request_completes_exactly_once(tmp_path):
    faults = fail_first("429", "500", "slow", "garbage", "empty", "nochoices")
    with ChatServer(faults=faults, slow_seconds=3, retry_after=0.05) as server:
        backend = OpenAIBackend(model="m", base_url=server.url, timeout=0.5, max_retries=8, backoff_base=0.01)
        config = GenerationConfig(per_task=6, requests_per_call=3, round_size=4)
        cache = ReplyCache(tmp_path / "cache.sqlite")
        result = generate_candidates(backend, resolve_tasks(["denoise,dehaze"]), config, cache)
        log = server.log

    successes = Counter(r["fingerprint"] for r in log if r["status"] == 200 and r["fault"] is None)
    assert successes and set(successes.values()) == {1}, "some request completed more than once"
    calls = result.summary["calls"]
    assert calls == len(successes) == cache.count()
    expected = {r: calls for r in ("rate_limited", "http_500", "timeout", "malformed_response", "empty_reply")}
    expected["no_choices"] = calls
    merged = Counter()
    for task in result.summary["tasks"].values():
        merged.update(task["failures_by_reason"])
        assert task["candidates"] == 6
    assert dict(merged) == expected


def test_retry_after_is_honoured(tmp_path):
    with ChatServer(faults=fail_first("429"), retry_after=0.6) as server:
        backend = OpenAIBackend(model="m", base_url=server.url, backoff_base=0.001)
        outcomes = run_all(backend, requests(3))
        log = server.log
    assert all(isinstance(o, Completion) and o.failed_attempts == ("rate_limited",) for o in outcomes.values())
    for key in {r["fingerprint"] for r in log}:
        first, second = sorted(r["t"] for r in log if r["fingerprint"] == key)
        assert second - first >= 0.55


def test_a_request_that_never_succeeds_is_a_counted_failure_not_an_exception():
    with ChatServer(faults=fail_always("500")) as server:
        backend = OpenAIBackend(model="m", base_url=server.url, max_retries=2, backoff_base=0.001)
        outcomes = run_all(backend, requests(2))
        assert server.count(status=500) == 6
    assert all(isinstance(o, Failure) and o.failed_attempts == ("http_500",) * 3 for o in outcomes.values())


def test_concurrency_limit_holds(tmp_path):
    with ChatServer(delay=0.05) as server:
        run_all(OpenAIBackend(model="m", base_url=server.url, concurrency=5), requests(40))
        assert 2 <= server.max_in_flight <= 5


def test_a_rejected_key_stops_at_once_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("MY_KEY", "wrong-key")
    with ChatServer(api_key="right-key") as server:
        backend = OpenAIBackend(model="m", base_url=server.url, api_key_env="MY_KEY", max_retries=5)
        with pytest.raises(BackendError, match=r"rejected the API key.*--api-key-env"):
            run_all(backend, requests(20))
        assert server.count(status=401) <= 20


def test_an_unknown_model_stops_at_once():
    with ChatServer(models={"real-model"}) as server:
        backend = OpenAIBackend(model="no-such-model", base_url=server.url)
        with pytest.raises(BackendError, match="'no-such-model' was not found"):
            run_all(backend, requests(3))


def test_an_unreachable_endpoint_stops_with_advice():
    backend = OpenAIBackend(model="m", base_url="http://127.0.0.1:9/v1", max_retries=1, backoff_base=0.001)
    with pytest.raises(BackendError, match=r"cannot reach the endpoint.*--base-url"):
        run_all(backend, requests(2))


def test_no_key_and_no_base_url_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(BackendError, match="set the environment variable OPENAI_API_KEY"):
        OpenAIBackend()


def test_requests_per_minute_limit_paces_calls():
    async def take(limiter: RateLimiter, count: int, tokens: int = 10) -> float:
        start = time.monotonic()
        for _ in range(count):
            await limiter.acquire(tokens)
        return time.monotonic() - start

    # 1200 per minute = 20 per second with a one-second burst: 40 calls need about one second.
    assert 0.9 <= asyncio.run(take(RateLimiter(requests_per_minute=1200), 40)) < 3
    # 60,000 tokens per minute = 1,000 per second: 30 calls of 100 tokens need about two seconds.
    assert 1.8 <= asyncio.run(take(RateLimiter(tokens_per_minute=60_000), 30, 100)) < 4
    assert asyncio.run(take(RateLimiter(), 1000)) < 0.5
