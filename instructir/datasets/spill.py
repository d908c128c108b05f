"""A build's rows kept out of memory as they are made, then saved in id order one batch at a time.

``Spill`` appends each split's images to an Arrow IPC file and keeps only its text columns (a few hundred bytes a
row) in memory. ``save_to_disk`` and ``save_parquet`` read the rows back sorted by id and write what
``DatasetDict.save_to_disk`` and ``Dataset.to_parquet`` write for the same rows held in one in-memory table: the
same shards, record batches and metadata, so the same bytes (tests/test_datasets_build.py checks this against
datasets' own writers). They do not hand datasets a memory-mapped table because reading one maps every page of the
file into the process, so peak memory would still grow with the dataset; here it holds one write batch (datasets
sizes those to about 100 MB) and one spilled batch of images.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from datasets import DatasetInfo, Features

# Rows per spilled batch. A multiple of 8, so the batches' byte counts (validity bitmaps are whole bytes) add up to
# the byte count of one table of all the rows, which is what datasets sizes shards and write batches from.
BATCH_ROWS = 32
IMAGE_COLUMNS = ("clean", "degraded")
# datasets estimates a table's size from its first rows (Dataset._estimate_nbytes); this is how many.
ESTIMATE_ROWS = 1000


class Spill:
    """Each split's rows as they come: images to ``folder/SPLIT.arrow`` BATCH_ROWS rows at a time, text in memory."""

    def __init__(self, folder: Path, features: Features) -> None:
        self.folder = Path(folder)
        self.features = features
        self.schema = features.arrow_schema
        self.text_columns = [name for name in self.schema.names if name not in IMAGE_COLUMNS]
        self._writers: dict[str, pa.ipc.RecordBatchFileWriter] = {}
        self._pending: dict[str, list[dict[str, Any]]] = {}
        self._text: dict[str, list[pa.RecordBatch]] = {}
        self._nbytes: Counter[str] = Counter()
        self._counts: Counter[str] = Counter()
        self._order: dict[str, pa.Array] = {}
        self._sorted_text: dict[str, pa.Table] = {}

    def add(self, split: str, rows: list[dict[str, Any]]) -> None:
        """Append ``rows`` to ``split``; rows added together are stored in id order, so reading is mostly in order."""
        if split not in self._writers:
            images = pa.schema([self.schema.field(name) for name in IMAGE_COLUMNS])
            self._writers[split] = pa.ipc.new_file(str(self.folder / f"{split}.arrow"), images)
            self._pending[split], self._text[split] = [], []
        self._counts[split] += len(rows)
        pending = self._pending[split]
        pending += sorted(rows, key=lambda row: row["id"])
        while len(pending) >= BATCH_ROWS:
            self._write(split, pending[:BATCH_ROWS])
            del pending[:BATCH_ROWS]

    def close(self) -> None:
        """Write the rows still pending, close the files and sort each split's text by id."""
        for split, writer in self._writers.items():
            if self._pending[split]:
                self._write(split, self._pending[split])
                self._pending[split] = []
            writer.close()
            text = pa.Table.from_batches(self._text.pop(split)).combine_chunks()
            self._order[split] = pc.sort_indices(text, sort_keys=[("id", "ascending")])
            self._sorted_text[split] = text.take(self._order[split]).combine_chunks()

    def count(self, split: str) -> int:
        """How many rows ``split`` got."""
        return self._counts[split]

    def tables(self, split: str, sizes: Iterable[int]) -> Iterator[pa.Table]:
        """After ``close``, the split's rows sorted by id (equal ids in the order added), ``sizes`` rows at a time.

        Each text column is a slice of one array of the whole sorted split, as in a table made in memory: Arrow
        writes a slice's buffer padded with the bytes that follow it, so this keeps those bytes the same too."""
        sizes = list(sizes)
        text = self._sorted_text[split]
        start = 0
        for size, images in zip(sizes, self._images(split, self._order[split].to_numpy(), sizes), strict=True):
            columns = {name: text[name].slice(start, size) for name in self.text_columns}
            columns |= {name: images[name] for name in IMAGE_COLUMNS}
            yield pa.Table.from_arrays([columns[name] for name in self.schema.names], schema=self.schema)
            start += size

    def estimated_nbytes(self, split: str) -> int:
        """What ``Dataset._estimate_nbytes`` gives for the split held in one in-memory table: the table's bytes,
        less the (empty) image paths of its first rows scaled to all rows, since datasets counts paths as files
        to embed. Images here are always embedded bytes."""
        count = self.count(split)
        first = min(count, ESTIMATE_ROWS)
        paths: dict[str, list[pa.Array]] = {name: [] for name in IMAGE_COLUMNS}
        for table in self.tables(split, _batches(first, BATCH_ROWS)):
            for name in IMAGE_COLUMNS:
                paths[name] += [chunk.field("path") for chunk in table[name].chunks]
        path_bytes = sum(pa.concat_arrays(arrays).nbytes for arrays in paths.values())
        return self._nbytes[split] + (-path_bytes * count) // first

    def _write(self, split: str, rows: list[dict[str, Any]]) -> None:
        batch = pa.RecordBatch.from_pylist(rows, schema=self.schema)
        self._nbytes[split] += batch.nbytes
        self._text[split].append(batch.select(self.text_columns))
        self._writers[split].write_batch(batch.select(list(IMAGE_COLUMNS)))

    def _images(self, split: str, order: np.ndarray, sizes: Iterable[int]) -> Iterator[pa.Table]:
        """The image columns of the rows at positions ``order``, as tables of ``sizes`` rows, read with plain
        file reads (no memory map) one spilled batch at a time."""
        slices = self._slices(split, order)
        held = None
        for size in sizes:
            parts = []
            while size:
                held = held if held is not None else next(slices)
                part = held.slice(0, size)
                parts.append(part)
                size -= part.num_rows
                held = held.slice(part.num_rows) if part.num_rows < held.num_rows else None
            yield pa.Table.from_batches(parts)

    def _slices(self, split: str, order: np.ndarray) -> Iterator[pa.RecordBatch]:
        """Slices of the spilled batches that hold the rows at positions ``order``, in that order."""
        with pa.OSFile(str(self.folder / f"{split}.arrow")) as source:
            reader = pa.ipc.open_file(source)
            cached: tuple[int, Any] = (-1, None)
            for start, stop in _runs(order):
                while start < stop:
                    index, offset = divmod(start, BATCH_ROWS)
                    if cached[0] != index:
                        cached = (index, reader.get_batch(index))
                    part = cached[1].slice(offset, stop - start)
                    # A copy of just these rows, so the batch it came from is freed when the next one is read.
                    yield part.take(pa.array(range(part.num_rows)))
                    start += part.num_rows


