"""Training samples made fresh every epoch: a new crop, degradation and request per (seed, epoch, index).

Two forms. ``OnTheFly`` is a map-style dataset over clean images that decodes each image once per worker and
keeps it, the fast path for training on a folder of photos. ``train_transform`` plugs the same synthesis into a
built dataset's train split through ``Dataset.with_transform``, using each row's task and clean image.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from instructir.datasets.images import crop_to_multiple, random_crop, rgb_array
from instructir.datasets.instructions import InstructionPool
from instructir.datasets.sources import ImageRef
from instructir.datasets.synthesis import Sample, make_sample, restoration_tasks
from instructir.tasks import Task, all_tasks, get_task, resolve_tasks


def epoch_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of sample ``index`` in ``epoch``: same triple, same sample."""
    return np.random.default_rng([seed, epoch, index])


class OnTheFly:
    """Map-style dataset: item i is clean image i // len(tasks) (cycled) degraded for task i % len(tasks)."""

    def __init__(
        self,
        images: Sequence[ImageRef | np.ndarray],
        pool: InstructionPool,
        tasks: Sequence[Task] | None = None,
        seed: int = 0,
        patch: int = 256,
        per_image: int = 1,
        mixtures: float = 0.0,
    ) -> None:
        if not images:
            raise ValueError("OnTheFly needs at least one clean image")
        self.images = list(images)
        self.tasks = tuple(tasks) if tasks else resolve_tasks(None)
        self.degradable = restoration_tasks(self.tasks)
        pool.require(task.name for task in self.tasks)
        self.pool = pool
        self.seed = seed
        self.patch = patch
        self.per_image = per_image
        self.mixtures = mixtures
        self.epoch = 0
        self._decoded: dict[int, np.ndarray] = {}

    def set_epoch(self, epoch: int) -> None:
        """Start another epoch: every index gets a new crop, degradation and request."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images) * len(self.tasks) * self.per_image

    def image(self, position: int) -> np.ndarray:
        """Clean image ``position``, decoded on first use and kept (each worker process keeps its own)."""
        if position not in self._decoded:
            source = self.images[position]
            image = source.load() if isinstance(source, ImageRef) else np.asarray(source, dtype=np.float32)
            self._decoded[position] = crop_to_multiple(image, 16)
        return self._decoded[position]

    def sample(self, index: int) -> Sample:
        """Sample ``index`` of the current epoch as arrays."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        rng = epoch_rng(self.seed, self.epoch, index)
        task = self.tasks[index % len(self.tasks)]
        image = self.image((index // len(self.tasks)) % len(self.images))
        crop = random_crop(image, self.patch, rng) if self.patch else image
        mixture = int(rng.integers(2, 4)) if self.mixtures and rng.random() < self.mixtures else 1
        return make_sample(crop, task, self.pool, rng, self.degradable, mixture)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.sample(index)
        return {
            "task": sample.task.id,
            "instruction": sample.instruction,
            "clean": sample.clean,
            "degraded": sample.degraded,
            "params": sample.params_json(),
        }


def train_transform(pool: InstructionPool, seed: int = 0, epoch: int = 0, patch: int = 256, mixtures: float = 0.0):
    """A ``Dataset.with_transform`` function that re-synthesises each row's degraded image and request.

    The row's task and clean image are kept; its generator derives from (seed, epoch, hash of the row id).
    Returns float32 HWC arrays in [0, 1] under ``clean`` and ``degraded``.
    """
    tasks = all_tasks()
    degradable = restoration_tasks(tasks)

    def transform(batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {"id": [], "task": [], "instruction": [], "clean": [], "degraded": [], "params": []}
        for row_id, task_id, clean in zip(batch["id"], batch["task"], batch["clean"], strict=True):
            rng = epoch_rng(seed, epoch, zlib.crc32(row_id.encode()))
            image = rgb_array(clean)
            crop = random_crop(image, patch, rng) if patch and min(image.shape[:2]) >= patch else image
            mixture = int(rng.integers(2, 4)) if mixtures and rng.random() < mixtures else 1
            sample = make_sample(crop, get_task(task_id), pool, rng, degradable, mixture)
            out["id"].append(row_id)
            out["task"].append(task_id)
            out["instruction"].append(sample.instruction)
            out["clean"].append(sample.clean)
            out["degraded"].append(sample.degraded)
            out["params"].append(sample.params_json())
        return out

    return transform
