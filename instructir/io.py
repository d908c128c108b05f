"""Writing files so that a killed process never leaves a half-written one: write a temporary file, then rename."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_parquet(rows: list[dict[str, Any]], schema: pa.Schema, path: str | Path) -> Path:
    """Write ``rows`` with ``schema`` to ``path`` atomically; the same rows give the same bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=schema)
    temporary = _temporary(path)
    pq.write_table(table, temporary, compression="zstd")
    os.replace(temporary, path)
    return path


def write_json(data: Any, path: str | Path) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary(path)
    temporary.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(temporary, path)
    return path


def write_bytes(data: bytes, path: str | Path) -> Path:
    """Write ``data`` to ``path`` atomically, under a temporary name unique to this call (threads may write at once)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with temporary.open("xb") as stream:
            stream.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def replace_folder(staging: str | Path, target: str | Path) -> Path:
    """Put the finished folder ``staging`` in ``target``'s place; a reader never sees a half-written folder."""
    staging, target = Path(staging), Path(target)
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
        staging.rename(target)
        shutil.rmtree(old)
    else:
        staging.rename(target)
    return target
