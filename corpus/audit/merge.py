"""Merge the labellers' files into corpus/audit/labels.jsonl and write the agreement figures.

Each labeller labelled a disjoint share of the drawn rows plus the same shared rows; a shared row takes the
majority answer (ties: the first labeller's). Every row gets its fit/test split from the keyed hash.

    python corpus/audit/merge.py --labels corpus/audit/work/labels-*.jsonl \
        --drawn corpus/audit/unlabelled.jsonl corpus/audit/unlabelled-2.jsonl corpus/audit/unlabelled-modes.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections import Counter
from pathlib import Path

import numpy as np

from instructir.io import write_json
from instructir.prompts.audit import audit_split, read_audit

AUDIT = Path(__file__).resolve().parent


def is_right(label: dict, task: str) -> bool:
    """A generated row is right when it is a request and its generator label is the task it asks for."""
    return bool(label["request"]) and task in (label["true_task"], label.get("alt_task"))


def fleiss_kappa(ratings: list[list[object]]) -> float | None:
    """Fleiss' kappa for items each rated by the same number of labellers; None when every rating is the same."""
    categories = sorted({str(r) for item in ratings for r in item})
    counts = np.array([[sum(str(r) == c for r in item) for c in categories] for item in ratings], dtype=float)
    raters = counts.sum(1)[0]
    agreement = ((counts * (counts - 1)).sum(1) / (raters * (raters - 1))).mean()
    shares = counts.sum(0) / counts.sum()
    chance = (shares**2).sum()
    if chance == 1:
        return None
    return float((agreement - chance) / (1 - chance))


def agreement(drawn: dict[str, dict], labels: list[dict[str, dict]]) -> dict:
    """Pairwise agreement and Fleiss' kappa on the rows more than one labeller labelled (the same number each)."""
    counts = Counter(audit_id for part in labels for audit_id in part)
    shared = sorted(audit_id for audit_id, n in counts.items() if n > 1)
    if not shared or len({counts[i] for i in shared}) > 1:
        return {"shared_rows": len(shared)}
    answers = {
        "request": lambda label, task: label["request"],
        "true_task": lambda label, task: label["true_task"],
        "right_label": is_right,
    }
    result = {"shared_rows": len(shared), "labellers_per_row": counts[shared[0]]}
    for name, answer in answers.items():
        ratings = [[answer(part[i], drawn[i]["task"]) for part in labels if i in part] for i in shared]
        pairs = [a == b for item in ratings for a, b in itertools.combinations(item, 2)]
        kappa = fleiss_kappa(ratings)
        result[name] = {
            "pairwise_agreement": round(float(np.mean(pairs)), 3),
            "fleiss_kappa": None if kappa is None else round(kappa, 3),
        }
    return result


def majority(answers: list[dict]) -> dict:
    """The most common (request, true_task, alt_task) answer; ties go to the first labeller."""
    keys = [(a["request"], a["true_task"], a.get("alt_task")) for a in answers]
    best = max(Counter(keys).items(), key=lambda item: (item[1], -keys.index(item[0])))[0]
    return {"request": best[0], "true_task": best[1], "alt_task": best[2]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drawn", type=Path, nargs="+", required=True)
    parser.add_argument("--labels", type=Path, nargs="+", required=True)
    parser.add_argument("--out", type=Path, default=AUDIT / "labels.jsonl")
    args = parser.parse_args()
    drawn_rows = [row for path in args.drawn for row in read_audit(path)]
    repeated = sorted({i for i, n in Counter(row["audit_id"] for row in drawn_rows).items() if n > 1})
    if repeated:
        raise SystemExit(f"{len(repeated)} audit ids are in more than one drawn file ({repeated[0]}, ...); redraw one")
    drawn = {row["audit_id"]: row for row in drawn_rows}
    labels = [{row["audit_id"]: row for row in read_audit(path)} for path in args.labels]
    rows = []
    for audit_id, row in drawn.items():
        answers = [part[audit_id] for part in labels if audit_id in part]
        if not answers:
            raise SystemExit(f"{audit_id} has no label; label it or drop it from the drawn files")
        label = majority(answers)
        rows.append(
            {
                **row,
                **label,
                "right": is_right(label, row["task"]),
                "labellers": len(answers),
                "split": audit_split(row["text"]),
            }
        )
    args.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    summary = {
        "rows": len(rows),
        "by_split": dict(Counter(r["split"] for r in rows)),
        "requests": sum(r["request"] for r in rows),
        "right_label": sum(r["right"] for r in rows),
        "by_run": {
            run: {"rows": n, "right": sum(r["right"] for r in rows if r["run"] == run)}
            for run, n in sorted(Counter(r["run"] for r in rows).items())
        },
        "true_task": dict(Counter(r["true_task"] for r in rows)),
        "agreement": agreement(drawn, labels),
    }
    write_json(summary, args.out.with_name("summary.json"))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
