"""Labelled request sets (a corpus, or real requests in JSONL/CSV) and their cached sentence embeddings."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from instructir.prompts.corpus import load_corpus, shipped_corpora
from instructir.prompts.embed import DEFAULT_ENCODER, Embedder
from instructir.tasks import all_tasks, get_task


@dataclass(frozen=True)
class LabelledTexts:
    """Requests with their task ids (registry ids), in file order; ``description`` says where they come from."""

    texts: list[str]
    labels: np.ndarray
    name: str = ""
    description: str = ""

    def __len__(self) -> int:
        return len(self.texts)

    def about(self) -> str:
        """What the set is, for reports: "160 real-style requests written for this project ('real_requests')"."""
        what = self.description or "requests of unstated provenance"
        return f"{len(self)} {what} ('{self.name}')"

    def subset(self, rows: np.ndarray | list[int]) -> LabelledTexts:
        """The rows at ``rows``, in that order."""
        labels = self.labels[np.asarray(rows, dtype=int)]
        return LabelledTexts([self.texts[i] for i in rows], labels, self.name, self.description)

    def task_ids(self) -> list[int]:
        """The registry ids present, ascending."""
        return sorted({int(label) for label in self.labels})


def from_pairs(texts: list[str], tasks: list[str | int], name: str = "") -> LabelledTexts:
    """Build from texts and task names or ids; an unknown task raises ValueError naming it."""
    return LabelledTexts(list(texts), np.array([_task_id(task, index) for index, task in enumerate(tasks)]), name)


def load_labelled(source: str | Path, description: str = "") -> LabelledTexts:
    """Read a shipped corpus name, a corpus folder/Parquet file, or JSONL/CSV with ``text`` and ``task`` columns.

    Other columns are ignored; empty texts are dropped. Errors name the file and row that is wrong. ``description``
    names the set's provenance in reports (e.g. "real-style requests written for this project").
    """
    path = Path(source)
    name = path.stem if path.suffix else path.name
    if path.suffix in (".jsonl", ".json"):
        rows = _read_jsonl(path)
    elif path.suffix == ".csv":
        rows = _read_csv(path)
    else:
        if not path.exists() and str(source) not in shipped_corpora():
            raise FileNotFoundError(f"{source}: no such corpus or file (expected Parquet, JSONL or CSV)")
        rows = load_corpus(source).select(["text", "task"]).to_pylist()
    texts, tasks = [], []
    for number, row in enumerate(rows, start=1):
        if "text" not in row or "task" not in row:
            raise ValueError(f"{source}: row {number} needs both 'text' and 'task' fields, found {sorted(row)}")
        text = str(row["text"] or "").strip()
        if text:
            texts.append(text)
            tasks.append(_task_id(row["task"], number, source))
    if not texts:
        raise ValueError(f"{source}: no labelled requests found")
    return LabelledTexts(texts, np.array(tasks, dtype=int), name, description)


def embed_texts(
    texts: list[str], model: str = DEFAULT_ENCODER, cache_dir: str | Path | None = None, progress: bool = False
) -> np.ndarray:
    """Unit-length float32 sentence embeddings, read from and written to the per-model disk cache."""
    return Embedder(model=model, cache_dir=cache_dir).encode(texts, show_progress=progress)


def task_names_for(labels: list[int] | np.ndarray) -> list[str]:
    """Registry names for task ids."""
    return [get_task(int(label)).name for label in labels]


def _task_id(task: str | int, row: int, source: str | Path = "") -> int:
    try:
        key = str(task).strip()
        return get_task(int(key) if key.isdigit() else key).id
    except (KeyError, ValueError):
        known = ", ".join(t.name for t in all_tasks())
        where = f"{source}: row {row}" if source else f"row {row}"
        raise ValueError(f"{where}: unknown task {task!r}; use one of: {known}") from None


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}: line {number} is not valid JSON ({error.msg})") from None
    return rows


def _read_csv(path: Path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))
