"""Draw generated rows at random (seeded) from a built corpus, for reading by hand: the corpus's own precision.

Unlike the audit draws (candidates before filtering), this samples what the corpus holds, so its labels measure
the shipped rows directly. The labellers see only audit_id and text (corpus/audit/work/part-s*.jsonl).

    python corpus/audit/sample_corpus.py --size 200 --seed 8 --out corpus/audit/shipped/sample.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "instructir" / "data" / "instructir-requests" / "corpus.parquet"


def sample_rows(rows: list[dict], size: int, seed: int) -> list[dict]:
    """``size`` generated rows (not the registry's seeds) drawn without replacement, in drawn order."""
    generated = [row for row in rows if row.get("source") != "seed"]
    picks = np.random.default_rng(seed).choice(len(generated), size=min(size, len(generated)), replace=False)
    keep = ("text", "task", "run", "quality")
    return [{"audit_id": f"s{seed:02d}-{n:04d}", **{k: generated[i].get(k) for k in keep}} for n, i in enumerate(picks)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path, nargs="?", default=SHIPPED)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    sample = sample_rows(pq.read_table(args.corpus).to_pylist(), args.size, args.seed)
    args.out.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in sample), encoding="utf-8")
    print(f"{len(sample)} rows -> {args.out}")


if __name__ == "__main__":
    main()
