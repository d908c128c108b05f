"""Write a dataset whose train split is one built dataset's plus extra rows of some tasks from another.

The default model's third stage trains on dataset-ft with the deblur rows of dataset-blur added, so a third of its
crops are blurred instead of a seventh. Validation and test come from the first dataset unchanged. The added rows'
ids get a prefix: on-the-fly training seeds each row's damage from its id, and the two builds share ids. Build both
with the same seed: the seed decides which photos are held out, and a row from one of BASE's held-out photos is an
error, not a silent leak.
Usage: python models/default/mix.py BASE EXTRA OUT
"""

import json
import sys
from pathlib import Path

from datasets import DatasetDict, concatenate_datasets

from instructir.datasets.build import load_built


def photo(row_id: str) -> str:
    """The photo a built row came from: its id without the split in front and the task and index behind."""
    return "/".join(row_id.split("/")[1:-2])


def mix(base: Path, extra: Path, out: Path) -> dict:
    """Save BASE with EXTRA's train rows appended to its train split to OUT; returns the rows per task."""
    splits = load_built(base)
    added = load_built(extra, "train")
    held_out = {photo(row_id) for split in ("validation", "test") for row_id in splits[split]["id"]}
    leaked = sorted(held_out & {photo(row_id) for row_id in added["id"]})
    if leaked:
        raise ValueError(f"{extra} trains on {', '.join(leaked)}, held out in {base}; build it with the same --seed")
    added = added.map(lambda row: {"id": f"extra/{row['id']}"})
    train = concatenate_datasets([splits["train"], added])
    DatasetDict({"train": train, "validation": splits["validation"], "test": splits["test"]}).save_to_disk(str(out))
    names = train.features["task"].names
    counts: dict[str, int] = {}
    for task in train["task"]:
        counts[names[task]] = counts.get(names[task], 0) + 1
    summary = {"base": str(base), "extra": str(extra), "train_by_task": counts}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    base, extra, out = (Path(arg) for arg in sys.argv[1:4])
    print(json.dumps(mix(base, extra, out)))
