"""LLM judge: the cascade's last and costliest stage, where an LLM names the registry task each row asks for.

The system prompt lists the registry's tasks (name, label, description); a worked example per task (its first
seed request) and one message that asks for no edit come before the row's text as earlier turns, which keeps
even a small model to the answer's form: one JSON object, ``{"task": "deblur"}``, or ``{"task": "none"}``.
Calls are deterministic (temperature 0, a fixed seed, a small token budget) and go through the same machinery as
generation: any backend, its concurrency, rate limits and retries, and the reply cache, each answer committed
the moment it arrives, so a rerun (after a kill, or over more rows) sends no call twice.

Verdicts, each recorded in ``judge_task`` (kept rows have it too):
- the judge names the row's own task: kept;
- it names another task or "none": dropped as ``judge_disagrees``;
- its answer holds no JSON object with a known task: dropped as ``judge_unparsable``, the answer kept in
  ``judge_answer``. A judge that cannot answer in the asked form does not vouch for the row, and the raw
  answers let a user judge the judge;
- the backend gave up on the call after its retries: dropped as ``judge_failed`` with ``judge_error``. Failures
  are not cached, so a rerun asks again.
Rows whose ``source`` is ``seed`` are the registry's own examples of their task: they are kept without a call.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

from instructir.prompts.cache import ReplyCache
from instructir.prompts.filters.stage import Row, StageResult
from instructir.prompts.generate import fetch_replies
from instructir.prompts.llm import Backend, ChatRequest, Completion, Failure, Outcome, fingerprint, make_backend
from instructir.prompts.pricing import estimate_cost
from instructir.prompts.templates import read_template, template_lines
from instructir.tasks import Task, all_tasks

NOT_A_REQUEST = "none"
_NONE_ANSWERS = ("none", "null", "not a request", "no request", "no task", "n/a")


@dataclass(frozen=True)
class JudgePrompt:
    """The judge's texts: the system text (listing the tasks), the user message around a row's text, and
    messages that ask for no edit (shown as examples answered "none")."""

    system: Template
    request: Template
    not_requests: tuple[str, ...]


def load_judge_prompt(folder: str | Path | None = None) -> JudgePrompt:
    """Read judge.txt, judge_request.txt and judge_not_a_request.txt from ``folder``, or the shipped ones."""
    return JudgePrompt(
        Template(read_template("judge.txt", folder)),
        Template(read_template("judge_request.txt", folder)),
        template_lines("judge_not_a_request.txt", folder),
    )


def judge_messages(prompt: JudgePrompt, tasks: Sequence[Task], text: str) -> tuple[tuple[str, str], ...]:
    """The chat that asks for the task of ``text``: the task list, worked examples from the registry, the row."""
    listing = "\n".join(f"- {task.name} ({task.label}): {task.description}" for task in tasks)
    system = prompt.system.substitute(tasks=listing, names=", ".join(task.name for task in tasks))
    examples = [(example, NOT_A_REQUEST) for example in prompt.not_requests]
    examples += [(task.seeds[0], task.name) for task in tasks]
    messages = [("system", system)]
    for example, answer in examples:
        messages += [("user", prompt.request.substitute(text=example)), ("assistant", json.dumps({"task": answer}))]
    return (*messages, ("user", prompt.request.substitute(text=text)))


def _folded(value: str) -> str:
    """Lower case with everything but letters and digits removed: "Low-light enhancement" -> "lowlightenhancement"."""
    return re.sub(r"[^a-z0-9]", "", value.casefold())


def answer_names(tasks: Sequence[Task]) -> dict[str, str]:
    """Every accepted answer, folded, mapped to what it means: a task's name or label to the name, "none" and its
    synonyms to "none"."""
    names = {_folded(alias): NOT_A_REQUEST for alias in _NONE_ANSWERS}
    for task in tasks:
        names[_folded(task.name)] = task.name
        names[_folded(task.label)] = task.name
    return names


def parse_judgement(content: str, tasks: Sequence[Task] | None = None) -> str | None:
    """The task a judge's answer names (a registry name, or "none"), or None when the answer is unusable.

    Every JSON object in the text counts (code fences and chatter around them are ignored); the ``task`` key is
    matched in any case, its value by a task's name or label in any case and punctuation. An answer with no such
    object, an unknown value, or objects that name different tasks is unusable.
    """
    names = answer_names(all_tasks() if tasks is None else tasks)
    decoder = json.JSONDecoder()
    found: set[str | None] = set()
    start = content.find("{")
    while start >= 0:
        try:
            value, end = decoder.raw_decode(content, start)
        except json.JSONDecodeError:
            start = content.find("{", start + 1)
            continue
        if isinstance(value, dict):
            found.update(_named_task(answer, names) for key, answer in value.items() if key.strip().lower() == "task")
        start = content.find("{", end)
    return found.pop() if len(found) == 1 else None


def _named_task(answer: object, names: dict[str, str]) -> str | None:
    if answer is None:
        return NOT_A_REQUEST
    return names.get(_folded(answer)) if isinstance(answer, str) else None


@dataclass(frozen=True)
class JudgeCall:
    """One judge request and its cache key (the fields of a generation call that ``fetch_replies`` reads)."""

    key: str
    request: ChatRequest


@dataclass
class LLMJudge:
    """Ask an LLM which task each row asks for; drop the rows where it names another task or gives no usable answer."""

    backend: Backend
    cache: ReplyCache
    seed: int = 0
    max_tokens: int = 24
    show_progress: bool = False
    prompt: JudgePrompt = field(default_factory=load_judge_prompt)
    name: str = "judge"
    calls: Counter = field(default_factory=Counter)
    attempt_failures: Counter = field(default_factory=Counter)
    _seen: set[str] = field(default_factory=set, repr=False)

    def request(self, text: str) -> ChatRequest:
        """The chat request that asks for the task of ``text``."""
        messages = judge_messages(self.prompt, all_tasks(), text)
        return ChatRequest(messages, temperature=0.0, top_p=1.0, max_tokens=self.max_tokens, seed=self.seed)

    def run(self, rows: list[Row]) -> StageResult:
        """Judge every row but the seeds, asking once per distinct text, and split the rows by the verdicts."""
        per_row = [None if row.get("source") == "seed" else self._call(row["text"]) for row in rows]
        unique = list({call.key: call for call in per_row if call is not None}.values())
        completions, failures = self._answers(unique)
        result = StageResult()
        for row, call in zip(rows, per_row, strict=True):
            if call is None:
                result.kept.append({**row, "judge_task": None})
            elif call.key in completions:
                self._verdict(row, completions[call.key].content, result)
            else:
                reason = failures[call.key].reason if call.key in failures else "no_outcome"
                result.drop(row, "judge_failed", judge_task=None, judge_error=reason)
        return result

    def _call(self, text: str) -> JudgeCall:
        request = self.request(text)
        return JudgeCall(fingerprint(self.backend.name, self.backend.model, request), request)

    def _verdict(self, row: Row, answer: str, result: StageResult) -> None:
        """Keep or drop one row by the judge's answer."""
        task = parse_judgement(answer)
        if task is None:
            result.drop(row, "judge_unparsable", judge_task=None, judge_answer=answer)
        elif task != row["task"]:
            result.drop(row, "judge_disagrees", judge_task=task)
        else:
            result.kept.append({**row, "judge_task": task})

    def _answers(self, calls: list[JudgeCall]) -> tuple[dict[str, Completion], dict[str, Failure]]:
        """Cached answers, then the missing ones from the backend, each stored the moment it arrives.

        Only missing calls go to the backend, in row order and groups of ``batch_size``: a run over more rows
        (generation's per-round filter) never recomputes a cached answer, and a rerun after a kill forms the
        groups the killed run would have sent next.
        """
        cached = self.cache.get_many(call.key for call in calls)
        missing = [call for call in calls if call.key not in cached]
        with _Progress(self.show_progress, len(missing)) as bar:
            fetched, failures, _ = fetch_replies(missing, self.backend, self.cache, bar.advance)
        first_seen = [call.key for call in calls if call.key not in self._seen]
        self._seen.update(first_seen)
        self.calls["calls"] += len(first_seen)
        self.calls["cached_calls"] += sum(key in cached for key in first_seen)
        self.calls["new_calls"] += len(fetched)
        self.calls["failed_calls"] += len(failures)
        for completion in fetched.values():
            self.calls["new_prompt_tokens"] += completion.prompt_tokens
            self.calls["new_completion_tokens"] += completion.completion_tokens
            self.attempt_failures.update(completion.failed_attempts)
        for failure in failures.values():
            self.attempt_failures.update(failure.failed_attempts)
        return {**cached, **fetched}, failures

    def summary(self) -> dict[str, Any]:
        """The judge's settings and calls for summary.json: distinct requests, how many the cache answered, calls
        sent and failed, failed attempts by reason, tokens and cost; over every run of the stage (generation's
        per-round filter runs it each round)."""
        counts = {key: self.calls[key] for key in ("calls", "cached_calls", "new_calls", "failed_calls")}
        tokens = self.calls["new_prompt_tokens"], self.calls["new_completion_tokens"]
        return {
            "backend": self.backend.name,
            "model": self.backend.model,
            "cache": str(self.cache.path),
            "seed": self.seed,
            "max_tokens": self.max_tokens,
            **counts,
            "failed_attempts_by_reason": dict(sorted(self.attempt_failures.items())),
            "new_prompt_tokens": tokens[0],
            "new_completion_tokens": tokens[1],
            "estimated_cost_usd": estimate_cost(self.backend.name, self.backend.model, *tokens),
        }


