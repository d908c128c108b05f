"""Label precision of a built corpus on the audit set (instructir.prompts.audit.corpus_precision): of the audit
rows the corpus keeps, the share that are coherent requests with the right label, per half, with 95% intervals.

    python corpus/audit/evaluate.py [instructir/data/instructir-requests/corpus.parquet]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pyarrow.parquet as pq

from instructir.prompts.audit import corpus_precision, read_audit

ROOT = Path(__file__).resolve().parents[2]
AUDIT = ROOT / "corpus" / "audit" / "labels.jsonl"
SHIPPED = ROOT / "instructir" / "data" / "instructir-requests" / "corpus.parquet"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path, nargs="?", default=SHIPPED)
    args = parser.parse_args()
    print(json.dumps(corpus_precision(pq.read_table(args.corpus).to_pylist(), read_audit(AUDIT)), indent=1))


if __name__ == "__main__":
    main()
