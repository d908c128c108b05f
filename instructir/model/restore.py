"""Run a trained InstructIR on images of any size: one pass when it fits, overlapping blended tiles when it does not.

``restore_image`` is the numeric core (model + instruction vector + image in, image out). Large images are cut
into tiles of ``tile`` pixels that overlap by ``overlap``; each tile's output is weighted by a separable
raised-cosine window that falls towards the tile's inner edges (never at the image border) and accumulated in
float32 output and weight buffers, so memory is about the output size plus one batch of tiles and no seams show.
``Restorer`` ties a checkpoint (image model + text head) to a sentence encoder, so callers pass plain text;
``restore_paths`` runs it over files and folders, writing images atomically and skipping unreadable inputs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from instructir.datasets.images import ImageError, encode_image, load_image, output_format
from instructir.datasets.sources import folder_images
from instructir.hardware import best_cpu_dtype
from instructir.io import write_bytes
from instructir.model.checkpoint import load_checkpoint
from instructir.model.colour import ColourStage, load_colour_stage
from instructir.model.instructir import InstructIR
from instructir.model.text import TextEncoder, TextHead
from instructir.prompts.embed import DEFAULT_ENCODER
from instructir.tasks import all_tasks, get_task

# The sentence encoder the official text head (lm_instructir-7d.pt) was trained on.
OFFICIAL_ENCODER = "TaylorAI/bge-micro-v2"
# Above this many pixels an image is tiled unless a tile size is given: (CPU, CUDA).
AUTO_TILE_PIXELS = {"cpu": 1024 * 1024, "cuda": 2048 * 2048}
# Tile side used when tiling is switched on automatically.
AUTO_TILE_SIZE = {"cpu": 512, "cuda": 1024}


def auto_tile(height: int, width: int, device: str | torch.device = "cpu") -> int | None:
    """The tile size to use for an image of this size on ``device`` when none is given, or None for one pass."""
    kind = "cuda" if torch.device(device).type == "cuda" else "cpu"
    return AUTO_TILE_SIZE[kind] if height * width > AUTO_TILE_PIXELS[kind] else None


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` px along a side of ``length`` px, neighbours overlapping by >= ``overlap``.

    The last tile is pushed back to end exactly at the border, so every tile lies fully inside the image.
    """
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def blend_window(size: int, overlap: int, rise: bool, fall: bool) -> torch.Tensor:
    """1-D tile weight: a raised-cosine ramp over ``overlap`` px at each inner edge, 1 elsewhere (never 0).

    Two ramps that overlap by exactly ``overlap`` px sum to 1; where the last tile overlaps more, the weight
    buffer normalises the sum anyway.
    """
    weights = torch.ones(size, dtype=torch.float32)
    ramp = min(overlap, size // 2)
    if ramp > 0:
        edge = 0.5 - 0.5 * torch.cos(math.pi * (torch.arange(ramp, dtype=torch.float32) + 0.5) / ramp)
        if rise:
            weights[:ramp] = edge
        if fall:
            weights[-ramp:] = edge.flip(0)
    return weights


def default_bf16(device: torch.device) -> bool:
    """bf16 autocast on CUDA and on CPUs with native bf16 (``best_cpu_dtype``), float32 otherwise."""
    return device.type == "cuda" or (device.type == "cpu" and best_cpu_dtype() == "bfloat16")


def restore_image(
    model: InstructIR,
    embedding: torch.Tensor,
    image: np.ndarray,
    tile: int | None = None,
    overlap: int = 32,
    device: str | torch.device = "cpu",
    bf16: bool | None = None,
    tile_batch: int | None = None,
    ensemble: bool = False,
) -> np.ndarray:
    """Restore one HxWxC float [0, 1] image as told by ``embedding`` (1, txtdim); returns float32 HxWxC in [0, 1].

    ``tile`` (a multiple of 16) forces tiled inference; left as None, images above ``AUTO_TILE_PIXELS`` are tiled
    with ``AUTO_TILE_SIZE``. ``bf16`` defaults to autocast on CUDA and on CPUs that multiply bf16 natively
    (512² in 2.0 s instead of 2.9 s here, outputs within 0.005), float32 elsewhere. ``tile_batch`` tiles go
    through the network together (default 1 on CPU, 4 on CUDA). The model is moved to ``device`` and to the
    channels-last memory format (1.4x faster on CPU, where LayerNorm then needs no transposing copies).
    ``ensemble`` averages the outputs of four copies of the image (as is, turned upside down, mirrored, both), each
    turned back: the self-ensemble of EDSR+ without its quarter turns (see ``VIEWS``). Four times the work.
    """
    array = np.ascontiguousarray(image, dtype=np.float32)
    if not array.flags.writeable:
        array = array.copy()
    channels = model.config["img_channel"]
    if array.ndim != 3 or array.shape[2] != channels:
        raise ValueError(f"expected an HxWx{channels} image, got shape {array.shape}")
    device = torch.device(device)
    height, width = array.shape[:2]
    if tile is None:
        tile = auto_tile(height, width, device)
    if tile is not None and (tile < 16 or tile % 16):
        raise ValueError(f"tile must be a multiple of 16 (at least 16), got {tile}")
    if tile is not None and not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile) = [0, {tile}), got {overlap}")
    if next(model.parameters()).device != device or not model.intro.weight.is_contiguous(
        memory_format=torch.channels_last
    ):
        model.to(device=device, memory_format=torch.channels_last)
    use_bf16 = default_bf16(device) if bf16 is None else bf16
    batch = tile_batch or (4 if device.type == "cuda" else 1)
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
        # HxWxC memory viewed as 1xCxHxW is already channels-last: no copy on the CPU.
        pixels = torch.from_numpy(array).permute(2, 0, 1)[None].to(device)
        vector = embedding.to(device=device, dtype=torch.float32).reshape(1, -1)

        def run(view: torch.Tensor) -> torch.Tensor:
            rows, cols = view.shape[-2:]
            if tile is None or (rows <= tile and cols <= tile):
                return _forward(model, view, vector)[0]
            return _tiled(model, view, vector, tile, overlap, batch, device)

        views = VIEWS if ensemble else VIEWS[:1]
        out = sum(undo(run(do(pixels)).clamp_(0.0, 1.0)) for do, undo in views) / len(views)
        out = out.permute(1, 2, 0).cpu().numpy()
    return np.ascontiguousarray(out, dtype=np.float32)