def judge_backend_choice(model: str, backend: str | None = None) -> tuple[str, str | None]:
    """The backend a judge model runs on and the model argument it takes: "local" (or a .gguf file) means the
    embedded LLM in-process, anything else a model behind an OpenAI-compatible endpoint."""
    local = model == "local" or model.endswith(".gguf")
    name = backend or ("local" if local else "openai")
    if name == "local":
        return name, None if model == "local" else model
    return name, model


def make_judge_backend(
    model: str,
    base_url: str | None = None,
    backend: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    concurrency: int = 16,
    requests_per_minute: float | None = None,
    threads: int | None = None,
) -> Backend:
    """The judge's backend, built as generation builds its own (see ``judge_backend_choice``)."""
    name, argument = judge_backend_choice(model, backend)
    if name == "openai":
        return make_backend(
            "openai",
            argument,
            base_url=base_url,
            api_key_env=api_key_env,
            concurrency=concurrency,
            requests_per_minute=requests_per_minute,
        )
    return make_backend("local", argument, threads=threads)


class _Progress:
    """A rich progress bar over the judge's new calls; silent when disabled or when there is nothing to send."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled = enabled and total > 0
        self.total = total

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("judge"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            self._bar.start()
            self._task = self._bar.add_task("judge", total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._bar.stop()

    def advance(self, call: JudgeCall, outcome: Outcome) -> None:
        if self.enabled:
            self._bar.advance(self._task)
