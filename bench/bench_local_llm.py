"""Generated tokens per second of the embedded model (SmolLM2-135M-Instruct GGUF) on this machine's CPU.

Target (issue 2): at least 150 generated tokens/s aggregate on 2 cores. Baseline in the same run: transformers'
own `generate()` in float32 at batch 16 (the configuration measured at 97 tokens/s before this project), on the
same continue-style generation prompts. Load time is reported apart from generation time.

    python bench/bench_local_llm.py [--requests 128] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import time

import torch
from common import print_table, write_results

from instructir.prompts.generate import GenerationConfig, plan_call
from instructir.prompts.local_backend import LocalBackend
from instructir.prompts.templates import load_templates
from instructir.tasks import all_tasks


def make_requests(count: int, max_tokens: int, stop: tuple[str, ...] | None):
    """Real generation calls for every task, as the generator plans them."""
    config = GenerationConfig(style="continue", max_tokens=max_tokens, stop=stop)
    naming = LocalBackend(dtype="float32")
    templates = load_templates()
    tasks = all_tasks()
    per_task = -(-count // len(tasks))
    calls = [plan_call(task, i, 0, [], naming, config, templates) for task in tasks for i in range(per_task)]
    return [call.request for call in calls[:count]]


def hf_generate_baseline(requests, batch_size: int) -> tuple[float, int, float]:
    """transformers' generate() in float32 with left padding; returns load seconds, tokens, generation seconds."""
    backend = LocalBackend(dtype="float32")
    start = time.perf_counter()
    loaded = backend._load()
    load = time.perf_counter() - start
    tokenizer, model = loaded.tokenizer, loaded.model
    generated = 0
    start = time.perf_counter()
    for first in range(0, len(requests), batch_size):
        batch = requests[first : first + batch_size]
        texts = [
            tokenizer.apply_chat_template(r.message_dicts(), continue_final_message=True, tokenize=False) for r in batch
        ]
        encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        torch.manual_seed(first)
        with torch.inference_mode():
            output = model.generate(
                **encoded,
                do_sample=True,
                temperature=batch[0].temperature,
                top_p=batch[0].top_p,
                max_new_tokens=batch[0].max_tokens,
                pad_token_id=tokenizer.pad_token_id,
            )
        new = output[:, encoded.input_ids.shape[1] :]
        for row in new.tolist():
            generated += next((i + 1 for i, t in enumerate(row) if t in loaded.end_ids), len(row))
    return load, generated, time.perf_counter() - start


def ours(requests, batch_size: int, dtype: str) -> tuple[float, int, float]:
    backend = LocalBackend(batch_size=batch_size, dtype=dtype)
    start = time.perf_counter()
    backend._load()
    load = time.perf_counter() - start
    tokens = 0

    def count(results):
        nonlocal tokens
        tokens += sum(outcome.completion_tokens for _, outcome in results)

    start = time.perf_counter()
    backend.run(requests, count)
    return load, tokens, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=128)
    parser.add_argument("--max-tokens", type=int, default=128)
    args = parser.parse_args()
    plain = make_requests(args.requests, args.max_tokens, stop=())
    with_stop = make_requests(args.requests, args.max_tokens, stop=None)
    auto = LocalBackend().dtype
    runs = [
        ("transformers generate(), float32", 16, lambda: hf_generate_baseline(plain, 16)),
        ("instructir local, float32", 64, lambda: ours(plain, 64, "float32")),
        (f"instructir local, {auto}", 64, lambda: ours(plain, 64, "auto")),
        (
            f"instructir local, {auto}, stop at blank line (generation default)",
            64,
            lambda: ours(with_stop, 64, "auto"),
        ),
    ]
    rows = []
    for name, batch, run in runs:
        load, tokens, seconds = run()
        rows.append(
            {
                "engine": name,
                "batch": batch,
                "requests": args.requests,
                "tokens": tokens,
                "load_s": round(load, 1),
                "generate_s": round(seconds, 1),
                "tokens_per_s": round(tokens / seconds, 1),
            }
        )
        print(rows[-1], flush=True)
    for row in rows:
        row["vs_baseline"] = f"{row['tokens_per_s'] / rows[0]['tokens_per_s']:.2f}x"
    print_table(rows, f"embedded model, {args.requests} continue-style requests, up to {args.max_tokens} new tokens")
    write_results("local_llm", rows, threads=torch.get_num_threads(), target_tokens_per_s=150)


if __name__ == "__main__":
    main()