def _turn(quarters: int, mirror: bool) -> tuple[Callable[[torch.Tensor], torch.Tensor], ...]:
    """A (do, undo) pair on (..., H, W) tensors: mirror (optionally), then turn by ``quarters`` quarter turns."""

    def do(x: torch.Tensor) -> torch.Tensor:
        x = x.flip(-1) if mirror else x
        return torch.rot90(x, quarters, (-2, -1)) if quarters else x  # rot90 by 0 would still copy

    def undo(x: torch.Tensor) -> torch.Tensor:
        x = torch.rot90(x, -quarters, (-2, -1)) if quarters else x
        return x.flip(-1) if mirror else x

    return do, undo


# The views ``ensemble`` averages, each with its inverse, the identity first: half turns and mirror images, which
# keep upright what was upright. Quarter turns are left out: rain falls within 10 degrees of vertical in training,
# and a model shown sideways rain leaves it (on the default model's validation photo, averaging all eight
# symmetries of the square took derain from 33.6 to 22.5 dB).
VIEWS = tuple(_turn(quarters, mirror) for mirror in (False, True) for quarters in (0, 2))


def _forward(model: InstructIR, pixels: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    """One network pass, channels-last in, float32 out."""
    pixels = pixels.contiguous(memory_format=torch.channels_last)
    return model(pixels, vector.expand(pixels.shape[0], -1)).float()


def _tiled(
    model: InstructIR,
    pixels: torch.Tensor,
    vector: torch.Tensor,
    tile: int,
    overlap: int,
    batch: int,
    device: torch.device,
) -> torch.Tensor:
    """Weighted sum of overlapping tile outputs divided by the summed weights: (C, H, W) float32."""
    _, channels, height, width = pixels.shape
    tile_h, tile_w = min(tile, height), min(tile, width)
    rows, cols = tile_starts(height, tile_h, overlap), tile_starts(width, tile_w, overlap)
    row_windows = {y: blend_window(tile_h, overlap, y > 0, y + tile_h < height).to(device) for y in rows}
    col_windows = {x: blend_window(tile_w, overlap, x > 0, x + tile_w < width).to(device) for x in cols}
    # Channel-interleaved like the tiles (and like the HxWxC array it becomes, which then needs no copy).
    total = torch.empty(1, channels, height, width, device=device, memory_format=torch.channels_last)[0].zero_()
    weight = torch.zeros(1, height, width, dtype=torch.float32, device=device)
    positions = [(y, x) for y in rows for x in cols]
    for first in range(0, len(positions), batch):
        group = positions[first : first + batch]
        tiles = torch.cat([pixels[:, :, y : y + tile_h, x : x + tile_w] for y, x in group])
        outputs = _forward(model, tiles, vector)
        for (y, x), output in zip(group, outputs, strict=True):
            window = row_windows[y][:, None] * col_windows[x][None, :]
            total[:, y : y + tile_h, x : x + tile_w] += output * window
            weight[:, y : y + tile_h, x : x + tile_w] += window
    return total.div_(weight)


class _Encodes(Protocol):
    def encode(self, texts: Sequence[str], device: torch.device | str = "cpu") -> torch.Tensor: ...


class Restorer:
    """A checkpoint's image model and text head with a sentence encoder: restore images from plain instructions."""

    def __init__(
        self,
        model: InstructIR,
        head: TextHead,
        encoder: _Encodes,
        device: str | torch.device | None = None,
        bf16: bool | None = None,
        overlap: int = 32,
        tasks: Sequence[str] | None = None,
        source: str | Path | None = None,
        ensemble: bool = False,
        keep_mean: bool = False,
        colour_stage: ColourStage | None = None,
    ) -> None:
        self.tasks = tuple(tasks) if tasks is not None else None
        self.ensemble = ensemble
        self.keep_mean = keep_mean
        self.colour_stage = colour_stage.eval() if colour_stage is not None else None
        self.source = source
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.eval().to(device=self.device, memory_format=torch.channels_last)
        self.head = head.eval().to(self.device)
        self.encoder = encoder
        self.bf16 = bf16
        self.overlap = overlap
        self.num_classes = head.config["num_classes"]
        if self.num_classes > len(all_tasks()):
            raise ValueError(
                f"the text head has {self.num_classes} intent classes but only {len(all_tasks())} tasks are "
                "registered; it was trained with a different task registry"
            )
        self._vectors: dict[str, tuple[torch.Tensor, np.ndarray]] = {}

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        encoder: str | None = None,
        device: str | torch.device | None = None,
        head_path: str | Path | None = None,
        cache_dir: str | Path | None = None,
        bf16: bool | None = None,
        ensemble: bool | None = None,
        keep_mean: bool | None = None,
        colour: bool | None = None,
    ) -> Restorer:
        """Load our checkpoint (model + head), or an official im_/lm_ pair given as ``path`` and ``head_path``.

        ``encoder`` defaults to the one the head was trained with: the training config's encoder for our files,
        TaylorAI/bge-micro-v2 for an official head, otherwise all-MiniLM-L6-v2. ``ensemble`` (see
        :func:`restore_image`) defaults to what the checkpoint asks for (``ensemble`` in its extra metadata), else off;
        so does ``keep_mean`` (see :meth:`restore`). ``colour`` loads the colour stage the checkpoint names
        (``colour_stage`` in its extra metadata, a file beside it) when None or True; True raises if it names none.
        """
        files = [Path(path)] + ([Path(head_path)] if head_path is not None else [])
        parts = [_load(file) for file in files]
        models = [model for model, _, _ in parts if model is not None]
        heads = [(head, config) for _, head, config in parts if head is not None]
        if len(models) > 1 or len(heads) > 1:
            raise ValueError(f"{path} and {head_path} both hold an image model or both a text head; give one of each")
        if not models:
            raise ValueError(
                f"{path} holds no image model; for the official release give im_instructir-7d.pt as the checkpoint "
                "and lm_instructir-7d.pt as the head"
            )
        if not heads:
            raise ValueError(
                f"{path} has no text head, so instructions cannot be read; for the official release pass the "
                "lm_instructir-7d.pt file too (--head / head_path)"
            )
        model, (head, head_config) = models[0], heads[0]
        if head.config["embed_dim"] != model.config["txtdim"]:
            raise ValueError(
                f"the text head gives {head.config['embed_dim']}-d vectors but the model reads "
                f"{model.config['txtdim']}-d ones; they are not from the same release"
            )
        name = encoder or _trained_encoder(head_config)
        text = TextEncoder(model=name, cache_dir=cache_dir)
        if ensemble is None:
            ensemble = _asks_for(parts[0][2], "ensemble")
        if keep_mean is None:
            keep_mean = _asks_for(parts[0][2], "keep_mean")
        stage = _colour_stage(Path(path), parts[0][2]) if colour is not False else None
        if colour and stage is None:
            raise ValueError(f"{path} names no colour stage (colour_stage in its metadata); leave out --colour")
        return cls(
            model,
            head,
            text,
            device=device,
            bf16=bf16,
            tasks=_trained_tasks(parts[0][2]),
            source=path,
            ensemble=ensemble,
            keep_mean=keep_mean,
            colour_stage=stage,
        )

    def prepare(self, instructions: Sequence[str]) -> None:
        """Encode every new instruction in one batch and remember its vector and intent probabilities."""
        fresh = sorted({text for text in instructions if text not in self._vectors})
        if not fresh:
            return
        sentences = self.encoder.encode(fresh, device=self.device).float()
        expected = self.head.config["in_dim"]
        if sentences.shape[-1] != expected:
            raise ValueError(
                f"the sentence encoder gives {sentences.shape[-1]}-d vectors but the text head expects {expected}-d "
                "ones; pass the encoder the head was trained with"
            )
        with torch.inference_mode():
            vectors, logits = self.head(sentences)
            probabilities = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        for index, text in enumerate(fresh):
            self._vectors[text] = (vectors[index : index + 1].clone(), probabilities[index])

    def embedding(self, instruction: str) -> torch.Tensor:
        """The instruction vector ``e`` (1, embed_dim) the image model reads."""
        self.prepare([instruction])
        return self._vectors[instruction][0]

    def intent(self, instruction: str) -> tuple[str, float]:
        """The task the head reads in ``instruction`` and its softmax probability, in (0, 1]."""
        return self.intents(instruction)[0]

    def intents(self, instruction: str) -> list[tuple[str, float]]:
        """Every intent class as (task, probability), likeliest first."""
        self.prepare([instruction])
        probabilities = self._vectors[instruction][1]
        order = np.argsort(-probabilities, kind="stable")
        return [(get_task(int(index)).name, float(probabilities[index])) for index in order]

    def restore(self, image: np.ndarray, instruction: str, tile: int | None = None) -> np.ndarray:
        """Restore an HxWx3 float [0, 1] image as ``instruction`` asks; same shape out.

        With ``keep_mean``, a request the head reads as a task whose damage keeps the photo's mean colour (the
        registry's ``keeps_mean``: deblur, superres) gets an output shifted back to the input's mean colour. With a
        ``colour_stage``, a request read as a task whose damage is one colour function of the whole photo (the
        registry's ``global_colour``: enhance) gets the mean of the network's output and the stage's correction of
        the input (:func:`blend_colour_stage`)."""
        restored = restore_image(
            self.model,
            self.embedding(instruction),
            image,
            tile,
            self.overlap,
            self.device,
            self.bf16,
            ensemble=self.ensemble,
        )
        task = get_task(self.intent(instruction)[0])
        if self.keep_mean and task.keeps_mean:
            return match_mean(restored, image)
        if self.colour_stage is not None and task.global_colour:
            return blend_colour_stage(restored, self.colour_stage.apply(image))
        return restored


