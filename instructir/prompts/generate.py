"""Generate restoration requests for each task, Self-Instruct style, resumably.

Generation runs in rounds. In each round every unfinished task plans a number of calls; call ``i`` of a task
draws its examples (seed requests from the registry and requests accepted in earlier rounds), persona,
register and sampling seed from a generator seeded with (run seed, task id, i). The calls of a round are
independent, so they run concurrently; their replies are cached before parsing; candidates are then accepted
in call order. A re-run therefore replays the same rounds from the cache, sends only the calls that never
completed, and writes the same candidates.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from instructir.io import write_json, write_parquet
from instructir.prompts.cache import ReplyCache
from instructir.prompts.llm import Backend, ChatRequest, Completion, Failure, Outcome, fingerprint
from instructir.prompts.parse import parse_reply
from instructir.prompts.pricing import estimate_cost
from instructir.prompts.rules import FormatRules, check_format, clean_text, normalise
from instructir.prompts.templates import MODES, STYLES, PromptTemplates, build_messages, load_templates
from instructir.tasks import Task

CANDIDATE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.string()),
        ("task", pa.string()),
        ("task_id", pa.int32()),
        ("source", pa.string()),
        ("backend", pa.string()),
        ("model", pa.string()),
        ("fingerprint", pa.string()),
        ("seed", pa.int64()),
        ("temperature", pa.float64()),
        ("top_p", pa.float64()),
        ("created_at", pa.string()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("call_index", pa.int64()),
        ("round", pa.int64()),
        ("style", pa.string()),
        ("persona", pa.string()),
        ("register", pa.string()),
        ("mode", pa.string()),
        ("attributes", pa.string()),
    ]
)
REJECT_SCHEMA = pa.schema(
    [
        ("text", pa.string()),
        ("task", pa.string()),
        ("reason", pa.string()),
        ("duplicate_of", pa.string()),
        ("fingerprint", pa.string()),
    ]
)


@dataclass(frozen=True)
class GenerationConfig:
    """What to generate and how; validated on creation so a bad value fails before any call is made."""

    per_task: int = 50
    seed: int = 0
    style: str = "instruct"
    mode: str = "plain"
    examples: tuple[tuple[str, str], ...] = ()
    examples_with_seeds: bool = False
    seeds_per_prompt: int = 3
    generated_per_prompt: int = 2
    requests_per_call: int = 5
    round_size: int = 64
    temperature: float = 0.9
    top_p: float = 0.95
    max_tokens: int | None = None
    stop: tuple[str, ...] | None = None
    max_calls_per_task: int | None = None
    rules: FormatRules = field(default_factory=FormatRules)

    def __post_init__(self) -> None:
        checks = {
            "per_task": self.per_task >= 1,
            "seeds_per_prompt": self.seeds_per_prompt >= 1,
            "generated_per_prompt": self.generated_per_prompt >= 0,
            "requests_per_call": self.requests_per_call >= 1,
            "round_size": self.round_size >= 1,
            "temperature": 0 <= self.temperature <= 2,
            "top_p": 0 < self.top_p <= 1,
            "max_tokens": self.max_tokens is None or self.max_tokens >= 8,
            "max_calls_per_task": self.max_calls_per_task is None or self.max_calls_per_task >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid generation setting(s): {', '.join(f'{n}={getattr(self, n)!r}' for n in bad)}")
        if self.style not in STYLES:
            raise ValueError(f"unknown prompt style {self.style!r}; choose from {', '.join(STYLES)}")
        if self.mode not in MODES:
            raise ValueError(f"unknown generation mode {self.mode!r}; choose from {', '.join(MODES)}")

    def shown_examples(self, task: Task) -> tuple[str, ...]:
        """The requests a call of ``task`` shows as examples: the user's own for that task, else its seeds (both
        with ``examples_with_seeds``: more variety to draw from when the user has only a few)."""
        own = tuple(text for name, text in self.examples if name == task.name)
        if own and self.examples_with_seeds:
            return own + tuple(seed for seed in task.seeds if seed not in own)
        return own or task.seeds

    @property
    def reply_tokens(self) -> int:
        """The token budget of a reply: by default 96 for the list-continuing styles (later list items drift off
        topic and cost time: 96 instead of 160 gave the same filtered share 1.5x faster) and 160 for instruct."""
        if self.max_tokens is not None:
            return self.max_tokens
        return 160 if self.style == "instruct" else 96

    @property
    def stop_strings(self) -> tuple[str, ...]:
        """Where replies end: by default a blank line in the list-continuing styles: the model has left its list."""
        if self.stop is not None:
            return self.stop
        return () if self.style == "instruct" else ("\n\n",)

    @property
    def call_limit(self) -> int:
        """The most calls one task may make before it gives up on reaching ``per_task``."""
        return self.max_calls_per_task or 20 + 4 * self.per_task


@dataclass(frozen=True)
class PlannedCall:
    """One LLM call, fully determined by the run seed, the task, the call index and the earlier rounds."""

    task: Task
    index: int
    round: int
    persona: str
    register: str
    request: ChatRequest
    key: str
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass
class TaskProgress:
    """What one task has so far: accepted rows, calls planned, and counts for the summary."""

    task: Task
    accepted: list[dict[str, Any]] = field(default_factory=list)
    calls_planned: int = 0
    calls_answered: int = 0
    stats: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)
    rejects: Counter = field(default_factory=Counter)


@dataclass
class GenerationResult:
    """Accepted candidates, rejected lines with reasons, and the per-task summary."""

    candidates: list[dict[str, Any]]
    rejects: list[dict[str, Any]]
    summary: dict[str, Any]


def plan_call(
    task: Task,
    index: int,
    round_number: int,
    pool: Sequence[str],
    backend: Backend,
    config: GenerationConfig,
    templates: PromptTemplates,
) -> PlannedCall:
    """Build call ``index`` of ``task`` from its own random generator, so it never depends on timing."""
    rng = np.random.default_rng([config.seed, task.id, index])
    shown = config.shown_examples(task)
    from_pool = min(config.generated_per_prompt, len(pool))
    from_seeds = min(config.seeds_per_prompt + config.generated_per_prompt - from_pool, len(shown))
    examples = [shown[i] for i in rng.choice(len(shown), size=from_seeds, replace=False)]
    examples += [pool[i] for i in rng.choice(len(pool), size=from_pool, replace=False)] if from_pool else []
    examples = [examples[i] for i in rng.permutation(len(examples))]
    persona = templates.personas[int(rng.integers(len(templates.personas)))]
    register = templates.registers[int(rng.integers(len(templates.registers)))]
    attributes = draw_attributes(task, config.mode, list(shown) + list(pool), templates, rng)
    messages = build_messages(
        templates,
        config.style,
        task.description,
        examples,
        config.requests_per_call,
        persona,
        register,
        config.mode,
        attributes,
    )
    request = ChatRequest(
        messages=messages,
        temperature=config.temperature,
        top_p=config.top_p,
        max_tokens=config.reply_tokens,
        seed=int(rng.integers(0, 2**31 - 1)),
        stop=config.stop_strings,
    )
    return PlannedCall(
        task,
        index,
        round_number,
        persona,
        register,
        request,
        fingerprint(backend.name, backend.model, request),
        attributes,
    )


def draw_attributes(
    task: Task, mode: str, sources: Sequence[str], templates: PromptTemplates, rng: np.random.Generator
) -> dict[str, str]:
    """The situation one call writes about (attributes and rewrite modes): what the photo shows, what went
    wrong, the device, where the person asks and a length; in rewrite mode also the request to restate."""
    if mode == "plain":
        return {}

    def pick(options: Sequence[str]) -> str:
        return options[int(rng.integers(len(options)))]

    attributes = {
        "subject": pick(templates.subjects),
        "situation": pick(task.situations or (f"it needs someone to {task.description}",)),
        "device": pick(templates.devices),
        "channel": pick(templates.channels),
        "length": pick(templates.lengths),
    }
    if mode == "rewrite":
        attributes["source"] = pick(sources)
    return attributes


def calls_for_round(progress: TaskProgress, config: GenerationConfig) -> int:
    """How many calls a task plans next: enough for what it still needs at its yield so far, within limits."""
    needed = config.per_task - len(progress.accepted)
    room = config.call_limit - progress.calls_planned
    if needed <= 0 or room <= 0:
        return 0
    answered = progress.calls_answered
    per_call = len(progress.accepted) / answered if answered else config.requests_per_call
    return max(1, min(config.round_size, room, math.ceil(needed / max(per_call, 0.2))))


def fetch_replies(
    calls: Sequence[PlannedCall],
    backend: Backend,
    cache: ReplyCache,
    on_answer: Any = None,
) -> tuple[dict[str, Completion], dict[str, Failure], set[str]]:
    """Replies for ``calls``: cached ones first, the rest from the backend, each stored the moment it arrives.

    Calls go to the backend in the same fixed groups of ``backend.batch_size`` whatever the cache holds, so a
    batched local model recomputes a lost group exactly as it first ran it. Returns the completions, the
    failures and the keys answered from the cache.
    """
    completions = cache.get_many(call.key for call in calls)
    cached = set(completions)
    size = max(1, backend.batch_size)
    groups = [calls[start : start + size] for start in range(0, len(calls), size)]
    pending = [call for group in groups if any(c.key not in completions for c in group) for call in group]
    failures: dict[str, Failure] = {}

    def on_results(results: list[tuple[int, Outcome]]) -> None:
        done = [(pending[i], outcome) for i, outcome in results]
        new = [(c, o) for c, o in done if isinstance(o, Completion) and c.key not in completions]
        cache.put_many((c.key, backend.name, backend.model, c.request, o) for c, o in new)
        for call, outcome in done:
            if isinstance(outcome, Failure):
                cache.record_failure(call.key, outcome)
                failures[call.key] = outcome
            elif call.key not in completions:
                completions[call.key] = outcome
            if on_answer:
                on_answer(call, outcome)

    if pending:
        backend.run([call.request for call in pending], on_results)
    return completions, failures, cached


def accept_reply(
    call: PlannedCall,
    completion: Completion,
    progress: TaskProgress,
    seen: dict[str, str],
    backend: Backend,
    config: GenerationConfig,
    rejects: list[dict[str, Any]],
) -> None:
    """Parse one reply and accept its candidates that pass the rules and are new; record every other line."""
    parsed = parse_reply(completion.content, truncated=completion.finish_reason == "length")

    def reject(text: str, reason: str, duplicate_of: str | None = None) -> None:
        progress.rejects[reason] += 1
        rejects.append(
            {
                "text": text,
                "task": call.task.name,
                "reason": reason,
                "duplicate_of": duplicate_of,
                "fingerprint": call.key,
            }
        )

    for text, reason in parsed.rejected:
        reject(text, reason)
    for position, raw in enumerate(parsed.candidates):
        text = clean_text(raw)
        key = normalise(text)
        reason = check_format(text, config.rules)
        if reason:
            reject(text, reason)
        elif key in seen:
            reject(text, "copies_seed" if seen[key].startswith("seed:") else "duplicate", seen[key])
        elif len(progress.accepted) >= config.per_task:
            reject(text, "over_quota")
        else:
            row_id = f"{call.task.name}-{call.index:05d}-{position}"
            seen[key] = row_id
            progress.accepted.append(_candidate_row(row_id, text, call, completion, backend, config))


def _candidate_row(
    row_id: str,
    text: str,
    call: PlannedCall,
    completion: Completion,
    backend: Backend,
    config: GenerationConfig,
) -> dict[str, Any]:
    return {
        "id": row_id,
        "text": text,
        "task": call.task.name,
        "task_id": call.task.id,
        "source": "llm",
        "backend": backend.name,
        "model": backend.model,
        "fingerprint": call.key,
        "seed": call.request.seed,
        "temperature": call.request.temperature,
        "top_p": call.request.top_p,
        "created_at": completion.created_at,
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "call_index": call.index,
        "round": call.round,
        "style": config.style,
        "persona": call.persona,
        "register": call.register,
        "mode": config.mode,
        "attributes": json.dumps(call.attributes, sort_keys=True) if call.attributes else None,
    }


def generate_candidates(
    backend: Backend,
    tasks: Sequence[Task],
    config: GenerationConfig,
    cache: ReplyCache,
    templates: PromptTemplates | None = None,
    show_progress: bool = False,
    inline_filter: InlineFilter | None = None,
) -> GenerationResult:
    """Run rounds until every task has ``per_task`` accepted candidates or reaches its call limit.

    With ``inline_filter`` (the filtering cascade), every round ends by filtering all candidates accepted so far,
    so ``per_task`` counts filtered requests and only those feed later prompts as examples.
    """
    templates = templates or load_templates()
    started = time.monotonic()
    progress = {task.name: TaskProgress(task) for task in tasks}
    seen = {normalise(seed): f"seed:{task.name}" for task in tasks for seed in task.seeds}
    rejects: list[dict[str, Any]] = []
    bar = _ProgressBar(show_progress, total=config.per_task * len(tasks))
    round_number = 0
    with bar:
        while True:
            calls = _plan_round(progress.values(), round_number, backend, config, templates)
            if not calls:
                break
            bar.start_round(round_number, len(calls))
            completions, failures, cached = fetch_replies(calls, backend, cache, bar.answered)
            for call in calls:
                task_progress = progress[call.task.name]
                completion = completions.get(call.key)
                _record_call(completion, failures.get(call.key), call.key in cached, task_progress)
                if completion is not None:
                    accept_reply(call, completion, task_progress, seen, backend, config, rejects)
            if inline_filter is not None:
                _apply_filter(inline_filter, progress, rejects)
            bar.candidates(sum(len(p.accepted) for p in progress.values()))
            round_number += 1
    candidates = [row for p in progress.values() for row in p.accepted]
    summary = _summary(progress.values(), backend, config, time.monotonic() - started, round_number)
    return GenerationResult(candidates, rejects, summary)


InlineFilter = Callable[[list[dict[str, Any]]], tuple[list[dict[str, Any]], list[dict[str, Any]]]]


def _apply_filter(inline_filter: InlineFilter, progress: dict[str, TaskProgress], rejects: list[dict]) -> None:
    """Keep only the accepted candidates the filter keeps; record the rest with the filter's reasons."""
    accepted = [row for p in progress.values() for row in p.accepted]
    kept, dropped = inline_filter(accepted)
    kept_ids = {row["id"] for row in kept}
    for p in progress.values():
        p.accepted = [row for row in p.accepted if row["id"] in kept_ids]
    for row in dropped:
        if row["task"] in progress:
            progress[row["task"]].rejects[row["reason"]] += 1
        rejects.append(
            {
                "text": row["text"],
                "task": row["task"],
                "reason": row["reason"],
                "duplicate_of": row.get("duplicate_of"),
                "fingerprint": row.get("fingerprint"),
            }
        )


