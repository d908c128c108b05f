"""Any OpenAI-compatible Chat Completions endpoint: OpenAI itself, vLLM, Ollama, a llama.cpp server.

Calls run concurrently up to a limit, under optional requests- and tokens-per-minute limits. Transient
failures (429, 5xx, timeouts, dropped connections, malformed or empty replies) are retried with exponential
backoff and jitter, honouring Retry-After; a rejected key or an unknown model stops the run at once.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone

import openai

from instructir.prompts.llm import BackendError, ChatRequest, Completion, Failure, OnResults, Outcome
from instructir.prompts.ratelimit import RateLimiter

DEFAULT_MODEL = "gpt-4o-mini"


class _Retry(Exception):
    """An attempt failed in a way another attempt may fix."""

    def __init__(self, reason: str, message: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.wait = wait


class OpenAIBackend:
    """Chat Completions over HTTP with concurrency, rate limits, retries and clear fatal errors."""

    name = "openai"
    batch_size = 1

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 16,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        timeout: float = 60.0,
        max_retries: int = 6,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more, got {max_retries}")
        self.model = model
        self.base_url = base_url
        self.concurrency = concurrency
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._rng = rng or random.Random(0)
        self._api_key = _read_api_key(api_key_env, base_url)

    def run(self, requests: Sequence[ChatRequest], on_results: OnResults) -> None:
        """Complete every request concurrently; raise BackendError when the endpoint cannot serve any."""
        if requests:
            asyncio.run(self._run(requests, on_results))

    async def _run(self, requests: Sequence[ChatRequest], on_results: OnResults) -> None:
        client = openai.AsyncOpenAI(base_url=self.base_url, api_key=self._api_key, max_retries=0, timeout=self.timeout)
        limiter = RateLimiter(self.requests_per_minute, self.tokens_per_minute)
        gate = asyncio.Semaphore(self.concurrency)

        async def one(index: int, request: ChatRequest) -> None:
            async with gate:
                outcome = await self._complete(client, limiter, request)
            on_results([(index, outcome)])

        tasks = [asyncio.create_task(one(i, request)) for i, request in enumerate(requests)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await client.close()

    async def _complete(self, client: openai.AsyncOpenAI, limiter: RateLimiter, request: ChatRequest) -> Outcome:
        failed: list[str] = []
        last = _Retry("no_attempt", "no attempt was made")
        for attempt in range(self.max_retries + 1):
            estimate = _estimate_tokens(request)
            await limiter.acquire(estimate)
            try:
                completion = await self._attempt(client, request, tuple(failed))
            except _Retry as retry:
                last = retry
                failed.append(retry.reason)
                if attempt < self.max_retries:
                    await asyncio.sleep(retry.wait if retry.wait is not None else self._backoff(attempt))
                continue
            limiter.settle(estimate, completion.prompt_tokens + completion.completion_tokens)
            return completion
        if all(reason == "connection_error" for reason in failed):
            raise BackendError(
                f"cannot reach the endpoint {self.base_url or 'https://api.openai.com/v1'} "
                f"after {len(failed)} attempts ({last}). Check --base-url and that the server is running."
            )
        return Failure(reason=last.reason, message=str(last), failed_attempts=tuple(failed))

    async def _attempt(self, client: openai.AsyncOpenAI, request: ChatRequest, failed: tuple[str, ...]) -> Completion:
        start = time.monotonic()
        try:
            response = await client.chat.completions.create(
                model=self.model,
                messages=request.message_dicts(),
                temperature=request.temperature,
                top_p=request.top_p,
                max_tokens=request.max_tokens,
                seed=request.seed,
                stop=list(request.stop) or None,
            )
        except (openai.AuthenticationError, openai.PermissionDeniedError) as error:
            raise BackendError(
                f"the endpoint rejected the API key (HTTP {error.status_code}). Put a valid key in the "
                "environment variable named by --api-key-env (default OPENAI_API_KEY)."
            ) from None
        except openai.NotFoundError:
            raise BackendError(
                f"model {self.model!r} was not found at {self.base_url or 'the OpenAI API'} (HTTP 404). "
                "Check --model and --base-url (it usually ends in /v1)."
            ) from None
        except openai.RateLimitError as error:
            raise _Retry("rate_limited", str(error), _retry_after(error.response.headers)) from None
        except openai.APITimeoutError:
            raise _Retry("timeout", f"no reply within {self.timeout} s") from None
        except openai.APIConnectionError as error:
            raise _Retry("connection_error", str(error)) from None
        except openai.APIStatusError as error:
            raise _Retry(f"http_{error.status_code}", str(error), _retry_after(error.response.headers)) from None
        except (openai.APIResponseValidationError, json.JSONDecodeError, UnicodeDecodeError) as error:
            raise _Retry("malformed_response", str(error)) from None
        return _to_completion(response, time.monotonic() - start, failed)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter."""
        return self._rng.uniform(0, min(self.backoff_max, self.backoff_base * 2**attempt))


def _to_completion(response: object, seconds: float, failed: tuple[str, ...]) -> Completion:
    choices = getattr(response, "choices", None)
    if not choices:
        raise _Retry("no_choices", "the reply had no choices")
    content = choices[0].message.content if choices[0].message else None
    if not content or not content.strip():
        raise _Retry("empty_reply", "the reply was empty")
    usage = getattr(response, "usage", None)
    return Completion(
        content=content,
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        finish_reason=str(choices[0].finish_reason or "stop"),
        raw=response.model_dump_json(),
        seconds=seconds,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        failed_attempts=failed,
    )


def _read_api_key(env_name: str, base_url: str | None) -> str:
    key = os.environ.get(env_name, "")
    if key:
        return key
    if base_url is None:
        raise BackendError(
            f"no API key: set the environment variable {env_name} (or name another with --api-key-env), "
            "or point --base-url at a local server that needs none."
        )
    return "not-needed"


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked us to wait, from Retry-After-Ms or Retry-After (seconds or an HTTP date)."""
    if "retry-after-ms" in headers:
        try:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _estimate_tokens(request: ChatRequest) -> int:
    """A rough prompt size (four characters a token) plus the reply budget, for the token limit."""
    characters = sum(len(content) for _, content in request.messages)
    return characters // 4 + request.max_tokens
