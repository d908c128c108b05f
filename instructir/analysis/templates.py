"""Request sets made without an LLM: the registry's seeds, and InstructIR-style templates.

A template is "{action} {object} {ending}", e.g. "Get rid of the grain in the photo.". The vocabularies are
keyed by task name and checked against the registry at import, so a task added to ``instructir.tasks`` without a
vocabulary here fails loudly instead of silently missing from the baseline. Seeds and templates are the cheap
alternatives to an LLM-written corpus; the generalisation report compares all three.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from instructir.analysis.labelled import LabelledTexts
from instructir.tasks import all_tasks, get_task, task_names


@dataclass(frozen=True)
class Vocabulary:
    """The words one task's templates are made of: an action phrase, then the object it acts on."""

    actions: tuple[str, ...]
    objects: tuple[str, ...]


ENDINGS: tuple[str, ...] = ("", "please", "in the photo", "in this image", "for me", "now")

VOCABULARIES: dict[str, Vocabulary] = {
    "denoise": Vocabulary(
        ("Remove the", "Reduce the", "Fix the", "Get rid of the", "Clean up the"),
        ("noise", "grain", "speckles", "sensor noise", "graininess"),
    ),
    "deblur": Vocabulary(
        ("Remove the", "Reduce the", "Fix the", "Get rid of the", "Correct the"),
        ("blur", "motion blur", "camera shake", "blurriness", "out-of-focus blur"),
    ),
    "derain": Vocabulary(
        ("Remove the", "Reduce the", "Erase the", "Get rid of the", "Clean up the"),
        ("rain", "rain streaks", "raindrops", "rain lines", "downpour"),
    ),
    "dehaze": Vocabulary(
        ("Remove the", "Reduce the", "Clear the", "Get rid of the", "Cut through the"),
        ("haze", "fog", "mist", "smog", "haziness"),
    ),
    "lowlight": Vocabulary(
        ("Fix the", "Correct the", "Reduce the", "Get rid of the", "Brighten the"),
        ("darkness", "underexposure", "low light", "dim lighting", "dark shadows"),
    ),
    "superres": Vocabulary(
        ("Increase the", "Improve the", "Boost the", "Raise the", "Upscale the"),
        ("resolution", "image resolution", "pixel count", "size and detail", "low resolution"),
    ),
    "enhance": Vocabulary(
        ("Improve the", "Enhance the", "Fix the", "Boost the", "Correct the"),
        ("colours", "contrast", "saturation", "white balance", "colour tones"),
    ),
    "ambiguous": Vocabulary(
        ("Improve the", "Fix the", "Make better the", "Enhance the", "Touch up the"),
        ("photo", "image", "picture", "overall quality", "whole thing"),
    ),
}


def _check_vocabularies() -> None:
    """Every registry task needs a vocabulary and every vocabulary a registry task."""
    missing = [name for name in task_names() if name not in VOCABULARIES]
    unknown = [name for name in VOCABULARIES if name not in task_names()]
    if missing or unknown:
        raise RuntimeError(
            f"instructir/analysis/templates.py: template vocabularies do not match the task registry "
            f"(missing for: {', '.join(missing) or 'none'}; not registered: {', '.join(unknown) or 'none'}); "
            "add a Vocabulary to VOCABULARIES for each task in instructir/tasks.py"
        )


_check_vocabularies()


def task_templates(task: str | int) -> list[str]:
    """Every template request of one task, in a fixed order."""
    vocabulary = VOCABULARIES[get_task(task).name]
    combos = itertools.product(vocabulary.actions, vocabulary.objects, ENDINGS)
    return [" ".join(part for part in combo if part) + "." for combo in combos]


def template_requests(per_task: int | None = None, seed: int = 0) -> LabelledTexts:
    """Template requests of every registry task: all of them, or a seeded sample of ``per_task`` each."""
    rng = np.random.default_rng(seed)
    texts: list[str] = []
    labels: list[int] = []
    for task in all_tasks():
        pool = task_templates(task.id)
        if per_task is not None and per_task < len(pool):
            pool = [pool[i] for i in sorted(rng.choice(len(pool), size=per_task, replace=False))]
        texts += pool
        labels += [task.id] * len(pool)
    return LabelledTexts(texts, np.array(labels, dtype=int), "templates")


def seed_requests() -> LabelledTexts:
    """The registry's hand-written seed requests of every task."""
    pairs = [(text, task.id) for task in all_tasks() for text in task.seeds]
    return LabelledTexts([text for text, _ in pairs], np.array([label for _, label in pairs], dtype=int), "seeds")


def seeds_and_templates(seed: int = 0) -> LabelledTexts:
    """The registry's seeds and every template request together: all the hand-written requests this package has,
    the strongest baseline an LLM-written corpus must beat."""
    seeds, templates = seed_requests(), template_requests(seed=seed)
    labels = np.concatenate([seeds.labels, templates.labels])
    return LabelledTexts(seeds.texts + templates.texts, labels, "seeds+templates")
