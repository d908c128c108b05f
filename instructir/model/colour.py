"""A learned global colour stage: undo a bad retouch (the enhance task's damage) with one colour transform per photo.

A retouch maps every pixel's colour through one function of the whole photo (white balance, saturation, contrast,
tone curve; see ``datasets/degradations/retouch.py``), which the 2-hour CPU InstructIR does not reliably undo (it
made the default model's test photo worse). This stage reads global statistics of the photo (colour histograms,
moments and luma quantiles of a thumbnail) with a small MLP and predicts a transform from a family that holds the
exact inverse of every such retouch: a monotone piecewise-linear curve per channel, then a 3x3 colour matrix and an
offset. Image-adaptive global transforms are how small enhancement models work (HDRNet, Gharbi et al. 2017;
image-adaptive 3D LUTs, Zeng et al. 2020); this one has about 30k weights and trains in minutes on a CPU.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

THUMBNAIL = 32  # side of the thumbnail the features are read from
BINS = 16  # histogram bins per channel and for the luma
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)  # of the luma
LUMA = (0.299, 0.587, 0.114)  # BT.601, as the retouch damage uses
FEATURES = 3 * BINS + BINS + 6 + 3 + len(QUANTILES)


def colour_features(images: torch.Tensor) -> torch.Tensor:
    """(B, FEATURES) global statistics of (B, 3, H, W) images in [0, 1]: what a colour transform is chosen from."""
    thumb = F.adaptive_avg_pool2d(images.float().clamp(0.0, 1.0), THUMBNAIL).flatten(2)  # (B, 3, N)
    luma = torch.einsum("c,bcn->bn", thumb.new_tensor(LUMA), thumb)
    centres = (torch.arange(BINS, dtype=thumb.dtype, device=thumb.device) + 0.5) / BINS

    def histogram(values: torch.Tensor) -> torch.Tensor:  # (..., N) -> (..., BINS), soft triangular bins
        weights = (1.0 - (values[..., None] - centres).abs() * BINS).clamp(min=0.0)
        return weights.mean(dim=-2)

    chroma = (thumb - luma[:, None]).abs().mean(dim=-1)
    return torch.cat(
        [
            histogram(thumb).flatten(1),
            histogram(luma),
            thumb.mean(dim=-1),
            thumb.std(dim=-1),
            chroma,
            torch.quantile(luma, luma.new_tensor(QUANTILES), dim=-1).T,
        ],
        dim=1,
    )


class ColourStage(nn.Module):
    """An MLP from :func:`colour_features` to a global colour transform, applied by :meth:`forward`.

    The last layer starts at zero, so an untrained stage is the identity; ``knots`` segments per channel curve.
    """

    def __init__(self, hidden: int = 128, knots: int = 8) -> None:
        super().__init__()
        self.config = {"hidden": hidden, "knots": knots}
        self.knots = knots
        self.mlp = nn.Sequential(
            nn.Linear(FEATURES, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, 3 * knots + 12),
        )
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def transform(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per image: curve slopes (B, 3, knots), colour matrix (B, 3, 3) and offset (B, 3)."""
        raw = self.mlp(colour_features(images))
        knots = self.knots
        slopes = F.softplus(raw[:, : 3 * knots].view(-1, 3, knots) + math.log(math.e - 1.0))  # 1 at raw 0
        matrix = torch.eye(3, device=raw.device) + raw[:, 3 * knots : 3 * knots + 9].view(-1, 3, 3)
        return slopes, matrix, raw[:, 3 * knots + 9 :]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> the same, each image through its own curve, matrix and offset."""
        slopes, matrix, offset = self.transform(images)
        x = images.float().clamp(0.0, 1.0)
        # Piecewise-linear curve: the sum over segments of slope_k / knots times how far x runs through segment k,
        # one segment at a time so a large photo needs about two copies of itself, not one per segment.
        curved = torch.zeros_like(x)
        for k in range(self.knots):
            curved += slopes[:, :, k, None, None] * (x * self.knots - k).clamp(0.0, 1.0)
        curved /= self.knots
        mixed = torch.einsum("bij,bjhw->bihw", matrix, curved) + offset[:, :, None, None]
        return mixed.clamp(0.0, 1.0)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """One HxWx3 float [0, 1] image through the stage."""
        with torch.inference_mode():
            pixels = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
            return np.ascontiguousarray(self(pixels)[0].permute(1, 2, 0).numpy(), dtype=np.float32)


def save_colour_stage(stage: ColourStage, path: str | Path, extra: dict[str, Any] | None = None) -> None:
    """Write the stage as safetensors, its config and ``extra`` (how it was trained) as JSON metadata."""
    metadata = {"colour_stage": json.dumps(stage.config), "extra": json.dumps(extra or {}, sort_keys=True)}
    save_file({name: value.contiguous() for name, value in stage.state_dict().items()}, str(path), metadata=metadata)


def _metadata(path: str | Path) -> dict[str, str]:
    """The JSON metadata of a safetensors file (empty when it has none)."""
    with safe_open(str(path), framework="pt") as handle:
        return handle.metadata() or {}


def load_colour_stage(path: str | Path) -> ColourStage:
    """Read a stage written by :func:`save_colour_stage`."""
    metadata = _metadata(path)
    if "colour_stage" not in metadata:
        raise ValueError(
            f"{path} is not a colour stage (its metadata has no colour_stage); write one with save_colour_stage"
        )
    stage = ColourStage(**json.loads(metadata["colour_stage"]))
    stage.load_state_dict(load_file(str(path)))
    return stage.eval()


def colour_stage_facts(path: str | Path) -> dict[str, Any]:
    """How a stage written by :func:`save_colour_stage` was trained: the ``extra`` it was saved with."""
    return json.loads(_metadata(path).get("extra", "{}"))


def fit_colour_stage(
    photos: Sequence[np.ndarray],
    damage: Callable[[np.ndarray, np.random.Generator], np.ndarray],
    rng: np.random.Generator,
    steps: int = 3000,
    batch: int = 32,
    crop: int = 64,
    lr: float = 2e-3,
    clean_share: float = 0.1,
    grey_share: float = 0.1,
    stage: ColourStage | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> ColourStage:
    """Train a stage to map ``damage(crop, rng)`` back to ``crop`` (mean squared error) on random crops of
    ``photos`` at every scale down to where a crop holds most of the photo.

    ``clean_share`` of the crops come undamaged, so a photo that needs no retouch is left about as it is. Each
    crop's colour channels come in a random order and ``grey_share`` of them in grey, so a few photos show the
    stage many more colour balances than they hold.
    """
    stage = stage or ColourStage()
    torch.manual_seed(int(rng.integers(2**31)))
    optimiser = torch.optim.AdamW(stage.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps, pct_start=0.05)
    pyramids = [_pyramid(photo, crop) for photo in photos]
    stage.train()
    for step in range(steps):
        clean = np.stack(
            [
                _recolour(_random_crop(pyramids[int(rng.integers(len(pyramids)))], crop, rng), grey_share, rng)
                for _ in range(batch)
            ]
        )
        damaged = np.stack([c if rng.random() < clean_share else damage(c, rng) for c in clean])
        target = torch.from_numpy(clean).permute(0, 3, 1, 2)
        loss = F.mse_loss(stage(torch.from_numpy(damaged).permute(0, 3, 1, 2)), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if progress is not None:
            progress(step + 1, loss.item())
    return stage.eval()


def _recolour(crop: np.ndarray, grey_share: float, rng: np.random.Generator) -> np.ndarray:
    """``crop`` with its channels in a random order, or in grey (BT.601 luma) with probability ``grey_share``."""
    if rng.random() < grey_share:
        return np.repeat(crop @ np.asarray(LUMA, dtype=np.float32), 3).reshape(crop.shape)
    return np.ascontiguousarray(crop[..., rng.permutation(3)])


def _pyramid(photo: np.ndarray, size: int) -> list[np.ndarray]:
    """``photo`` and its halvings (area-averaged) while the short side stays at least ``size`` px."""
    levels = [np.ascontiguousarray(photo, dtype=np.float32)]
    while min(levels[-1].shape[:2]) >= 2 * size:
        pixels = torch.from_numpy(levels[-1]).permute(2, 0, 1)[None]
        levels.append(np.ascontiguousarray(F.avg_pool2d(pixels, 2)[0].permute(1, 2, 0).numpy()))
    return levels


def _random_crop(levels: list[np.ndarray], size: int, rng: np.random.Generator) -> np.ndarray:
    """A ``size``-px square crop from a random level of a photo's pyramid: a detail or most of the photo."""
    level = levels[int(rng.integers(len(levels)))]
    top = int(rng.integers(level.shape[0] - size + 1))
    left = int(rng.integers(level.shape[1] - size + 1))
    return level[top : top + size, left : left + size]