def _runs(order: np.ndarray) -> Iterator[tuple[int, int]]:
    """``order`` as runs [start, stop) of consecutive positions."""
    breaks = np.flatnonzero(np.diff(order) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [len(order)]])
    for first, last in zip(starts, stops, strict=True):
        yield int(order[first]), int(order[last - 1]) + 1


def save_to_disk(spill: Spill, splits: Sequence[str], folder: Path, info: DatasetInfo, fingerprint: str) -> None:
    """Write ``splits`` as ``DatasetDict.save_to_disk`` would; split S gets the fingerprint FINGERPRINT-S."""
    from datasets import config

    (folder / config.DATASETDICT_JSON_FILENAME).write_text(json.dumps({"splits": list(splits)}))
    for split in splits:
        _save_split(spill, split, folder / split, info, f"{fingerprint}-{split}")


def _save_split(spill: Spill, split: str, folder: Path, info: DatasetInfo, fingerprint: str) -> None:
    """One split as ``Dataset.save_to_disk`` writes it: shards of consecutive rows, each written a batch at a time by
    datasets' ArrowWriter, then state.json and dataset_info.json."""
    from datasets import config
    from datasets.arrow_writer import ArrowWriter
    from datasets.utils.py_utils import asdict

    shard_rows, batch_rows = _disk_layout(spill.count(split), spill.estimated_nbytes(split))
    names = [f"data-{index:05d}-of-{len(shard_rows):05d}.arrow" for index in range(len(shard_rows))]
    folder.mkdir(parents=True)
    tables = spill.tables(split, (size for rows in shard_rows for size in _batches(rows, batch_rows)))
    for name, rows in zip(names, shard_rows, strict=True):
        writer = ArrowWriter(features=spill.features, path=str(folder / name), embed_local_files=True)
        for _ in _batches(rows, batch_rows):
            writer.write_table(next(tables))
            _release_memory()
        writer.finalize()
        writer.close()
    state = {
        "_data_files": [{"filename": name} for name in names],
        "_fingerprint": fingerprint,
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": split,
    }
    with (folder / config.DATASET_STATE_JSON_FILENAME).open("w", encoding="utf-8") as handle:
        json.dump(state, handle, indent=2, sort_keys=True)
    described = asdict(info)
    with (folder / config.DATASET_INFO_FILENAME).open("w", encoding="utf-8") as handle:
        json.dump({key: described[key] for key in sorted(described)}, handle, indent=2)


def _disk_layout(count: int, nbytes: int) -> tuple[list[int], int]:
    """Rows per shard and rows per write batch, chosen as ``Dataset.save_to_disk`` chooses them."""
    from datasets import config
    from datasets.arrow_writer import get_writer_batch_size_from_data_size
    from datasets.utils.py_utils import convert_file_size_to_int

    shards = min(count, int(nbytes / convert_file_size_to_int(config.MAX_SHARD_SIZE)) + 1)
    batch = config.DEFAULT_MAX_BATCH_SIZE
    if nbytes > 0:
        batch = min(batch, get_writer_batch_size_from_data_size(count, nbytes))
    return [count // shards + (index < count % shards) for index in range(shards)], batch


def _release_memory() -> None:
    """Give the pages Arrow's allocator keeps after a write batch back to the system: it holds on to them, so
    without this the process grows a little with every batch instead of staying at one batch's size."""
    pa.default_memory_pool().release_unused()


def _batches(rows: int, size: int) -> list[int]:
    """The row counts of ``rows`` rows taken ``size`` at a time."""
    return [min(size, rows - start) for start in range(0, rows, size)]


def save_parquet(spill: Spill, split: str, path: Path) -> None:
    """Write one spilled split as ``Dataset.to_parquet`` would."""
    import pyarrow.parquet as pq
    from datasets import config
    from datasets.arrow_writer import (
        get_parquet_column_options,
        get_writer_batch_size_from_data_size,
        get_writer_batch_size_from_features,
    )

    count = spill.count(split)
    features = spill.features
    batch = get_writer_batch_size_from_features(features) or get_writer_batch_size_from_data_size(
        count, spill.estimated_nbytes(split)
    )
    schema = features.arrow_schema
    chunking = config.DEFAULT_CDC_OPTIONS
    with path.open("wb") as handle:
        writer = pq.ParquetWriter(
            handle,
            schema=schema,
            use_content_defined_chunking=chunking,
            write_page_index=True,
            **get_parquet_column_options(features, schema),
        )
        for table in spill.tables(split, _batches(count, batch)):
            writer.write_table(table.combine_chunks())
            _release_memory()
        writer.add_key_value_metadata({"content_defined_chunking": json.dumps(chunking)})
        writer.close()
