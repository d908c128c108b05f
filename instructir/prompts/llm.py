"""The small interface every LLM backend implements, and the records that cross it.

A backend turns chat requests into completions. It reports final outcomes through a callback as soon as it has
them (one request at a time, or a whole batch at once), so the caller can persist them before anything else
can go wrong.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion to ask for: the messages and every setting that shapes the reply."""

    messages: tuple[tuple[str, str], ...]
    temperature: float
    top_p: float
    max_tokens: int
    seed: int
    stop: tuple[str, ...] = ()

    def message_dicts(self) -> list[dict[str, str]]:
        """The messages in the Chat Completions wire format."""
        return [{"role": role, "content": content} for role, content in self.messages]


@dataclass(frozen=True)
class Completion:
    """A reply as the backend gave it, with its token counts and the raw response kept for audit."""

    content: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    raw: str
    seconds: float
    created_at: str
    failed_attempts: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Failure:
    """A request that did not complete after every retry, with the reason of each attempt."""

    reason: str
    message: str
    failed_attempts: tuple[str, ...]


Outcome = Completion | Failure
OnResults = Callable[[list[tuple[int, Outcome]]], None]


class BackendError(RuntimeError):
    """A failure no retry can fix (bad key, unknown model, unreachable endpoint): the run must stop."""


class Backend(Protocol):
    """What generation needs from an LLM: a name, a model, and a way to run many requests."""

    name: str
    model: str
    batch_size: int

    def run(self, requests: Sequence[ChatRequest], on_results: OnResults) -> None:
        """Complete every request; ``on_results`` receives (index, outcome) pairs, each index exactly once.

        Requests are processed in consecutive groups of ``batch_size``, and a group's outcomes are reported
        together, so a caller that stores each report atomically never holds half a batch.
        """
        ...


def fingerprint(backend: str, model: str, request: ChatRequest) -> str:
    """A stable key for a request: the same backend, model, messages, sampling settings and seed give the same key."""
    payload = {"backend": backend, "model": model, **asdict(request)}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def make_backend(name: str, model: str | None = None, **settings: Any) -> Backend:
    """Build a backend by name: ``openai`` (any OpenAI-compatible endpoint) or ``local`` (the embedded GGUF model).

    ``settings`` are the chosen backend's keyword arguments (``base_url``, ``concurrency``, ``threads``...).
    """
    if name == "openai":
        from instructir.prompts.openai_backend import DEFAULT_MODEL, OpenAIBackend

        return OpenAIBackend(model=model or DEFAULT_MODEL, **settings)
    if name == "local":
        from instructir.prompts.local_backend import LocalBackend

        return LocalBackend(model_path=model, **settings)
    raise ValueError(f"unknown backend {name!r}; choose openai or local")
