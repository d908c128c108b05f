"""One training sample from a clean crop: pick the task's degradation, apply it, attach a request.

Shared by the dataset builder (frozen samples) and the on-the-fly transform (fresh samples each epoch), so both
make the same kind of pair. The parameters travel with the sample as JSON so every pair can be reproduced.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from instructir.datasets.degradations import apply_chain, sample_chain
from instructir.datasets.instructions import InstructionPool
from instructir.tasks import Task, all_tasks

# Mixtures apply degradations in the order light meets them: scene, optics, exposure, sensor, resampling, edits.
PHYSICAL_ORDER = (
    "haze",
    "rain",
    "gaussian_blur",
    "motion_blur",
    "low_light",
    "gaussian_noise",
    "poisson_noise",
    "bicubic_downsample",
    "jpeg",
    "retouch",
)


@dataclass(frozen=True)
class Sample:
    """A degraded image, its request and the parameters that made it."""

    task: Task
    instruction: str
    clean: np.ndarray
    degraded: np.ndarray
    params: dict[str, Any]

    def params_json(self) -> str:
        """The parameters as canonical JSON (sorted keys), the form datasets store."""
        return json.dumps(self.params, sort_keys=True)


def restoration_tasks(tasks: Sequence[Task]) -> list[Task]:
    """The tasks that have a degradation, which ambiguous requests borrow from; all registered ones when
    ``tasks`` has none (an ambiguous-only dataset still shows every kind of damage)."""
    return [task for task in tasks if task.degradations] or [task for task in all_tasks() if task.degradations]


def make_sample(
    clean: np.ndarray,
    task: Task,
    pool: InstructionPool,
    rng: np.random.Generator,
    degradable: Sequence[Task],
    mixture_size: int = 1,
) -> Sample:
    """Degrade ``clean`` for ``task`` and draw its request.

    An ambiguous task ("make it look better") shows one of the ``degradable`` tasks' degradations, so the model
    must read the image. ``mixture_size`` 2 or 3 adds degradations of other tasks to the same image; the request
    then joins one request per task, the label stays ``task``, and ``params["tasks"]`` lists every task present.
    """
    shown = [task] if task.degradations else [degradable[int(rng.integers(len(degradable)))]]
    others = [other for other in degradable if other.name != shown[0].name]
    extra = min(max(mixture_size - 1, 0), len(others))
    if extra:
        shown += [others[i] for i in rng.choice(len(others), size=extra, replace=False)]
    names = [chosen.degradations[int(rng.integers(len(chosen.degradations)))] for chosen in shown]
    order = sorted(
        range(len(names)), key=lambda i: PHYSICAL_ORDER.index(names[i]) if names[i] in PHYSICAL_ORDER else 99
    )
    chain = sample_chain([names[i] for i in order], rng)
    degraded = apply_chain(clean, chain)
    if degraded.shape != clean.shape:
        clean = clean[: degraded.shape[0], : degraded.shape[1]]
    requests = [pool.draw(task.name, rng)] + [pool.draw(other.name, rng) for other in shown[1:]]
    params = {"chain": chain, "tasks": [chosen.name for chosen in shown]}
    return Sample(task, " ".join(requests), clean, degraded.astype(np.float32), params)
