"""Reading candidate requests from files users bring, and writing filtered corpora.

Candidates are Parquet or JSONL with at least ``text`` and ``task`` (a registry name); any other columns are
carried through. Rows without an ``id`` get one from their position.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from instructir.io import write_json, write_parquet
from instructir.prompts.filters.stage import Row
from instructir.tasks import task_names


def read_candidates(path: str | Path) -> list[Row]:
    """Rows from a Parquet or JSONL file; a clear error names any missing column, bad line or unknown task."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no candidates file at {path}")
    if path.suffix == ".parquet":
        rows = pq.read_table(path).to_pylist()
    elif path.suffix in (".jsonl", ".json"):
        rows = _read_jsonl(path)
    else:
        raise ValueError(f"{path}: candidates must be .parquet or .jsonl, not {path.suffix or 'no extension'}")
    _validate(rows, path)
    for position, row in enumerate(rows):
        row.setdefault("id", None)
        row["id"] = str(row["id"]) if row["id"] is not None else f"row-{position:07d}"
    return rows


def read_many(paths: list[str | Path]) -> list[Row]:
    """Rows of several candidate files in order; with more than one file, ids are prefixed by the file's folder
    name (a generation run's folder) so they stay unique."""
    if len(paths) == 1:
        return read_candidates(paths[0])
    rows = []
    for path in paths:
        for row in read_candidates(path):
            row["id"] = f"{Path(path).parent.name}/{row['id']}"
            rows.append(row)
    return rows


# Reasons a generation run's inline filter (or its quota) gave for dropping a line that was a valid candidate.
FILTERED_REASONS = frozenset(
    {"over_quota", "not_a_request", "off_topic", "label_mismatch", "near_duplicate", "semantic_duplicate"}
)


def read_run_pool(run: str | Path) -> list[Row]:
    """Every candidate a generation run produced, whatever its inline filter did with it: the rows of
    candidates.parquet plus the lines its filter stages or its quota dropped (not those the parser or the format
    rules refused, nor exact copies). Each row's ``fate`` says where it ended up; ids are prefixed by the run."""
    run = Path(run)
    rows = [{**row, "fate": "kept"} for row in read_candidates(run / "candidates.parquet")]
    rejects = run / "rejects.parquet"
    if rejects.is_file():
        dropped = [row for row in pq.read_table(rejects).to_pylist() if row["reason"] in FILTERED_REASONS]
        rows += [
            {"id": f"dropped-{n:06d}", "text": row["text"], "task": row["task"], "fate": row["reason"]}
            for n, row in enumerate(dropped)
        ]
    for row in rows:
        row["id"] = f"{run.name}/{row['id']}"
        row["run"] = run.name
    return rows


def _read_jsonl(path: Path) -> list[Row]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{number}: not valid JSON ({error.msg}); fix or remove that line") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{number}: each line must be a JSON object with text and task")
        rows.append(row)
    return rows


def _validate(rows: list[Row], path: Path) -> None:
    known = set(task_names())
    for position, row in enumerate(rows):
        missing = [column for column in ("text", "task") if not isinstance(row.get(column), str)]
        if missing:
            raise ValueError(f"{path}: row {position} has no text column(s) {', '.join(missing)}")
        if row["task"] not in known:
            raise ValueError(
                f"{path}: row {position} has unknown task {row['task']!r}; known tasks: {', '.join(sorted(known))}"
            )


def write_rows(rows: list[Row], path: str | Path) -> Path:
    """Rows to Parquet atomically; columns are the union over rows, missing values null."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    if rows:
        schema = pa.Table.from_pylist([{c: row.get(c) for c in columns} for row in rows]).schema
    else:
        schema = pa.schema([("id", pa.string()), ("text", pa.string()), ("task", pa.string())])
    return write_parquet([{c: row.get(c) for c in schema.names} for row in rows], schema, path)


def write_filtered(
    kept: list[Row], rejects: list[Row], summary: dict[str, Any], out_dir: str | Path
) -> dict[str, Path]:
    """corpus.parquet, rejects.parquet and summary.json in ``out_dir``."""
    out = Path(out_dir)
    return {
        "corpus": write_rows(kept, out / "corpus.parquet"),
        "rejects": write_rows(rejects, out / "rejects.parquet"),
        "summary": write_json(summary, out / "summary.json"),
    }
