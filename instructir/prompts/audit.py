"""Measuring a corpus against a hand-labelled audit set: of the audit rows the corpus keeps, how many are
coherent requests with the right label, per half of the set, with 95% Wilson intervals.

An audit row is a generated candidate read by a person (see corpus/dev/README.md): ``request`` (is it one),
``true_task``, ``right`` (a request whose generator label is right) and ``split`` (fit or test, from a keyed hash
of its text). The test half is the figure to report; a model trained on the fit half makes that half optimistic.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from instructir.analysis.intent import wilson_interval
from instructir.prompts.rules import normalise

_SPLIT_KEY = b"instructir-audit-v1\x00"


def audit_split(text: str) -> str:
    """ "fit" or "test" from a keyed hash of the normalised text: fixed whatever the row order or the sample."""
    digest = hashlib.sha256(_SPLIT_KEY + normalise(text).encode("utf-8")).digest()
    return "test" if digest[0] & 1 else "fit"


def read_audit(path: str | Path) -> list[dict[str, Any]]:
    """The labelled rows of an audit JSONL file."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def held_precision(corpus: list[dict[str, Any]], labelled: list[dict[str, Any]]) -> dict[str, Any]:
    """Of the ``labelled`` rows the corpus holds (same normalised text and task): how many, how many are right,
    the precision with its 95% interval, and the share of the labelled right rows the corpus kept."""
    held = {(normalise(row["text"]), row["task"]) for row in corpus}
    kept = [r for r in labelled if (normalise(r["text"]), r["task"]) in held]
    right = sum(r["right"] for r in kept)
    return {
        "audit_rows": len(labelled),
        "kept": len(kept),
        "right": right,
        "precision": round(right / len(kept), 4) if kept else None,
        "interval_95": [round(x, 4) for x in wilson_interval(right, len(kept))],
        "recall_of_right_rows": round(right / max(sum(r["right"] for r in labelled), 1), 4),
    }


def corpus_precision(corpus: list[dict[str, Any]], audit: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``held_precision`` on each half of the audit set."""
    return {half: held_precision(corpus, [r for r in audit if r["split"] == half]) for half in ("fit", "test")}
