"""Inference speed and memory of the paper-size InstructIR: 512x512 on the CPU, tiled 4096x4096, 1024x1024 on CUDA.

Targets:
1. A 512x512 image through ``restore_image`` with InstructIR() (15.8 M parameters) on this CPU in <= 3 s
   (median of 3 after one warm-up).
2. A 4096x4096 image, tiled automatically (512 px tiles on CPU), within 8 GiB peak RSS. Optional (``--big``):
   it takes minutes on 2 cores. It runs in a child process so the peak RSS is that restore's alone.
3. On CUDA: 1024x1024 in bf16 in <= 20 ms (network pass on a GPU tensor, torch.cuda.synchronize around it,
   median of 10 after warm-up); the end-to-end ``restore_image`` time (host copies included) is reported too.

Weights are random (speed does not depend on them). Usage: python bench/bench_restore.py [--big] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np
import torch
from common import print_table, write_results

from instructir.model import InstructIR
from instructir.model.restore import auto_tile, default_bf16, restore_image

GIB = 1024**3


def setup(device: str, seed: int = 0) -> tuple[InstructIR, torch.Tensor]:
    """The paper-size model on ``device`` and one unit instruction vector."""
    torch.manual_seed(seed)
    model = InstructIR().eval().to(device=device, memory_format=torch.channels_last)
    embedding = torch.nn.functional.normalize(torch.randn(1, 256), dim=1)
    return model, embedding


def device_name(device: str) -> str:
    """The card's name, or the CPU thread count."""
    return torch.cuda.get_device_name() if device == "cuda" else f"CPU, {torch.get_num_threads()} threads"


def time_restore(
    model: InstructIR, embedding: torch.Tensor, side: int, device: str, repeats: int, bf16: bool | None = None
) -> list[float]:
    """Seconds of ``repeats`` end-to-end restores of a side x side image, after one warm-up."""
    image = np.random.default_rng(0).random((side, side, 3), dtype=np.float32)
    restore_image(model, embedding, image, device=device, bf16=bf16)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        restore_image(model, embedding, image, device=device, bf16=bf16)
        seconds.append(time.perf_counter() - start)
    return seconds


def time_cuda_forward(model: InstructIR, embedding: torch.Tensor, side: int, repeats: int = 10) -> list[float]:
    """Seconds of bf16 network passes on a GPU-resident side x side image, synchronised."""
    image = torch.rand(1, 3, side, side, device="cuda").contiguous(memory_format=torch.channels_last)
    vector = embedding.cuda()
    seconds = []
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        for index in range(repeats + 3):
            torch.cuda.synchronize()
            start = time.perf_counter()
            model(image, vector)
            torch.cuda.synchronize()
            if index >= 3:
                seconds.append(time.perf_counter() - start)
    return seconds


def big_child(side: int, device: str) -> None:
    """Run in a child process: restore one side x side image (auto-tiled) and print seconds and peak memory."""
    model, embedding = setup(device)
    image = np.random.default_rng(0).random((side, side, 3), dtype=np.float32)
    start = time.perf_counter()
    out = restore_image(model, embedding, image, device=device)
    seconds = time.perf_counter() - start
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result = {"seconds": seconds, "peak_rss": peak_rss, "tile": auto_tile(side, side, device), "shape": out.shape}
    if device == "cuda":
        result["peak_gpu"] = torch.cuda.max_memory_allocated()
    print("RESULT " + json.dumps(result))


def measure_big(side: int, device: str) -> dict[str, Any]:
    """Launch ``big_child`` and read its line."""
    command = [sys.executable, __file__, "--child-big", str(side), "--device", device]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"the {side}x{side} child failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return json.loads(lines[-1].split(" ", 1)[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--big", action="store_true", help="Also restore a tiled 4096x4096 image (slow on a CPU).")
    parser.add_argument("--big-side", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child-big", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_big:
        big_child(args.child_big, args.device)
        return
    print(f"load average {os.getloadavg()[0]:.2f}: other work on the machine skews timings")
    rows: list[dict[str, Any]] = []
    context: dict[str, Any] = {}

    model, embedding = setup("cpu")
    default = "bf16" if default_bf16(torch.device("cpu")) else "fp32"
    for precision, bf16 in (("fp32 (baseline)", False), (f"default ({default})", None)):
        seconds = time_restore(model, embedding, 512, "cpu", args.repeats, bf16)
        median = statistics.median(seconds)
        rows.append(
            {
                "case": f"512x512 restore_image, {precision}",
                "device": device_name("cpu"),
                "median": f"{median:.3f} s",
                "runs": ", ".join(f"{value:.3f}" for value in seconds),
                "target": "<= 3 s" if bf16 is None else "",
                "met": ("yes" if median <= 3.0 else "NO") if bf16 is None else "",
            }
        )
    context["cpu_512_seconds"] = round(median, 4)

    if args.device == "cuda":
        model, embedding = setup("cuda")
        forward = statistics.median(time_cuda_forward(model, embedding, 1024))
        end_to_end = statistics.median(time_restore(model, embedding, 1024, "cuda", 10))
        met = "yes" if forward <= 0.020 else "NO"
        card = device_name("cuda")
        rows.append(
            {
                "case": "1024x1024 network pass, bf16",
                "device": card,
                "median": f"{forward * 1000:.2f} ms",
                "runs": "10",
                "target": "<= 20 ms",
                "met": met,
            }
        )
        rows.append(
            {
                "case": "1024x1024 restore_image, bf16 (host copies)",
                "device": card,
                "median": f"{end_to_end * 1000:.2f} ms",
                "runs": "10",
                "target": "-",
                "met": "-",
            }
        )
        context |= {"cuda_card": card, "cuda_1024_bf16_ms": round(forward * 1000, 3)}
        context["cuda_1024_restore_image_ms"] = round(end_to_end * 1000, 3)

    if args.big:
        big = measure_big(args.big_side, args.device)
        met = "yes" if big["peak_rss"] <= 8 * GIB else "NO"
        peak = f"{big['peak_rss'] / GIB:.2f} GiB RSS"
        if "peak_gpu" in big:
            peak += f", {big['peak_gpu'] / GIB:.2f} GiB GPU"
        rows.append(
            {
                "case": f"{args.big_side}x{args.big_side} tiled ({big['tile']} px tiles)",
                "device": device_name(args.device),
                "median": f"{big['seconds']:.1f} s (one run), {peak}",
                "runs": "1",
                "target": "peak RSS <= 8 GiB",
                "met": met,
            }
        )
        context["big"] = big
    print_table(rows, "restore: paper-size InstructIR (random weights)")
    write_results("restore", rows, **context)


if __name__ == "__main__":
    main()
