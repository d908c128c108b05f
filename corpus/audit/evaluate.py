"""Label precision of a built corpus on the audit set: of the audit rows the corpus keeps (matched by normalised
text and task), the share that are coherent requests with the right label, per half, with 95% Wilson intervals.
The test half is the figure to report; the fit half trained the quality model, so its figure is optimistic.

    python corpus/audit/evaluate.py [instructir/data/instructir-requests/corpus.parquet]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pyarrow.parquet as pq

from instructir.analysis.intent import wilson_interval
from instructir.prompts.rules import normalise

ROOT = Path(__file__).resolve().parents[2]
AUDIT = ROOT / "corpus" / "audit" / "labels.jsonl"
SHIPPED = ROOT / "instructir" / "data" / "instructir-requests" / "corpus.parquet"


def corpus_precision(corpus: list[dict], audit: list[dict]) -> dict[str, dict]:
    """Per audit half: audit rows the corpus holds, how many are right, the precision and its interval."""
    held = {(normalise(row["text"]), row["task"]) for row in corpus}
    result = {}
    for half in ("fit", "test"):
        rows = [r for r in audit if r["split"] == half]
        kept = [r for r in rows if (normalise(r["text"]), r["task"]) in held]
        right = sum(r["right"] for r in kept)
        result[half] = {
            "audit_rows": len(rows),
            "kept": len(kept),
            "right": right,
            "precision": round(right / len(kept), 4) if kept else None,
            "interval_95": [round(x, 4) for x in wilson_interval(right, len(kept))],
            "recall_of_right_rows": round(right / max(sum(r["right"] for r in rows), 1), 4),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path, nargs="?", default=SHIPPED)
    args = parser.parse_args()
    audit = [json.loads(line) for line in AUDIT.read_text(encoding="utf-8").splitlines() if line.strip()]
    print(json.dumps(corpus_precision(pq.read_table(args.corpus).to_pylist(), audit), indent=1))


if __name__ == "__main__":
    main()
