"""Training throughput and peak memory: an official-style baseline against our fast path, in one run.

Baseline: the official formulation, fp32 eager, contiguous NCHW, the per-pixel LayerNorm as a custom autograd
Function (mean and variance by hand, hand-written backward), ``conv(x) * beta`` and the ICB's
``(x * gamma + beta) * mask`` as written, plain AdamW. Fast path: our model (F.layer_norm on an NHWC view, beta and
gamma folded into their convolutions' weights, the ICB modulation as one addcmul), bf16 autocast where the device
multiplies bf16 natively, channels_last, fused AdamW on CUDA, and optionally torch.compile. Both train the same
network (L1 + intent CE through the text head) on random data.

Memory is reported twice: the device's peak (CUDA max allocated; on CPU the max RSS of a fresh process per path)
and the activations autograd keeps per image in eager mode, counted tensor by tensor on the CPU in the precision
each path has on a GPU. The second does not depend on the machine: 32 times it, plus weights and optimizer state,
is within 2% of REFERENCE.md section 3's H200 peaks for B=32 at 256x256 (51.9 GiB official fp32 eager, 30.9 GiB
with F.layer_norm in bf16 eager).

Targets (issue 5): on an H100/H200 at B=32, 256x256 the fast path at least 4x the baseline's img/s (official
measured at 101 img/s on an H200) with at most 50% of its peak memory. On CPU the ratio at a small size.

Usage: python bench/train_throughput.py [--batch 32 --patch 256 --steps 20 --compile]   (defaults shrink on CPU)
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing
import resource
import time
import types
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import torch
import torch.nn.functional as F
from common import print_table, write_results

from instructir.hardware import best_cpu_dtype
from instructir.model import InstructIR, TextHead
from instructir.model.icb import ICB
from instructir.model.layers import LayerNorm2d, NAFBlock


class _ChannelNormFunction(torch.autograd.Function):
    """The official-style LayerNorm: explicit mean/variance over channels and a hand-written backward."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        y = (x - mean) / (var + eps).sqrt()
        ctx.eps = eps
        ctx.save_for_backward(y, var, weight)
        return weight.view(1, -1, 1, 1) * y + bias.view(1, -1, 1, 1)

    @staticmethod
    def backward(ctx, grad):
        y, var, weight = ctx.saved_tensors
        g = grad * weight.view(1, -1, 1, 1)
        mean_g = g.mean(dim=1, keepdim=True)
        mean_gy = (g * y).mean(dim=1, keepdim=True)
        grad_x = (g - y * mean_gy - mean_g) / (var + ctx.eps).sqrt()
        return grad_x, (grad * y).sum(dim=(0, 2, 3)), grad.sum(dim=(0, 2, 3)), None


class OfficialStyleLayerNorm2d(torch.nn.Module):
    """Drop-in for LayerNorm2d that runs the custom autograd Function (what blocks fusion and compile)."""

    def __init__(self, norm: LayerNorm2d) -> None:
        super().__init__()
        self.weight, self.bias, self.eps = norm.weight, norm.bias, norm.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _ChannelNormFunction.apply(x, self.weight, self.bias, self.eps)


def _official_nafblock_forward(self: NAFBlock, inp: torch.Tensor) -> torch.Tensor:
    """NAFBlock.forward as the official code writes it: each branch's output multiplied by its scale."""
    x = self.sg(self.conv2(self.conv1(self.norm1(inp))))
    x = self.conv3(x * self.sca(x))
    y = inp + x * self.beta
    x = self.conv5(self.sg(self.conv4(self.norm2(y))))
    return y + x * self.gamma


def _official_icb_forward(self: ICB, x: torch.Tensor, text_embedding: torch.Tensor) -> torch.Tensor:
    """ICB.forward as the official code writes it: scale, shift, then gate by the instruction."""
    mask = torch.sigmoid(self.fc(text_embedding))[:, :, None, None]
    return self.block((x * self.gamma + self.beta) * mask) + x


def official_style(model: InstructIR) -> InstructIR:
    """A copy of ``model`` with the official-style custom-Function LayerNorm, NAFBlock and ICB formulas."""
    baseline = copy.deepcopy(model)
    for module in list(baseline.modules()):
        if isinstance(module, NAFBlock):
            module.forward = types.MethodType(_official_nafblock_forward, module)
        if isinstance(module, ICB):
            module.forward = types.MethodType(_official_icb_forward, module)
        for child_name, child in list(module.named_children()):
            if isinstance(child, LayerNorm2d):
                setattr(module, child_name, OfficialStyleLayerNorm2d(child))
    return baseline


