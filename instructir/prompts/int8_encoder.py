"""An int8 ONNX Runtime copy of a sentence encoder's transformer: throughput bought with the last digits of precision.

The loaded float32 torch transformer is exported to ONNX once, dynamically quantised (int8 weights per output
channel, int8 activations scaled per batch) and kept beside the embedding caches, keyed by the model. On the
project's 2-core AVX-512 VNNI machine it embeds 19-word requests 1.4x faster than bf16 torch, but cosines move by up
to 0.04 (bench/bench_filter.py), enough to flip a pair near a dedup threshold, and since activations are scaled per
batch, a text's vector also depends on the texts batched with it (cosine 0.965 at worst between two batchings). So
it is opt-in (dtype "int8").
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from pathlib import Path

import numpy as np

INSTALL_HINT = (
    "the int8 encoder needs ONNX Runtime: run `pip install 'instructir[int8]'`, or use dtype bfloat16/float32"
)


def int8_model_path(transformer, model_name: str, folder: Path) -> Path:
    """The quantised ONNX file for ``transformer`` under ``folder``, exported and quantised on first use."""
    _require_onnxruntime()
    slug = hashlib.sha1(f"{model_name}:{type(transformer).__name__}".encode()).hexdigest()[:12]
    target = folder / f"encoder-int8-{slug}.onnx"
    if target.is_file():
        return target
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folder.mkdir(parents=True, exist_ok=True)
    exported = folder / f".encoder-fp32-{slug}-{os.getpid()}.onnx"
    partial = folder / f".encoder-int8-{slug}-{os.getpid()}.onnx"
    try:
        _export(transformer, exported)
        logging.disable(logging.WARNING)  # quantize_dynamic logs an advice about pre-processing on the root logger
        try:
            quantize_dynamic(exported, partial, weight_type=QuantType.QInt8, per_channel=True)
        finally:
            logging.disable(logging.NOTSET)
        os.replace(partial, target)
    finally:
        for leftover in (exported, partial):
            leftover.unlink(missing_ok=True)
    return target


class Int8Encoder:
    """Runs token ids and attention masks through the quantised transformer; returns the last hidden states."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        _require_onnxruntime()
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or len(os.sched_getaffinity(0))
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]


def _export(transformer, path: Path) -> None:
    """Trace ``transformer`` (ids, mask) -> last hidden state to ONNX with free batch and length axes."""
    import torch

    class LastHidden(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return self.inner(input_ids=ids, attention_mask=mask).last_hidden_state

    sample = torch.ones(2, 16, dtype=torch.long)
    axes = {0: "batch", 1: "tokens"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            LastHidden(transformer.float().eval()),
            (sample, sample),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["hidden"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "hidden": axes},
            opset_version=17,
            dynamo=False,
        )


def _require_onnxruntime() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as error:
        raise RuntimeError(INSTALL_HINT) from error
