"""Degradation throughput: the on-the-fly CPU path per task, and the torch twins on a batch (CPU, and GPU if any).

Targets (issue 4):
1. On-the-fly CPU path (crop 256x256, degrade, attach a request; clean images decoded once per worker) at least
   150 samples/s per core averaged over tasks. Measured in one process pinned to one thread; the mean is total
   samples over total time (the harmonic mean of the task rates, the stricter average). A crop-only run in the
   same process is the baseline that shows what the degradation itself costs.
2. Torch twins (noise, Gaussian and motion blur, haze, low light, rain) on a batch of 256x256 images with
   per-sample parameters: at least 5,000 samples/s on an H100/H200; the CPU figure is always reported.

Usage: python bench/bench_degrade.py [--samples-per-task 200] [--batch 64] [--device cpu|cuda]
The on-the-fly path runs pinned to one core (sched_setaffinity) with one torch thread.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np
import torch
from common import print_table, write_results

from instructir.datasets.degradations import DEGRADATIONS
from instructir.datasets.degradations import torch_ops as T
from instructir.datasets.images import random_crop
from instructir.datasets.instructions import InstructionPool
from instructir.datasets.onthefly import OnTheFly
from instructir.datasets.sources import sample_images
from instructir.tasks import all_tasks


def measure_onthefly(samples_per_task: int, seed: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Samples/s of OnTheFly for each task on one core, plus the crop-only baseline."""
    images = [ref.load() for ref in sample_images()]
    pool = InstructionPool.from_corpus()
    rows, total_samples, total_seconds = [], 0, 0.0
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for index in range(samples_per_task):
        random_crop(images[index % len(images)], 256, rng)
    crop_rate = samples_per_task / (time.perf_counter() - start)
    rows.append({"path": "crop only (baseline)", "samples": samples_per_task, "samples/s": round(crop_rate)})
    for task in all_tasks():
        data = OnTheFly(images, pool, tasks=[task], seed=seed, patch=256, per_image=samples_per_task)
        data[0]
        start = time.perf_counter()
        for index in range(samples_per_task):
            data[index]
        seconds = time.perf_counter() - start
        total_samples += samples_per_task
        total_seconds += seconds
        rows.append(
            {
                "path": f"on-the-fly {task.name}",
                "samples": samples_per_task,
                "samples/s": round(samples_per_task / seconds),
            }
        )
    mean = total_samples / total_seconds
    rows.append({"path": "on-the-fly, all tasks", "samples": total_samples, "samples/s": round(mean)})
    verdict = "yes" if mean >= 150 else "NO"
    return rows, {"onthefly_samples_per_second_per_core": round(mean, 1), "target": 150, "met": verdict}


def twin_ops(batch: torch.Tensor, generator: torch.Generator, motion: torch.Tensor) -> dict[str, Any]:
    """One call per torch twin on ``batch`` with per-sample parameters drawn on its device."""
    size = batch.shape[0]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(size, generator=generator, device=batch.device)

    return {
        "gaussian_noise": lambda: T.gaussian_noise(batch, uniform(1, 50), uniform(0, 1) < 0.4, generator),
        "gaussian_blur": lambda: T.gaussian_blur(batch, uniform(0.2, 3), uniform(0.2, 3), uniform(-3.14, 3.14), 21),
        "motion_blur": lambda: T.motion_blur(batch, motion),
        "haze": lambda: T.haze(batch, uniform(0.6, 0.95), uniform(1, 2.5), generator=generator),
        "low_light": lambda: T.low_light(batch, uniform(2, 3), uniform(0.5, 1), uniform(0.03, 0.08), generator),
        "rain": lambda: T.rain(
            batch,
            uniform(20, 60),
            uniform(80, 100),
            uniform(0.3, 0.8),
            density=uniform(0.001, 0.005),
            generator=generator,
        ),
    }


def measure_twins(batch_size: int, device: str, repeats: int, seed: int) -> tuple[list[dict[str, Any]], dict]:
    """Samples/s of each torch twin on a (B, 3, 256, 256) batch; motion kernels come from numpy, as in training."""
    generator = torch.Generator(device=device).manual_seed(seed)
    batch = torch.rand((batch_size, 3, 256, 256), generator=generator, device=device)
    rng = np.random.default_rng(seed)
    motion = T.motion_kernels([DEGRADATIONS["motion_blur"].sample_params(rng) for _ in range(batch_size)], device)
    name = torch.cuda.get_device_name() if device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    rows, total_samples, total_seconds = [], 0, 0.0
    for op_name, op in twin_ops(batch, generator, motion).items():
        op()
        synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            op()
        synchronize(device)
        seconds = time.perf_counter() - start
        total_samples += batch_size * repeats
        total_seconds += seconds
        rate = batch_size * repeats / seconds
        rows.append({"twin": op_name, "device": name, "batch": batch_size, "samples/s": round(rate)})
    mean = total_samples / total_seconds
    rows.append({"twin": "all six, equal shares", "device": name, "batch": batch_size, "samples/s": round(mean)})
    met = ("yes" if mean >= 5000 else "NO") if device.startswith("cuda") else "n/a (target is for an H100/H200)"
    return rows, {"device": name, "twins_samples_per_second": round(mean, 1), "target_gpu": 5000, "met": met}


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples-per-task", type=int, default=200)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}: other work on the machine skews timings")
    cores = sorted(os.sched_getaffinity(0))
    twins, twin_context = measure_twins(args.batch, args.device, args.repeats, args.seed)
    if args.device != "cpu":
        cpu_twins, cpu_context = measure_twins(min(args.batch, 16), "cpu", 2, args.seed)
        twins += cpu_twins
        twin_context["cpu"] = cpu_context
    print_table(twins, f"2. torch twins, 256x256 (target >= 5,000/s on an H100/H200): {twin_context['met']}")
    os.sched_setaffinity(0, cores[:1])
    torch.set_num_threads(1)
    rows, context = measure_onthefly(args.samples_per_task, args.seed)
    print_table(rows, f"1. on-the-fly CPU path, one core (target >= 150/s averaged over tasks): {context['met']}")
    write_results("degrade", rows + twins, onthefly=context, twins=twin_context)


if __name__ == "__main__":
    main()