def saved_activations_mib(model, head, patch: int, fast: bool) -> float:
    """MiB that autograd keeps for the backward pass of one image, eager, in the layout and precision the path
    has on a GPU (fast: bf16 autocast, channels_last; baseline: fp32), counted on the CPU."""
    generator = torch.Generator().manual_seed(0)
    image = torch.rand((1, 3, patch, patch), generator=generator)
    sentence = F.normalize(torch.randn((1, 384), generator=generator), dim=1)
    if fast:
        model = copy.deepcopy(model).to(memory_format=torch.channels_last)
        image = image.contiguous(memory_format=torch.channels_last)
    storages: dict[int, int] = {}

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        storages.setdefault(tensor.untyped_storage().data_ptr(), tensor.untyped_storage().nbytes())
        return tensor

    with (
        torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor),
        torch.autocast(device_type="cpu", dtype=torch.bfloat16, enabled=fast),
    ):
        embedding, _ = head(sentence)
        model(image, embedding).float().sum()
    return sum(storages.values()) / 2**20


def run(path: str, model, head, args, device: str) -> dict[str, Any]:
    """Train ``args.steps`` steps after ``args.warmup`` warm-up steps; img/s and peak memory."""
    fast = path != "baseline"
    cuda = device.startswith("cuda")
    model, head = model.to(device), head.to(device)
    use_bf16 = fast and (cuda or best_cpu_dtype() == "bfloat16")
    if fast:
        model = model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if (fast and args.compile) else model
    parameters = [*model.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=5e-4, betas=(0.9, 0.99), fused=cuda and fast)
    generator = torch.Generator(device=device).manual_seed(0)
    shape = (args.batch, 3, args.patch, args.patch)
    clean = torch.rand(shape, generator=generator, device=device)
    degraded = (clean + 0.1 * torch.randn(shape, generator=generator, device=device)).clamp(0, 1)
    if fast:
        degraded = degraded.contiguous(memory_format=torch.channels_last)
    sentence = F.normalize(torch.randn((args.batch, 384), generator=generator, device=device), dim=1)
    labels = torch.randint(0, 7, (args.batch,), generator=generator, device=device)

    def step() -> None:
        with torch.autocast(device_type="cuda" if cuda else "cpu", dtype=torch.bfloat16, enabled=use_bf16):
            embedding, logits = head(sentence)
            restored = forward(degraded, embedding)
            loss = (restored.float() - clean).abs().mean() + 0.1 * F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(args.warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = (
        torch.cuda.max_memory_allocated() / 2**30
        if cuda
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    )
    label = (
        "baseline: fp32 eager, custom-Function LayerNorm"
        if not fast
        else (
            f"fast: {'bf16' if use_bf16 else 'fp32'}, channels_last, F.layer_norm{', compile' if args.compile else ''}"
        )
    )
    return {
        "path": label,
        "batch": args.batch,
        "patch": args.patch,
        "img/s": round(args.batch * args.steps / seconds, 2),
        "peak GiB": round(peak, 2),
        "memory": "CUDA max allocated" if cuda else "max RSS of this path's process",
    }


def measure(path: str, args: argparse.Namespace) -> dict[str, Any]:
    """One path's row: built from seed 0 (both paths get the same weights), timed, its activations counted."""
    torch.manual_seed(0)
    model, head = InstructIR(), TextHead()
    if path == "baseline":
        model = official_style(model)
    saved = saved_activations_mib(model, head, args.patch, fast=path != "baseline")
    return {**run(path, model, head, args, args.device), "activations MiB/img": round(saved, 1)}


def measure_in_fresh_process(path: str, args: argparse.Namespace) -> dict[str, Any]:
    """``measure`` in a spawned process, so one path's peak memory (and CUDA caches) cannot leak into the other's."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(measure, path, args).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cuda = torch.cuda.is_available()
    parser.add_argument("--device", default="cuda" if cuda else "cpu")
    parser.add_argument("--batch", type=int, default=32 if cuda else 4)
    parser.add_argument("--patch", type=int, default=256 if cuda else 64)
    parser.add_argument("--steps", type=int, default=20 if cuda else 5)
    parser.add_argument("--warmup", type=int, default=5 if cuda else 2)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    rows = [measure_in_fresh_process(path, args) for path in ("baseline", "fast")]
    speedup = rows[1]["img/s"] / rows[0]["img/s"]
    memory = rows[1]["peak GiB"] / rows[0]["peak GiB"]
    activations = rows[1]["activations MiB/img"] / rows[0]["activations MiB/img"]
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print_table(
        rows,
        f"train throughput on {device}: fast/baseline {speedup:.2f}x img/s, {memory:.0%} of its peak memory, "
        f"{activations:.0%} of its activations per image",
    )
    write_results(
        "train_throughput",
        rows,
        device=device,
        speedup=round(speedup, 3),
        memory_ratio=round(memory, 3),
        activation_ratio=round(activations, 3),
    )


if __name__ == "__main__":
    main()