def _load(path: Path) -> tuple[InstructIR | None, TextHead | None, dict[str, Any]]:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no such checkpoint; give a .safetensors file from `instructir train` "
            "(e.g. RUN/final.safetensors) or the official im_instructir-7d.pt"
        )
    return load_checkpoint(path)


def _extra(config: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's extra metadata (the training run's tasks, the ensemble it asks for); empty when it has none."""
    extra = config.get("extra")
    return extra if isinstance(extra, dict) else {}


def _trained_tasks(config: dict[str, Any]) -> list[str] | None:
    """The tasks a checkpoint's train split held (saved since the default model), or None when it does not say."""
    tasks = _extra(config).get("tasks")
    return list(tasks) if isinstance(tasks, list) else None


def _asks_for(config: dict[str, Any], option: str) -> bool:
    """Whether a checkpoint says it restores best with ``option`` on (the default model asks for ``ensemble`` and
    ``keep_mean``)."""
    return bool(_extra(config).get(option, False))


def _colour_stage(path: Path, config: dict[str, Any]) -> ColourStage | None:
    """The colour stage a checkpoint names (``colour_stage``: a file in the checkpoint's folder), or None."""
    name = _extra(config).get("colour_stage")
    if not isinstance(name, str):
        return None
    stage_path = path.parent / name
    if not stage_path.is_file():
        raise FileNotFoundError(
            f"{path} names the colour stage {name}, but {stage_path} is missing; put the file back beside the "
            "checkpoint (reinstall instructir for the shipped model) or turn the stage off with --no-colour"
        )
    return load_colour_stage(stage_path)


