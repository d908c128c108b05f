"""Benchmark: peak memory of `data build` at 1,000 and 20,000 samples (target: the larger within 1.3x of the smaller).

The builder spills its rows to disk as it makes them and writes each split a batch at a time, so its peak memory
should not grow with the number of samples (issue 18, point 2). Each build runs in a fresh Python process, so
imports and the allocator start the same; that process reports its peak resident set (VmHWM: every page it had
resident, memory-mapped files included), the largest peak of its worker processes (with --num-proc above 1), and
the build's wall seconds (loading the request corpus excluded).
Photos: the first 5 bundled sample photos, all 8 tasks, so --per-image is SAMPLES / 40; --patch 64 by default.

    python bench/bench_build_memory.py [--samples 1000 20000] [--patch 64] [--num-proc 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import print_table, write_results

from instructir.hardware import cpu_description
from instructir.tasks import all_tasks

PHOTOS = 5
TARGET_RATIO = 1.3


def per_image(samples: int) -> int:
    """Samples per photo and task that make ``samples`` in all; refuses counts that do not divide evenly."""
    share, left = divmod(samples, PHOTOS * len(all_tasks()))
    if left or not share:
        raise SystemExit(f"--samples must be a multiple of {PHOTOS * len(all_tasks())} (photos x tasks)")
    return share


def build_once(samples: int, patch: int, num_proc: int, out: Path) -> dict[str, Any]:
    """Build ``samples`` samples into ``out`` in this process; its peak RSS and the build's seconds."""
    from instructir.datasets.build import BuildConfig, build_dataset
    from instructir.datasets.instructions import InstructionPool
    from instructir.datasets.sources import sample_images

    images = list(sample_images())[:PHOTOS]
    config = BuildConfig(per_image=per_image(samples), patch=patch, num_proc=num_proc)
    corpus = InstructionPool.from_corpus()
    start = time.perf_counter()
    result = build_dataset(out, corpus, images, config=config)
    seconds = time.perf_counter() - start
    if result.summary["samples"] != samples:
        raise RuntimeError(f"built {result.summary['samples']} samples, not {samples}")
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
    return {"seconds": round(seconds, 1), "peak_rss_mb": peak_rss_mb(), "workers_peak_rss_mb": workers}


def peak_rss_mb() -> int:
    """This process's peak resident set in MB (VmHWM from /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def measure(samples: int, patch: int, num_proc: int, folder: Path) -> dict[str, Any]:
    """Run one build in a fresh process and return its row of the table."""
    command = [sys.executable, __file__, "--child", str(samples), "--patch", str(patch), "--num-proc", str(num_proc)]
    command += ["--out", str(folder / f"ds-{samples}")]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the {samples}-sample build failed:\n{done.stderr[-3000:]}")
    child = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "samples": samples,
        "photos x tasks x per-image": f"{PHOTOS} x {len(all_tasks())} x {per_image(samples)}",
        "patch": patch,
        "peak RSS MB": child["peak_rss_mb"],
        "workers' peak RSS MB": child["workers_peak_rss_mb"] if num_proc > 1 else "-",
        "seconds": child["seconds"],
        "samples/s": round(samples / child["seconds"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, nargs="+", default=[1_000, 20_000])
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--num-proc", type=int, default=1)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(build_once(args.child, args.patch, args.num_proc, args.out)))
        return
    for samples in args.samples:
        per_image(samples)
    cpu = cpu_description()
    print(f"CPU: {cpu}; load average {os.getloadavg()[0]:.2f} (other work on the machine skews the seconds)")
    with tempfile.TemporaryDirectory(prefix="bench-build-") as folder:
        rows = [measure(samples, args.patch, args.num_proc, Path(folder)) for samples in sorted(args.samples)]
    peaks = [max(row["peak RSS MB"], 0 if args.num_proc == 1 else row["workers' peak RSS MB"]) for row in rows]
    ratio = peaks[-1] / peaks[0]
    met = "yes" if ratio <= TARGET_RATIO else "NO"
    title = (
        f"data build, --num-proc {args.num_proc}, on a {cpu}: peak RSS of {rows[-1]['samples']:,} samples is "
        f"{ratio:.2f}x that of {rows[0]['samples']:,} (target <= {TARGET_RATIO}x): {met}"
    )
    print_table(rows, title)
    write_results("build_memory", rows, cpu=cpu, ratio=round(ratio, 3), target_ratio=TARGET_RATIO, met=met)


if __name__ == "__main__":
    main()