def _plan_round(
    progress: Any, round_number: int, backend: Backend, config: GenerationConfig, templates: PromptTemplates
) -> list[PlannedCall]:
    calls = []
    for task_progress in progress:
        count = calls_for_round(task_progress, config)
        pool = [row["text"] for row in task_progress.accepted]
        first = task_progress.calls_planned
        calls += [
            plan_call(task_progress.task, first + i, round_number, pool, backend, config, templates)
            for i in range(count)
        ]
        task_progress.calls_planned += count
    return calls


def _record_call(completion: Completion | None, failure: Failure | None, cached: bool, progress: TaskProgress) -> None:
    """Count one call's outcome for the summary; failures and spending count only for calls made in this run."""
    progress.calls_answered += 1
    if completion is None:
        progress.stats["failed_calls"] += 1
        progress.failures.update(failure.failed_attempts if failure else ("no_outcome",))
        return
    progress.stats["prompt_tokens"] += completion.prompt_tokens
    progress.stats["completion_tokens"] += completion.completion_tokens
    if cached:
        progress.stats["cached_calls"] += 1
        return
    progress.failures.update(completion.failed_attempts)
    progress.stats["new_calls"] += 1
    progress.stats["new_prompt_tokens"] += completion.prompt_tokens
    progress.stats["new_completion_tokens"] += completion.completion_tokens
    progress.stats["call_seconds"] += completion.seconds


