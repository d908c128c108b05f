"""The InstructIR image model: a NAFNet U-Net whose encoder and decoder levels end in an instruction block."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from instructir.model.icb import ICB
from instructir.model.layers import NAFBlock


class InstructIR(nn.Module):
    """Instruction-guided restoration U-Net (arXiv 2401.16468), defaults = the paper's released configuration.

    Each encoder level runs NAFBlocks, then an ICB, keeps a skip, and halves the resolution with a strided
    2x2 conv; the middle is plain NAFBlocks; each decoder level upsamples (1x1 conv + PixelShuffle), adds the
    skip, runs NAFBlocks, then an ICB. Module names reproduce the official state dict, so
    ``load_state_dict`` accepts the released weights unchanged.
    """

    def __init__(
        self,
        img_channel: int = 3,
        width: int = 32,
        middle_blk_num: int = 4,
        enc_blks: Sequence[int] = (2, 2, 4, 8),
        dec_blks: Sequence[int] = (2, 2, 2, 2),
        txtdim: int = 256,
    ) -> None:
        super().__init__()
        if len(enc_blks) != len(dec_blks):
            raise ValueError(f"enc_blks and dec_blks need one entry per level, got {enc_blks} and {dec_blks}")
        self._config = {
            "img_channel": img_channel,
            "width": width,
            "middle_blk_num": middle_blk_num,
            "enc_blks": list(enc_blks),
            "dec_blks": list(dec_blks),
            "txtdim": txtdim,
        }
        # Registration order follows the official model so state-dict keys come out in the same order.
        enc_channels = [width * 2**level for level in range(len(enc_blks))]
        dec_channels = enc_channels[::-1]
        middle_channels = width * 2 ** len(enc_blks)
        self.intro = nn.Conv2d(img_channel, width, kernel_size=3, padding=1)
        self.ending = nn.Conv2d(width, img_channel, kernel_size=3, padding=1)
        self.encoders = nn.ModuleList(_blocks(c, n) for c, n in zip(enc_channels, enc_blks, strict=True))
        self.decoders = nn.ModuleList(_blocks(c, n) for c, n in zip(dec_channels, dec_blks, strict=True))
        self.middle_blks = _blocks(middle_channels, middle_blk_num)
        self.ups = nn.ModuleList(
            nn.Sequential(nn.Conv2d(2 * c, 4 * c, kernel_size=1, bias=False), nn.PixelShuffle(2)) for c in dec_channels
        )
        self.downs = nn.ModuleList(nn.Conv2d(c, 2 * c, kernel_size=2, stride=2) for c in enc_channels)
        self.enc_cond = nn.ModuleList(ICB(c, txtdim) for c in enc_channels)
        self.dec_cond = nn.ModuleList(ICB(c, txtdim) for c in dec_channels)
        self.multiple = 2 ** len(enc_blks)

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments, JSON-ready, so checkpoints can rebuild the same architecture."""
        return {key: list(value) if isinstance(value, list) else value for key, value in self._config.items()}

    def forward(self, image: torch.Tensor, text_embedding: torch.Tensor) -> torch.Tensor:
        """Restore ``image`` (B,C,H,W, values in [0,1]) as told by ``text_embedding`` (B,txtdim); same shape out.

        The input is zero-padded right and bottom to a multiple of 2**levels (16 by default) and the output
        cropped back; the network predicts a residual added to the (padded) input.
        """
        height, width = image.shape[-2:]
        pad_h = -height % self.multiple
        pad_w = -width % self.multiple
        padded = F.pad(image, (0, pad_w, 0, pad_h)) if pad_h or pad_w else image

        x = self.intro(padded)
        skips = []
        for encoder, condition, down in zip(self.encoders, self.enc_cond, self.downs, strict=True):
            x = condition(encoder(x), text_embedding)
            skips.append(x)
            x = down(x)
        x = self.middle_blks(x)
        for up, skip, decoder, condition in zip(self.ups, reversed(skips), self.decoders, self.dec_cond, strict=True):
            x = condition(decoder(up(x) + skip), text_embedding)
        out = self.ending(x) + padded
        return out[:, :, :height, :width]


def _blocks(channels: int, count: int) -> nn.Sequential:
    """``count`` NAFBlocks of width ``channels`` in sequence."""
    return nn.Sequential(*(NAFBlock(channels) for _ in range(count)))
