"""How the embedded LLM does as the judge stage: its verdicts on the hand-labelled rows of corpus/dev/task_labels.jsonl.

Each row carries the generator's label (`task`) and the task a person read in it (`true_task`, or off_topic and the
like when it asks for none). The judge keeps a row when it names the row's own task. Reported: the share of answers
in form (a JSON object naming a task or none), the share of kept rows whose label is right against the share of all
rows, and how many of the rightly labelled rows it keeps. The answers go to a fresh cache, so every call is made.

    python corpus/judge_check.py [--model local]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from pathlib import Path

from instructir.prompts.cache import ReplyCache
from instructir.prompts.filters.judge import LLMJudge, make_judge_backend

LABELS = Path(__file__).resolve().parent / "dev" / "task_labels.jsonl"


def judge_report(rows: list[dict], kept: list[dict], reasons: dict[str, int]) -> dict:
    """The judge's figures from the rows, the rows it kept and its drop reasons."""
    right = [row for row in rows if row["true_task"] == row["task"]]
    kept_right = [row for row in kept if row["true_task"] == row["task"]]
    return {
        "rows": len(rows),
        "answers_in_form": round(1 - reasons.get("judge_unparsable", 0) / len(rows), 3),
        "kept": len(kept),
        "kept_right_share": round(len(kept_right) / len(kept), 3) if kept else None,
        "right_share_of_all": round(len(right) / len(rows), 3),
        "right_rows_kept": f"{len(kept_right)}/{len(right)}",
        "dropped_by_reason": reasons,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="local", help="'local' (the embedded SmolLM2) or a model name")
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--labels", type=Path, default=LABELS)
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.labels.read_text().splitlines() if line.strip()]
    with tempfile.TemporaryDirectory() as folder:
        judge = LLMJudge(make_judge_backend(args.model, args.base_url), ReplyCache(Path(folder) / "judge.sqlite"))
        result = judge.run(rows)
        reasons = dict(sorted(Counter(row["reason"] for row in result.dropped).items()))
        print(json.dumps({"model": judge.backend.model, **judge_report(rows, result.kept, reasons)}, indent=1))


if __name__ == "__main__":
    main()
