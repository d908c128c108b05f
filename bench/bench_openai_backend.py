"""Requests per second of the openai backend against a loopback server that answers in 200 ms.

Target (issue 2): concurrency 64 sustains at least 200 requests/s. The ceiling is concurrency / delay
(320 requests/s at 64 and 0.2 s). Baseline in the same run: the bare openai.AsyncOpenAI client with the same
concurrency and no retries, limits or cache. Ours stores every reply in the SQLite cache as generation does.

    python bench/bench_openai_backend.py [--requests 3000] [--delay 0.2] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import openai
from common import print_table, server_process, write_results

from instructir.prompts.cache import ReplyCache
from instructir.prompts.llm import ChatRequest, Completion, fingerprint
from instructir.prompts.openai_backend import OpenAIBackend


def make_requests(count: int) -> list[ChatRequest]:
    return [
        ChatRequest((("user", f"Write a request to remove noise, number {i}."),), 0.9, 0.95, 64, i)
        for i in range(count)
    ]


async def bare_client(url: str, requests: list[ChatRequest], concurrency: int) -> None:
    client = openai.AsyncOpenAI(base_url=url, api_key="bench", max_retries=0)
    gate = asyncio.Semaphore(concurrency)

    async def one(request: ChatRequest) -> None:
        async with gate:
            await client.chat.completions.create(model="m", messages=request.message_dicts(), seed=request.seed)

    await asyncio.gather(*(one(r) for r in requests))
    await client.close()


def ours(url: str, requests: list[ChatRequest], concurrency: int, cache_path: Path) -> int:
    backend = OpenAIBackend(model="m", base_url=url, concurrency=concurrency)
    cache = ReplyCache(cache_path)
    completed = 0

    def store(results):
        nonlocal completed
        for index, outcome in results:
            assert isinstance(outcome, Completion), outcome
            request = requests[index]
            cache.put(fingerprint("openai", "m", request), "openai", "m", request, outcome)
            completed += 1

    backend.run(requests, store)
    cache.close()
    return completed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    requests = make_requests(args.requests)
    ceiling = args.concurrency / args.delay
    rows = []
    with server_process("--delay", str(args.delay)) as url, tempfile.TemporaryDirectory() as scratch:
        for name, run in (
            ("bare openai.AsyncOpenAI", lambda: asyncio.run(bare_client(url, requests, args.concurrency))),
            ("instructir OpenAIBackend + cache", lambda: ours(url, requests, args.concurrency, Path(scratch) / "c.db")),
        ):
            start = time.perf_counter()
            run()
            seconds = time.perf_counter() - start
            rate = args.requests / seconds
            rows.append(
                {
                    "client": name,
                    "requests": args.requests,
                    "seconds": round(seconds, 2),
                    "requests_per_s": round(rate, 1),
                    "of_ceiling": f"{rate / ceiling:.0%}",
                }
            )
    rows[1]["vs_bare"] = f"{rows[1]['requests_per_s'] / rows[0]['requests_per_s']:.2f}x"
    rows[0]["vs_bare"] = "1.00x"
    print_table(rows, f"loopback server, {args.delay * 1000:.0f} ms per reply, concurrency {args.concurrency}")
    write_results("openai_backend", rows, delay=args.delay, concurrency=args.concurrency, target_requests_per_s=200)


if __name__ == "__main__":
    main()
