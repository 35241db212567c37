"""Sine positional encoding of 2D feature maps (DETR / Mask2Former style)."""

from __future__ import annotations

import math

import torch
from torch import nn


class PositionEmbeddingSine(nn.Module):
    """Fixed sine/cosine encoding of normalised (y, x) positions.

    Args:
        num_pos_feats: channels per axis; the output has ``2 * num_pos_feats`` channels.
        temperature: frequency base.
    """

    def __init__(self, num_pos_feats: int = 128, temperature: float = 10000.0) -> None:
        super().__init__()
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B, C, H, W)`` -> encoding ``(B, 2 * num_pos_feats, H, W)`` (same dtype/device)."""
        b, _, h, w = x.shape
        y_embed = (torch.arange(h, device=x.device, dtype=torch.float32) + 0.5) / h * 2 * math.pi
        x_embed = (torch.arange(w, device=x.device, dtype=torch.float32) + 0.5) / w * 2 * math.pi
        dim_t = torch.arange(self.num_pos_feats, device=x.device, dtype=torch.float32)
        dim_t = self.temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / self.num_pos_feats)
        pos_y = self._interleave(y_embed[:, None] / dim_t)  # (H, F)
        pos_x = self._interleave(x_embed[:, None] / dim_t)  # (W, F)
        pos = torch.cat([pos_y[:, None, :].expand(h, w, -1), pos_x[None, :, :].expand(h, w, -1)], dim=-1)
        return pos.permute(2, 0, 1)[None].expand(b, -1, -1, -1).to(x.dtype)

    @staticmethod
    def _interleave(angles: torch.Tensor) -> torch.Tensor:
        return torch.stack([angles[:, 0::2].sin(), angles[:, 1::2].cos()], dim=2).flatten(1)
