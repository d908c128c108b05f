"""Facts about the machine that choose fast defaults."""

from __future__ import annotations

from pathlib import Path


def best_cpu_dtype() -> str:
    """bfloat16 where the CPU multiplies it natively (avx512_bf16 or AMX), else float32.

    Measured on a 2-core avx512_bf16 machine: the embedded LLM decodes 2x faster and the sentence encoder
    embeds 1.8x faster in bf16, with cosines within 0.004 of float32.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "float32"
    return "bfloat16" if "avx512_bf16" in flags or "amx_bf16" in flags else "float32"


def cpu_description() -> str:
    """The CPU's model name, its usable cores and whether it has native bf16, for figures that name their machine."""
    import os
    import platform

    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        info = ""
    names = [line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")]
    name = names[0] if names else platform.processor() or platform.machine()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    bf16 = "with AVX-512-BF16" if best_cpu_dtype() == "bfloat16" else "without native bf16 (AVX2)"
    return f"{cores}-core {name} {bf16}"
