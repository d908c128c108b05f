"""Choose the learned quality stage's threshold for the corpus's precision, not the candidates', on the fit half.

train.py picks the lowest threshold whose out-of-fold precision on candidates reaches the target. The corpus is less
precise than that: semantic deduplication merges the many near-copies of right requests into one row and leaves each
wrong request, which is unique, as it is. This script estimates the corpus's precision out of fold:

1. out-of-fold scores of the fit half's rows, as train.py computes them (same features, C and folds);
2. the pool the stage sees in a build: every row that reached the learned stage (the corpus and the rows the
   stage or the deduplication dropped: ``corpus/build/kept.parquet`` and ``rejects.parquet``, which every build
   writes), scored by the shipped fast model and the full model refitted as train.py fits it;
3. for each threshold, a fit row counts as in the corpus when its out-of-fold score reaches the threshold and no
   pool row above the threshold with a higher score lies within the semantic threshold of it (the deduplication
   keeps the best-scored row of a group; the registry's seeds come first).

The chosen threshold is the lowest on the grid whose estimate reaches --target and that lies above every threshold
whose build failed the shipping gate (--failed-gate 0.85="audit test half 0.881"; recorded in the JSON). The table
also gives the corpus size the threshold would build (greedy deduplication of the pool, seeds first), so size and
precision trade in one view.

    python corpus/quality/corpus_threshold.py [--target 0.92] [--failed-gate T=WHY ...]   # after build_corpus.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from instructir.io import write_json
from instructir.prompts.audit import read_audit
from instructir.prompts.embed import DEFAULT_ENCODER, Embedder
from instructir.prompts.filters.cascade import FilterConfig
from instructir.prompts.filters.quality import QualityRules
from instructir.prompts.filters.quality_model import (
    FAST_FILE,
    fit_quality_model,
    load_quality_model,
    shipped_model_path,
)
from instructir.prompts.filters.semantic import greedy_dedup
from instructir.prompts.lm_embed import LMEmbedder

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import LABELS, fit_inputs

ROOT = Path(__file__).resolve().parents[2]
KEPT = ROOT / "corpus" / "build" / "kept.parquet"  # the last build's corpus and rejects: one pool
REJECTS = ROOT / "corpus" / "build" / "rejects.parquet"
REACHED_THE_STAGE = ("low_quality_prefilter", "low_quality", "semantic_duplicate")
GRID = (0.7, 0.75, 0.8, 0.825, 0.85, 0.875, 0.9, 0.925, 0.95)


def survivors(
    fit_vectors: np.ndarray,
    fit_texts: list[str],
    fit_scores: np.ndarray,
    pool_vectors: np.ndarray,
    pool_texts: list[str],
    pool_scores: np.ndarray,
    similarity: float,
) -> np.ndarray:
    """Whether each fit row would stay through deduplication: no other pool row within ``similarity`` scores higher."""
    blocking = (fit_vectors @ pool_vectors.T >= similarity) & (pool_scores[None, :] > fit_scores[:, None])
    rows = zip(fit_texts, blocking, strict=True)
    return np.array([all(pool_texts[j] == text for j in np.flatnonzero(row)) for text, row in rows], dtype=bool)


def corpus_size(vectors: np.ndarray, scores: np.ndarray, similarity: float) -> int:
    """Rows left after greedy deduplication in score order (seeds carry an infinite score)."""
    duplicate_of, _ = greedy_dedup(vectors[np.argsort(-scores, kind="stable")], similarity)
    return int((duplicate_of < 0).sum())


def choose_corpus_threshold(table: list[dict], target: float, failed: list[float]) -> float | None:
    """The lowest threshold whose estimated corpus precision reaches ``target`` and that lies above every threshold
    whose build failed the gate: a lower threshold keeps what the failed build kept and more, so it fails too."""
    floor = max(failed, default=float("-inf"))
    allowed = [
        row["threshold"] for row in table if (row["corpus_precision"] or 0) >= target and row["threshold"] > floor
    ]
    return min(allowed) if allowed else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.92)
    parser.add_argument(
        "--failed-gate",
        nargs="*",
        default=[],
        metavar="T=WHY",
        help="thresholds whose build failed the shipping gate, and why: the choice skips them",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "corpus_threshold.json")
    args = parser.parse_args()
    failed = {}
    for item in args.failed_gate:
        threshold, _, why = item.partition("=")
        if not why or not threshold.replace(".", "", 1).isdigit():
            parser.error(f"--failed-gate takes THRESHOLD=WHY, as 0.85='test half 0.881'; not {item!r}")
        failed[str(float(threshold))] = why
    embedder, lm_embedder, rules = Embedder(DEFAULT_ENCODER, dtype="float32"), LMEmbedder(), QualityRules()
    similarity = FilterConfig().semantic_threshold

    fit = [row for row in read_audit(LABELS) if row["split"] == "fit"]
    common, lm = fit_inputs(fit, embedder, lm_embedder, rules)
    full, record = fit_quality_model(**common, lm=lm)
    texts, vectors = common["texts"], common["vectors"]
    out_of_fold = np.asarray(record["out_of_fold"])
    right = np.array([row["right"] for row in fit], dtype=bool)
    seen = common["passes_rules"]

    corpus = pq.read_table(KEPT).to_pylist()
    rejects = pq.read_table(REJECTS, columns=["text", "task", "reason"]).to_pylist()
    seeds = [row["text"] for row in corpus if row["source"] == "seed"]
    pool = [row for row in corpus if row["source"] != "seed"]
    pool += [row for row in rejects if row["reason"] in REACHED_THE_STAGE]
    pool_texts = [row["text"] for row in pool]
    pool_vectors = embedder.encode(pool_texts)
    fast = load_quality_model(shipped_model_path(FAST_FILE))
    past = np.flatnonzero(fast.score(pool_vectors, [row["task"] for row in pool], pool_texts) >= fast.threshold)
    past_texts = [pool_texts[i] for i in past]
    scores = full.score(pool_vectors[past], [pool[i]["task"] for i in past], past_texts, lm_embedder.encode(past_texts))
    seed_vectors = embedder.encode(seeds)

    table = []
    for threshold in GRID:
        chosen = scores >= threshold
        kept_vectors = np.r_[seed_vectors, pool_vectors[past][chosen]]
        kept_scores = np.r_[np.full(len(seeds), np.inf), scores[chosen]]
        kept_texts = seeds + [text for text, keep in zip(past_texts, chosen, strict=True) if keep]
        rows = np.flatnonzero(seen & (out_of_fold >= threshold))
        stay = survivors(
            vectors[rows],
            [texts[i] for i in rows],
            out_of_fold[rows],
            kept_vectors,
            kept_texts,
            kept_scores,
            similarity,
        )
        table.append(
            {
                "threshold": threshold,
                "corpus_rows": corpus_size(kept_vectors, kept_scores, similarity),
                "candidates_kept": len(rows),
                "candidate_precision": round(float(right[rows].mean()), 3) if len(rows) else None,
                "fit_rows_in_corpus": int(stay.sum()),
                "corpus_precision": round(float(right[rows][stay].mean()), 3) if stay.any() else None,
            }
        )
    chosen = choose_corpus_threshold(table, args.target, [float(threshold) for threshold in failed])
    result = {"target": args.target, "chosen": chosen, "failed_gate": failed, "table": table}
    header = ("threshold", "corpus rows", "fit kept", "precision", "in corpus", "corpus prec.")
    print(" ".join(f"{name:>12}" for name in header))
    for row in table:
        print(" ".join(f"{row[key]!s:>12}" for key in row))
    skipped = f" (above {max(failed, key=float)}, whose build failed the gate)" if failed else ""
    print(f"lowest threshold whose out-of-fold corpus precision reaches {args.target}{skipped}: {result['chosen']}")
    write_json(result, args.out)


if __name__ == "__main__":
    main()
