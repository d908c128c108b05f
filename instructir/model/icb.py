"""The Instruction Condition Block: the text embedding gates the features per channel before a NAFBlock."""

from __future__ import annotations

import torch
from torch import nn

from instructir.model.layers import NAFBlock


class ICB(nn.Module):
    """Instruction Condition Block: ``out = block((x * gamma + beta) * sigmoid(fc(e))) + x``.

    ``gamma`` and ``beta`` are per-channel and start at zero, so a fresh ICB is the identity whatever the text.
    Names (``fc``, ``block``, ``gamma``, ``beta``) match the official state dict.
    """

    def __init__(self, channels: int, text_dim: int = 256) -> None:
        super().__init__()
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.fc = nn.Linear(text_dim, channels)
        self.block = NAFBlock(channels)

    def forward(self, x: torch.Tensor, text_embedding: torch.Tensor) -> torch.Tensor:
        """Modulate ``x`` (B,C,H,W) by the instruction ``text_embedding`` (B,text_dim) and add it back.

        ``(x * gamma + beta) * mask`` is computed as ``x * (gamma * mask) + beta * mask``: one pass over the image
        instead of three, and autograd keeps ``x`` alone instead of ``x`` and ``x * gamma + beta``.
        """
        mask = torch.sigmoid(self.fc(text_embedding))[:, :, None, None]
        features = torch.addcmul(self.beta * mask, x, self.gamma * mask)
        return self.block(features) + x