def blend_colour_stage(restored: np.ndarray, corrected: np.ndarray) -> np.ndarray:
    """The mean of the network's output and the colour stage's correction of the input: the two err differently.
    On the default model's validation photos (8 retouches each) the mean beat the network alone by +0.86 and
    +2.65 dB, where the stage alone lost 1.30 dB on one of them (models/default/train.sh)."""
    return (0.5 * (restored + corrected)).astype(np.float32)


def match_mean(restored: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``restored`` shifted per channel to ``reference``'s mean, clipped to [0, 1]: a blur or a resampling keeps a
    photo's mean colour, so its restoration should too (a small model's output drifts in colour on unseen photos)."""
    shift = np.asarray(reference, dtype=np.float64).mean(axis=(0, 1)) - restored.mean(axis=(0, 1), dtype=np.float64)
    return np.clip(restored + shift.astype(np.float32), 0.0, 1.0)


def _trained_encoder(config: dict[str, Any]) -> str:
    saved = config.get("config")
    if isinstance(saved, dict) and isinstance(saved.get("encoder"), str):
        return saved["encoder"]
    return OFFICIAL_ENCODER if config.get("format") == "official" else DEFAULT_ENCODER


def restore_paths(
    restorer: Restorer,
    inputs: Sequence[Path],
    instruction: str,
    out: Path,
    tile: int | None = None,
) -> list[dict[str, Any]]:
    """Restore image files and folders of images into ``out``; one report per image found.

    One image file in gives ``out`` as the file to write, in the format its suffix names (PNG, JPEG, WebP or
    TIFF; see ``OUTPUT_FORMATS``), or a folder to write NAME.png into when ``out`` is an existing folder or has
    no suffix. Otherwise ``out`` is a folder and each image keeps its name relative to its input folder, with a
    lossless .png suffix. Unreadable images are skipped with their reason and the rest go on. Every file is
    written under a temporary name and renamed, so no half-written image is ever left behind.
    """
    jobs = _jobs([Path(path) for path in inputs], Path(out))
    reports: list[dict[str, Any]] = []
    taken: set[Path] = set()
    for source, target in jobs:
        report: dict[str, Any] = {"input": str(source), "output": None, "status": "skipped"}
        reports.append(report)
        if target in taken:
            report |= {"reason": "duplicate_output", "message": f"{target} is also the output of an earlier input"}
            continue
        taken.add(target)
        started = time.perf_counter()
        try:
            image = load_image(source)
        except ImageError as error:
            report |= {"reason": error.reason, "message": str(error)}
            continue
        restored = restorer.restore(image, instruction, tile=tile)
        write_bytes(encode_image(restored, target.suffix), target)
        report |= {
            "output": str(target),
            "status": "written",
            "height": int(restored.shape[0]),
            "width": int(restored.shape[1]),
            "seconds": round(time.perf_counter() - started, 3),
        }
    return reports


def _jobs(inputs: list[Path], out: Path) -> list[tuple[Path, Path]]:
    """(input file, output file) pairs; missing inputs are kept so that loading reports them as not found."""
    if len(inputs) == 1 and not inputs[0].is_dir():
        source = inputs[0]
        if out.is_dir() or not out.suffix:
            return [(source, out / f"{source.stem}.png")]
        try:
            output_format(out.suffix)
        except ValueError as error:
            raise ValueError(f"{out}: {error}; or give a folder") from None
        return [(source, out)]
    if out.is_file():
        raise ValueError(f"{out} is a file; with a folder or several inputs, -o must be a folder")
    jobs = []
    for source in inputs:
        if source.is_dir():
            jobs += [(Path(ref.path), out / Path(ref.name).with_suffix(".png")) for ref in folder_images(source)]
        else:
            jobs.append((source, out / f"{source.stem}.png"))
    # Earlier outputs inside an input folder (-o photos/restored) are not inputs.
    inside = out.resolve()
    return [(source, target) for source, target in jobs if not source.resolve().is_relative_to(inside)]
