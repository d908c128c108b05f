"""Save and load models: our safetensors files and the official InstructIR ``.pt`` releases.

Our format is one safetensors file holding the image model (``model.*``) and optionally the text head
(``head.*``); its metadata carries the architectures and the caller's config as JSON, so a file rebuilds its
model alone. Official files (``im_instructir-7d.pt``, ``lm_instructir-7d.pt``) are read with
``torch.load(weights_only=True)`` only; which one a file is, and the architecture (the released image model
has 4 middle blocks although the official ``create_model`` defaults to 12), are inferred from its keys.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from instructir.model.instructir import InstructIR
from instructir.model.text import TextHead

FORMAT = "instructir-checkpoint-v1"
_MODEL_PREFIX = "model."
_HEAD_PREFIX = "head."


def save_checkpoint(
    path: str | Path,
    model: InstructIR,
    head: TextHead | None = None,
    config: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` (and ``head``) to a safetensors file atomically, with architectures and config as metadata.

    ``config`` (e.g. the training configuration) and ``extra`` (e.g. step, metrics) must be JSON-serialisable.
    The file is written next to ``path`` under a temporary name and renamed, so a crash never leaves a
    half-written checkpoint in its place.
    """
    path = Path(path)
    tensors = {_MODEL_PREFIX + key: _plain(value) for key, value in model.state_dict().items()}
    if head is not None:
        tensors.update({_HEAD_PREFIX + key: _plain(value) for key, value in head.state_dict().items()})
    metadata = {
        "format": FORMAT,
        "model": json.dumps(model.config),
        "head": json.dumps(head.config if head is not None else None),
        "config": json.dumps(dict(config) if config is not None else None),
        "extra": json.dumps(dict(extra) if extra is not None else None),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        save_file(tensors, temporary, metadata=metadata)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path) -> tuple[InstructIR | None, TextHead | None, dict[str, Any]]:
    """Load ``(image model, text head, config)`` from one of our safetensors files or an official ``.pt`` file.

    An official file holds one part, so the other comes back as None: ``im_instructir-7d.pt`` gives
    ``(model, None, config)`` and ``lm_instructir-7d.pt`` gives ``(None, head, config)``. ``config`` has the
    architectures under "model" and "head", the saved "config" and "extra" (None for official files), and
    "format" ("safetensors" or "official"). Models come back in eval mode, on the CPU, in float32.
    """
    path = Path(path)
    if _is_safetensors(path):
        return _load_safetensors(path)
    return _load_official(path)


def _plain(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().cpu().contiguous()


def _is_safetensors(path: Path) -> bool:
    with path.open("rb") as handle:
        start = handle.read(9)
    return len(start) == 9 and start[8:9] == b"{"


def _load_safetensors(path: Path) -> tuple[InstructIR | None, TextHead | None, dict[str, Any]]:
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        metadata = handle.metadata() or {}
    tensors = load_file(path, device="cpu")
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path} is a safetensors file but not an instructir checkpoint (no '{FORMAT}' metadata)")
    info = {name: json.loads(metadata[name]) for name in ("model", "head", "config", "extra")}
    model_weights = {k[len(_MODEL_PREFIX) :]: v for k, v in tensors.items() if k.startswith(_MODEL_PREFIX)}
    head_weights = {k[len(_HEAD_PREFIX) :]: v for k, v in tensors.items() if k.startswith(_HEAD_PREFIX)}
    model = _fill(InstructIR(**info["model"]), model_weights, path, "an InstructIR image model")
    head = None
    if info["head"] is not None:
        head = _fill(TextHead(**info["head"]), head_weights, path, "an InstructIR text head")
    return model, head, {**info, "format": "safetensors"}


def _load_official(path: Path) -> tuple[InstructIR | None, TextHead | None, dict[str, Any]]:
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    weights = _unwrap(loaded, path)
    base = {"config": None, "extra": None, "format": "official"}
    if "intro.weight" in weights:
        architecture = _infer_model_config(weights)
        model = _fill(InstructIR(**architecture), weights, path, "an InstructIR image model (im_instructir-*.pt)")
        return model, None, {"model": architecture, "head": None, **base}
    if "fc1.weight" in weights and "fc2.weight" in weights:
        architecture = {
            "in_dim": weights["fc1.weight"].shape[1],
            "embed_dim": weights["fc1.weight"].shape[0],
            "num_classes": weights["fc2.weight"].shape[0],
        }
        head = _fill(TextHead(**architecture), weights, path, "an InstructIR text head (lm_instructir-*.pt)")
        return None, head, {"model": None, "head": architecture, **base}
    raise ValueError(
        f"{path} is neither an InstructIR image model (im_instructir-*.pt, keys like 'intro.weight', "
        f"'encoders.0.0.conv1.weight') nor a text head (lm_instructir-*.pt, keys 'fc1.weight', 'fc2.weight'); "
        f"its first keys are {_first(weights)}"
    )


def _unwrap(loaded: Any, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(loaded, Mapping):
        for wrapper in ("state_dict", "params", "params_ema", "model"):
            if isinstance(loaded.get(wrapper), Mapping):
                loaded = loaded[wrapper]
                break
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise ValueError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    prefix = "module."
    if loaded and all(key.startswith(prefix) for key in loaded):
        return {key[len(prefix) :]: value for key, value in loaded.items()}
    return dict(loaded)


def _count(weights: Mapping[str, torch.Tensor], pattern: str) -> int:
    indices = {int(match.group(1)) for key in weights if (match := re.match(pattern, key))}
    return max(indices) + 1 if indices else 0


def _infer_model_config(weights: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    levels = _count(weights, r"downs\.(\d+)\.")
    return {
        "img_channel": weights["intro.weight"].shape[1],
        "width": weights["intro.weight"].shape[0],
        "middle_blk_num": _count(weights, r"middle_blks\.(\d+)\."),
        "enc_blks": [_count(weights, rf"encoders\.{level}\.(\d+)\.") for level in range(levels)],
        "dec_blks": [_count(weights, rf"decoders\.{level}\.(\d+)\.") for level in range(levels)],
        "txtdim": weights["enc_cond.0.fc.weight"].shape[1] if "enc_cond.0.fc.weight" in weights else 256,
    }


def _first(keys: Any, limit: int = 5) -> str:
    items = sorted(keys)
    shown = ", ".join(items[:limit])
    return f"[{shown}{', ...' if len(items) > limit else ''}] ({len(items)} in all)"


def _fill(module: nn.Module, weights: Mapping[str, torch.Tensor], path: Path, expected: str) -> Any:
    own = module.state_dict()
    missing = own.keys() - weights.keys()
    unexpected = weights.keys() - own.keys()
    if missing or unexpected:
        found = {"missing": missing, "unexpected": unexpected}
        problems = [f"{label} keys {_first(keys)}" for label, keys in found.items() if keys]
        raise ValueError(f"{path} does not match {expected}: {'; '.join(problems)}")
    wrong = [
        f"{key} {tuple(weights[key].shape)} (expected {tuple(value.shape)})"
        for key, value in own.items()
        if weights[key].shape != value.shape
    ]
    if wrong:
        raise ValueError(f"{path} does not match {expected}: wrong shapes for {', '.join(wrong[:5])}")
    module.load_state_dict(weights, strict=True)
    return module.eval()
