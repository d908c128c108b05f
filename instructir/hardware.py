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
