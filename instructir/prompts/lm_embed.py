"""The generator's own view of a row as a vector: SmolLM2's hidden states over the text, cached like sentence
embeddings.

A sentence encoder says what a row is about; it says little about whether the row is a coherent message or
fluent word salad, which is what most of a 135M model's bad rows are. The language model's hidden states carry
that: on the audit set's fit half they raised the learned quality stage's cross-validated recall at 90% precision
from about 0.1 to about 0.35. The vector is the mean of the last and of the middle layer over the text's tokens,
and the last token's last layer, after a fixed prefix that frames the text as a message to a photo editor.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from instructir.prompts.embed import Embedder
from instructir.prompts.local_backend import LocalBackend, embedded_model_path

PREFIX = "A message someone sent to a photo editor about their photo:"
LM_ENCODER = "smollm2-135m-hidden"
MAX_TOKENS = 80


class LMEmbedder(Embedder):
    """Hidden-state vectors of the embedded LLM (or another GGUF file), with the same disk cache as Embedder."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        cache_dir: str | Path | None = None,
        batch_size: int = 32,
        threads: int | None = None,
    ) -> None:
        self.path = Path(model_path) if model_path else embedded_model_path()
        self.backend = LocalBackend(self.path, batch_size=batch_size, threads=threads)
        name = LM_ENCODER if model_path is None else f"{LM_ENCODER}:{self.path.name}"
        super().__init__(name, cache_dir=cache_dir, batch_size=batch_size, dtype=self.backend.dtype)

    def dimension(self) -> int:
        """Three times the model's hidden size."""
        return 3 * int(self.backend._load().model.config.hidden_size)

    def _compute(self, texts: list[str], show_progress: bool) -> np.ndarray:
        import torch
        from tqdm.auto import tqdm

        loaded = self.backend._load()
        tokenizer, model = loaded.tokenizer, loaded.model
        start = tokenizer(PREFIX, add_special_tokens=False)["input_ids"]
        bodies = [tokenizer(" " + text.strip(), add_special_tokens=False)["input_ids"][:MAX_TOKENS] for text in texts]
        order = np.argsort([len(body) for body in bodies], kind="stable")
        out = np.zeros((len(texts), self.dimension()), dtype=np.float32)
        for first in tqdm(range(0, len(texts), self.batch_size), disable=not show_progress, desc="LM vectors"):
            rows = order[first : first + self.batch_size]
            width = len(start) + max(max(len(bodies[row]) for row in rows), 1)
            ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for slot, row in enumerate(rows):
                ids[slot, : len(start) + len(bodies[row])] = torch.tensor(start + bodies[row])
                mask[slot, : len(start) + max(len(bodies[row]), 1)] = 1
            with torch.inference_mode():
                hidden = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
            last, middle = hidden[-1].float(), hidden[len(hidden) // 2].float()
            for slot, row in enumerate(rows):
                span = slice(len(start), len(start) + max(len(bodies[row]), 1))
                end = span.stop - 1
                out[row] = torch.cat([last[slot, span].mean(0), middle[slot, span].mean(0), last[slot, end]]).numpy()
        self.computed += len(texts)
        return out

    def _load(self):
        return self.backend._load()