def _summary(progress: Any, backend: Backend, config: GenerationConfig, seconds: float, rounds: int) -> dict[str, Any]:
    """Per-task counts, failures and rejects by reason, tokens, speed and cost of this run."""
    tasks = {}
    for p in progress:
        new_tokens = p.stats["new_completion_tokens"]
        tasks[p.task.name] = {
            "candidates": len(p.accepted),
            "target": config.per_task,
            "reached_target": len(p.accepted) >= config.per_task,
            "calls": p.calls_answered,
            "cached_calls": p.stats["cached_calls"],
            "new_calls": p.stats["new_calls"],
            "failed_calls": p.stats["failed_calls"],
            "failures_by_reason": dict(sorted(p.failures.items())),
            "rejects_by_reason": dict(sorted(p.rejects.items())),
            "prompt_tokens": p.stats["prompt_tokens"],
            "completion_tokens": p.stats["completion_tokens"],
            "new_prompt_tokens": p.stats["new_prompt_tokens"],
            "new_completion_tokens": new_tokens,
            "call_seconds": round(p.stats["call_seconds"], 3),
            "tokens_per_second": round(new_tokens / p.stats["call_seconds"], 2) if p.stats["call_seconds"] else None,
            "estimated_cost_usd": estimate_cost(backend.name, backend.model, p.stats["new_prompt_tokens"], new_tokens),
        }
    new_prompt = sum(t["new_prompt_tokens"] for t in tasks.values())
    new_completion = sum(t["new_completion_tokens"] for t in tasks.values())
    return {
        "backend": backend.name,
        "model": backend.model,
        "config": _config_dict(config),
        "rounds": rounds,
        "wall_seconds": round(seconds, 3),
        "candidates": sum(t["candidates"] for t in tasks.values()),
        "calls": sum(t["calls"] for t in tasks.values()),
        "new_calls": sum(t["new_calls"] for t in tasks.values()),
        "failed_calls": sum(t["failed_calls"] for t in tasks.values()),
        "new_prompt_tokens": new_prompt,
        "new_completion_tokens": new_completion,
        "tokens_per_second": round(new_completion / seconds, 2) if seconds else None,
        "candidates_per_hour": round(sum(t["candidates"] for t in tasks.values()) * 3600 / seconds, 1)
        if seconds
        else None,
        "estimated_cost_usd": estimate_cost(backend.name, backend.model, new_prompt, new_completion),
        "tasks": tasks,
    }


