"""Draw generated rows at random (seeded) from a built corpus, for reading by hand: the corpus's own precision.

Unlike the audit draws (candidates before filtering), this samples what the corpus holds, so its labels measure
the shipped rows directly. The labellers see only audit_id and text (corpus/audit/work/part-s*.jsonl).

    python corpus/audit/sample_corpus.py --size 200 --seed 8 --out corpus/audit/shipped/sample.jsonl \
        [--parts s15 s16 --shared 20]

--parts also writes the labellers' blind files, corpus/audit/work/part-NAME.jsonl: the first --shared drawn rows go
to every part (for the agreement figures), the rest are dealt out in turn, and each part is shuffled.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "corpus" / "audit" / "work"
SHIPPED = ROOT / "instructir" / "data" / "instructir-requests" / "corpus.parquet"


def sample_rows(rows: list[dict], size: int, seed: int) -> list[dict]:
    """``size`` generated rows (not the registry's seeds) drawn without replacement, in drawn order."""
    generated = [row for row in rows if row.get("source") != "seed"]
    picks = np.random.default_rng(seed).choice(len(generated), size=min(size, len(generated)), replace=False)
    keep = ("text", "task", "run", "quality")
    return [{"audit_id": f"s{seed:02d}-{n:04d}", **{k: generated[i].get(k) for k in keep}} for n, i in enumerate(picks)]


def blind_parts(sample: list[dict], parts: int, shared: int, seed: int) -> list[list[dict]]:
    """``sample`` dealt into ``parts`` files of audit_id and text only: the first ``shared`` rows in every file, the
    rest in turn; each file in its own seeded random order, so no position hints at a task."""
    blind = [{"audit_id": row["audit_id"], "text": row["text"]} for row in sample]
    rng = np.random.default_rng(seed)
    dealt = [blind[:shared] + blind[shared + n :: parts] for n in range(parts)]
    return [[part[i] for i in rng.permutation(len(part))] for part in dealt]


def write_jsonl(rows: list[dict], path: Path) -> None:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path, nargs="?", default=SHIPPED)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--parts", nargs="*", default=[], help="names of the labellers' blind files to write")
    parser.add_argument("--shared", type=int, default=20, help="rows every labeller reads")
    args = parser.parse_args()
    sample = sample_rows(pq.read_table(args.corpus).to_pylist(), args.size, args.seed)
    write_jsonl(sample, args.out)
    print(f"{len(sample)} rows -> {args.out}")
    for name, part in zip(args.parts, blind_parts(sample, len(args.parts), args.shared, args.seed), strict=True):
        write_jsonl(part, WORK / f"part-{name}.jsonl")
        print(f"{len(part)} rows -> {WORK / f'part-{name}.jsonl'}")


if __name__ == "__main__":
    main()
