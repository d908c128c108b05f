"""Benchmark: the full `instructir analyze clusters` report at 10,000 and 100,000 requests on this machine.

1. 10,000 real requests (a seeded sample of the shipped corpus, written to JSONL) through the real CLI in a fresh
   process: imports, corpus read, cached embeddings, every metric, UMAP + HDBSCAN, figures and the HTML report.
   Numba gets an empty cache folder (NUMBA_CACHE_DIR), so UMAP's JIT compile is counted. Target <= 90 s.
2. 100,000 requests: the shipped corpus has only 17,765, so the rows are synthetic but realistic: each copies a
   real request (text and task, drawn with replacement) and takes its cached embedding plus a small seeded
   Gaussian perturbation, renormalised (cosine to the source ~0.95). Near-copies of one source can fall in
   different folds, so k-NN/probe accuracy here is optimistic; the run is for timing. Fresh process and empty
   Numba cache as in 1. Target <= 600 s.

Embeddings of the shipped corpus are computed once up front into the usual cache (not timed). The machine may be
shared, so timings are noisy.

    python bench/bench_clusters.py [--rows 10000] [--synthetic 100000] [--noise 0.017] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import REPO, print_table, write_results

from instructir.analysis.clusters import normalise, seeded_sample, write_cluster_report
from instructir.analysis.labelled import LabelledTexts, embed_texts, load_labelled

CORPUS = "instructir-requests"
TARGETS = {"real": 90.0, "synthetic": 600.0}


def synthetic_set(data: LabelledTexts, vectors: np.ndarray, rows: int, noise: float, seed: int):
    """``rows`` copies of real requests (drawn with replacement) with perturbed, renormalised embeddings."""
    rng = np.random.default_rng(seed)
    sources = rng.integers(0, len(data), rows)
    perturbed = normalise(vectors[sources] + rng.normal(0.0, noise, (rows, vectors.shape[1])).astype(np.float32))
    copies = LabelledTexts([data.texts[s] for s in sources], data.labels[sources], f"synthetic-{rows}")
    similarity = float((perturbed * vectors[sources]).sum(1).mean())
    return copies, perturbed, similarity


def run_synthetic_worker(rows: int, noise: float, seed: int, out: Path) -> None:
    """Build the synthetic set and write its report (run in a fresh process by ``main``)."""
    start = time.perf_counter()
    data = load_labelled(CORPUS)
    copies, vectors, similarity = synthetic_set(data, embed_texts(data.texts), rows, noise, seed)
    prepared = time.perf_counter()
    write_cluster_report(copies, vectors, out, seed)
    timing = {"prepare_s": prepared - start, "report_s": time.perf_counter() - prepared, "cosine_to_source": similarity}
    (out / "bench_timing.json").write_text(json.dumps(timing))


def timed_process(command: list[str], numba_cache: str, timeout: float) -> tuple[float, subprocess.CompletedProcess]:
    """Run ``command`` with an empty Numba cache; wall seconds and the finished process."""
    env = {**os.environ, "NUMBA_CACHE_DIR": numba_cache, "PYTHONPATH": str(REPO / "bench")}
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start, result


def result_row(case: str, rows: int, seconds: float, out: Path) -> dict:
    """One table row: wall time against the target, per-step seconds and the headline metrics."""
    metrics = json.loads((out / "metrics.json").read_text())
    steps = metrics["seconds"]
    return {
        "case": case,
        "rows": rows,
        "wall_s": round(seconds, 1),
        "target_s": TARGETS[case],
        "met": seconds <= TARGETS[case],
        **{f"{name}_s": round(value, 1) for name, value in steps.items()},
        "silhouette": round(metrics["silhouette"]["overall"], 3),
        "nmi": round(metrics["kmeans"]["nmi"], 3),
        "knn_acc": round(metrics["knn"]["accuracy"], 3),
        "probe_acc": round(metrics["probe"]["accuracy"], 3),
        "hdbscan_clusters": metrics["hdbscan"]["clusters"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000, help="real requests in case 1")
    parser.add_argument("--synthetic", type=int, default=100_000, help="synthetic requests in case 2 (0: skip)")
    parser.add_argument("--noise", type=float, default=0.017, help="std of the Gaussian added per dimension")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker_out is not None:
        run_synthetic_worker(args.synthetic, args.noise, args.seed, args.worker_out)
        return

    data = load_labelled(CORPUS)
    embed_texts(data.texts, progress=True)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        sample = data.subset(seeded_sample(len(data), args.rows, args.seed))
        jsonl = work / "sample.jsonl"
        lines = (json.dumps({"text": t, "task": int(k)}) for t, k in zip(sample.texts, sample.labels, strict=True))
        jsonl.write_text("\n".join(lines) + "\n", encoding="utf-8")
        out = work / "real"
        command = [sys.executable, "-m", "instructir", "analyze", "clusters", str(jsonl), "--out", str(out)]
        seconds, _ = timed_process([*command, "--seed", str(args.seed), "--no-progress"], str(work / "numba1"), 900)
        rows.append(result_row("real", len(sample), seconds, out))
        print_table(rows[-1:], f"1. {len(sample):,} real requests, CLI in a fresh process (target <= 90 s)")
        if args.synthetic:
            out = work / "synthetic"
            worker = [sys.executable, __file__, "--synthetic", str(args.synthetic), "--noise", str(args.noise)]
            worker += ["--seed", str(args.seed), "--worker-out", str(out)]
            seconds, _ = timed_process(worker, str(work / "numba2"), 1800)
            timing = json.loads((out / "bench_timing.json").read_text())
            rows.append(result_row("synthetic", args.synthetic, seconds, out))
            print_table(rows[-1:], f"2. {args.synthetic:,} synthetic requests, fresh process (target <= 600 s)")
            print(
                f"synthetic rows: real requests with their cached embedding + N(0, {args.noise}^2) per dimension, "
                f"renormalised; mean cosine to the source {timing['cosine_to_source']:.3f}; building them took "
                f"{timing['prepare_s']:.1f} s of the wall time, the report {timing['report_s']:.1f} s."
            )
    print_table(rows, "Cluster report wall time (process start to report written; Numba compile included)")
    write_results("clusters", rows, corpus=CORPUS, seed=args.seed, noise=args.noise)


if __name__ == "__main__":
    main()
