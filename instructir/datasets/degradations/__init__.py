"""Synthetic degradations that turn clean images into InstructIR training inputs, one concept per module.

Every degradation is a :class:`Degradation`: a pure ``apply(image, params)`` on float32 HWC RGB images in [0, 1]
and a ``sample_params(rng)`` that draws JSON-serialisable params (randomness inside ``apply`` comes only from
``params["seed"]``). :data:`DEGRADATIONS` names them all; a mixture is a chain of two or three of them::

    rng = np.random.default_rng(0)
    chain = sample_chain(["gaussian_blur", "gaussian_noise"], rng)   # [{"name": ..., "params": {...}}, ...]
    degraded = apply_chain(clean, chain)

Batched torch twins of the pixel-wise and convolutional ones live in ``degradations.torch_ops`` (imported on
demand so the numpy path does not load torch).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from instructir.datasets.degradations import blur, haze, jpeg, lowlight, noise, rain, resize, retouch
from instructir.datasets.degradations.base import Degradation, Params

# The submodules stay the package's attributes (``degradations.haze.synthetic_depth``); the Degradation objects
# are reached through this registry, so the module ``haze`` and the degradation ``haze`` never shadow each other.
DEGRADATIONS: dict[str, Degradation] = {
    d.name: d
    for d in (
        noise.gaussian_noise,
        noise.poisson_noise,
        blur.gaussian_blur,
        blur.motion_blur,
        haze.haze,
        rain.rain,
        lowlight.low_light,
        resize.bicubic_downsample,
        retouch.retouch,
        jpeg.jpeg,
    )
}


def get_degradation(name: str) -> Degradation:
    """The registered degradation called ``name``; an unknown name raises ValueError listing the known ones."""
    try:
        return DEGRADATIONS[name]
    except KeyError:
        raise ValueError(f"unknown degradation {name!r}; known: {', '.join(sorted(DEGRADATIONS))}") from None


def sample_chain(names: Sequence[str], rng: np.random.Generator) -> list[dict[str, Any]]:
    """Draw params for each named degradation in order: ``[{"name": ..., "params": ...}, ...]`` (JSON-ready)."""
    return [{"name": name, "params": get_degradation(name).sample_params(rng)} for name in names]


def apply_chain(image: np.ndarray, chain: Sequence[dict[str, Any]]) -> np.ndarray:
    """Apply a chain from :func:`sample_chain` (or loaded back from JSON) to ``image``, first entry first."""
    for step in chain:
        image = get_degradation(step["name"]).apply(image, step["params"])
    return image


__all__ = ["DEGRADATIONS", "Degradation", "Params", "apply_chain", "get_degradation", "sample_chain"]
