"""The model that ships inside the package, and which model a command uses when it is not told.

`instructir restore`, `eval` and `demo` take, in order: the ``--checkpoint`` given, the quick run's model (the
README's main job) when it exists, else the shipped default model, so a fresh install restores at once. Its card
(recipe, data, machine, figures per task) lies beside it; `models/default/` rebuilds it.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

# What ``--init`` and ``train.init`` accept to fine-tune the default model wherever the package is installed.
SHIPPED = "shipped"


def shipped_checkpoint() -> Path:
    """Where the package's default model file lies once installed."""
    return Path(str(files("instructir") / "data" / "model" / "default.safetensors"))


def init_checkpoint(init: str) -> Path:
    """The file a fine-tune's ``--init`` names: the shipped default model for ``shipped``, else the path given."""
    return shipped_checkpoint() if init == SHIPPED else Path(init)


def shipped_card() -> Path:
    """The default model's card: how it was trained and what it scores."""
    return shipped_checkpoint().with_name("README.md")


def choose_checkpoint(given: Path | None, quick_run: Path, shipped: Path | None = None) -> tuple[Path, str]:
    """The checkpoint to load and why, in words: ``given``, else ``quick_run`` if it exists, else the shipped one.

    Raises FileNotFoundError with what to do when none of them is there (an install without package data).
    """
    if given is not None:
        return given, "given with --checkpoint"
    if quick_run.is_file():
        return quick_run, "the quick run's model (`instructir run --profile quick`)"
    shipped = shipped if shipped is not None else shipped_checkpoint()
    if shipped.is_file():
        return shipped, f"the default model that ships with instructir (card: {shipped.with_name('README.md')})"
    raise FileNotFoundError(
        f"no --checkpoint given, no model at {quick_run} and no shipped model at {shipped}; train one with "
        "`instructir run --profile quick` or pass --checkpoint PATH"
    )