def _config_dict(config: GenerationConfig) -> dict[str, Any]:
    values = {name: getattr(config, name) for name in config.__dataclass_fields__ if name not in ("rules", "examples")}
    values["examples"] = len(config.examples)
    values["rules"] = dict(config.rules.__dict__)
    values["reply_tokens"] = config.reply_tokens
    values["stop_strings"] = list(config.stop_strings)
    return values


class _ProgressBar:
    """A rich progress bar for calls in the current round and candidates overall; silent when disabled."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled = enabled
        self.total = total

    def __enter__(self) -> _ProgressBar:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
            )
            self._bar.start()
            self._candidates = self._bar.add_task("candidates", total=self.total)
            self._calls = self._bar.add_task("calls (round 0)", total=0)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self._bar.stop()

    def start_round(self, number: int, calls: int) -> None:
        if self.enabled:
            self._bar.reset(self._calls, total=calls, description=f"calls (round {number})")

    def answered(self, call: PlannedCall, outcome: Outcome) -> None:
        if self.enabled:
            self._bar.advance(self._calls)

    def candidates(self, count: int) -> None:
        if self.enabled:
            self._bar.update(self._candidates, completed=min(count, self.total))


def write_generation(result: GenerationResult, out_dir: str | Path) -> dict[str, Path]:
    """Write candidates.parquet, rejects.parquet and summary.json into ``out_dir``, each atomically."""
    out = Path(out_dir)
    return {
        "candidates": write_parquet(result.candidates, CANDIDATE_SCHEMA, out / "candidates.parquet"),
        "rejects": write_parquet(result.rejects, REJECT_SCHEMA, out / "rejects.parquet"),
        "summary": write_json(result.summary, out / "summary.json"),
    }
