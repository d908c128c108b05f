"""A slow, plain float64 rendering of the official InstructIR formulas, used by tests to check the fast model.

Written independently of ``instructir.model.layers``: functions over a state dict, the per-pixel LayerNorm
computed by hand, convolutions as sums of shifted slices, PixelShuffle as a reshape. Padding is zeros on the
right and bottom to a multiple of 2**levels, as in the fast model.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

Weights = Mapping[str, torch.Tensor]


def _layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * weight[None, :, None, None] + bias[None, :, None, None]


def _pointwise(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    out = torch.einsum("oc,bchw->bohw", weight[:, :, 0, 0], x)
    return out if bias is None else out + bias[None, :, None, None]


def _conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, depthwise: bool = False) -> torch.Tensor:
    height, width = x.shape[-2:]
    padded = torch.zeros(x.shape[0], x.shape[1], height + 2, width + 2, dtype=x.dtype)
    padded[:, :, 1:-1, 1:-1] = x
    out = torch.zeros(x.shape[0], weight.shape[0], height, width, dtype=x.dtype)
    for i in range(3):
        for j in range(3):
            window = padded[:, :, i : i + height, j : j + width]
            if depthwise:
                out += window * weight[None, :, 0, i, j, None, None]
            else:
                out += torch.einsum("oc,bchw->bohw", weight[:, :, i, j], window)
    return out + bias[None, :, None, None]


def _down(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    patches = x.reshape(b, c, h // 2, 2, w // 2, 2)
    return torch.einsum("bchiwj,ocij->bohw", patches, weight) + bias[None, :, None, None]


def _pixel_shuffle(x: torch.Tensor) -> torch.Tensor:
    b, c4, h, w = x.shape
    c = c4 // 4
    return x.reshape(b, c, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c, 2 * h, 2 * w)


def _gate(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[1] // 2
    return x[:, :half] * x[:, half:]


def _nafblock(p: Weights, prefix: str, inp: torch.Tensor) -> torch.Tensor:
    def w(name: str) -> torch.Tensor:
        return p[f"{prefix}.{name}"]

    x = _layer_norm(inp, w("norm1.weight"), w("norm1.bias"))
    x = _pointwise(x, w("conv1.weight"), w("conv1.bias"))
    x = _conv3x3(x, w("conv2.weight"), w("conv2.bias"), depthwise=True)
    x = _gate(x)
    pooled = x.mean(dim=(2, 3), keepdim=True)
    x = x * _pointwise(pooled, w("sca.1.weight"), w("sca.1.bias"))
    x = _pointwise(x, w("conv3.weight"), w("conv3.bias"))
    y = inp + x * w("beta")
    x = _layer_norm(y, w("norm2.weight"), w("norm2.bias"))
    x = _gate(_pointwise(x, w("conv4.weight"), w("conv4.bias")))
    x = _pointwise(x, w("conv5.weight"), w("conv5.bias"))
    return y + x * w("gamma")


def _icb(p: Weights, prefix: str, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    logits = text @ p[f"{prefix}.fc.weight"].T + p[f"{prefix}.fc.bias"]
    mask = (1.0 / (1.0 + torch.exp(-logits)))[:, :, None, None]
    features = (x * p[f"{prefix}.gamma"] + p[f"{prefix}.beta"]) * mask
    return _nafblock(p, f"{prefix}.block", features) + x


def reference_forward(
    state_dict: Weights, image: torch.Tensor, text_embedding: torch.Tensor, config: Mapping[str, Any]
) -> torch.Tensor:
    """InstructIR's forward pass in float64 from ``state_dict`` and ``config`` (enc_blks, middle_blk_num, dec_blks).

    Differentiable: given float64 tensors that require grad (``dict(model.named_parameters())``), tests can
    compare gradients too.
    """
    p = {key: value.to(torch.float64) for key, value in state_dict.items()}
    image = image.to(torch.float64)
    text = text_embedding.to(torch.float64)
    levels = len(config["enc_blks"])
    multiple = 2**levels
    b, c, h, w = image.shape
    padded = torch.zeros(b, c, h + (-h % multiple), w + (-w % multiple), dtype=torch.float64)
    padded[:, :, :h, :w] = image

    x = _conv3x3(padded, p["intro.weight"], p["intro.bias"])
    skips = []
    for level, count in enumerate(config["enc_blks"]):
        for index in range(count):
            x = _nafblock(p, f"encoders.{level}.{index}", x)
        x = _icb(p, f"enc_cond.{level}", x, text)
        skips.append(x)
        x = _down(x, p[f"downs.{level}.weight"], p[f"downs.{level}.bias"])
    for index in range(config["middle_blk_num"]):
        x = _nafblock(p, f"middle_blks.{index}", x)
    for level, count in enumerate(config["dec_blks"]):
        x = _pixel_shuffle(_pointwise(x, p[f"ups.{level}.0.weight"], None)) + skips[levels - 1 - level]
        for index in range(count):
            x = _nafblock(p, f"decoders.{level}.{index}", x)
        x = _icb(p, f"dec_cond.{level}", x, text)
    out = _conv3x3(x, p["ending.weight"], p["ending.bias"]) + padded
    return out[:, :, :h, :w]
