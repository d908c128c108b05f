"""The text side: a frozen sentence encoder and the small trained head that turns its vector into ``e``.

Only ``TextHead`` trains. Sentence embeddings of a prompt corpus are computed once by ``TextEncoder`` (which
caches them on disk) and then read from that cache; training never runs the encoder per step.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from instructir.prompts.embed import DEFAULT_ENCODER, Embedder

OFFICIAL_NUM_CLASSES = 7


class TextHead(nn.Module):
    """Project a sentence embedding to the unit-length instruction vector ``e`` and classify its intent.

    ``fc1`` (in_dim→embed_dim) then L2 normalisation gives ``e``, the vector every ICB reads; ``fc2``
    (embed_dim→num_classes) on ``e`` gives intent logits. The default of 7 classes is the official release's;
    the first 7 ids of ``instructir.tasks.all_tasks()`` follow the official class order (noise, blur, rain,
    haze, low light, super-resolution, enhancement), so an official head's logits index the registry directly.
    """

    def __init__(self, in_dim: int = 384, embed_dim: int = 256, num_classes: int = OFFICIAL_NUM_CLASSES) -> None:
        super().__init__()
        self._config = {"in_dim": in_dim, "embed_dim": embed_dim, "num_classes": num_classes}
        self.fc1 = nn.Linear(in_dim, embed_dim)
        self.fc2 = nn.Linear(embed_dim, num_classes)

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments, so checkpoints can rebuild the same head."""
        return dict(self._config)

    def forward(self, sentence_embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map (B,in_dim) sentence embeddings to (unit-length e (B,embed_dim), intent logits (B,num_classes))."""
        e = F.normalize(self.fc1(sentence_embedding), dim=-1)
        return e, self.fc2(e)


class _Encodes(Protocol):
    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class TextEncoder:
    """Frozen sentence encoder returning torch tensors: a thin wrapper over the disk-cached ``Embedder``.

    Not an ``nn.Module`` on purpose: it has no trainable weights, never enters an optimizer or a checkpoint,
    and training reads precomputed corpus embeddings instead of calling it per step. The paper used
    TaylorAI/bge-micro-v2; pass ``model="TaylorAI/bge-micro-v2"`` when pairing it with the official text head.
    """

    def __init__(
        self,
        model: str = DEFAULT_ENCODER,
        cache_dir: str | Path | None = None,
        embedder: _Encodes | None = None,
    ) -> None:
        self.embedder = embedder if embedder is not None else Embedder(model=model, cache_dir=cache_dir)

    def encode(self, texts: Sequence[str], device: torch.device | str = "cpu") -> torch.Tensor:
        """Unit-length float32 sentence embeddings (N,dim) of ``texts``, without gradient."""
        vectors = np.asarray(self.embedder.encode(list(texts)), dtype=np.float32)
        return torch.from_numpy(vectors.copy()).to(device)

    __call__ = encode
