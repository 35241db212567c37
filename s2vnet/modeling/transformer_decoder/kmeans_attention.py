"""k-means cross-attention (paper Eq. 2-3, after kMaX-DeepLab) and the decoder's other sub-layers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class KMeansCrossAttention(nn.Module):
    """Centroids attend to pixels by hard cluster assignment instead of a spatial softmax.

    ``logits = Q K^T`` (one row per centroid); every pixel is assigned to its arg-max centroid; each
    centroid moves by the mean value of its pixels. The logits are returned so they can be supervised as
    mask predictions (the assignment itself has no gradient, so Q and K learn through that supervision).
    """

    def __init__(self, dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(
        self, centroids: torch.Tensor, centroid_pos: torch.Tensor, pixels: torch.Tensor, pixel_pos: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            centroids: ``(B, N, D)``; centroid_pos: ``(B, N, D)`` positional embedding of the slots.
            pixels: ``(B, L, D)`` flattened pixel features; pixel_pos: ``(B, L, D)``.

        Returns:
            updated centroids ``(B, N, D)`` and the clustering logits ``(B, N, L)`` (fp32).
        """
        with torch.autocast(device_type=centroids.device.type, enabled=False):
            q = self.q_proj((centroids + centroid_pos).float())
            k = self.k_proj((pixels + pixel_pos).float())
            v = self.v_proj(pixels.float())
            logits = torch.einsum("bnd,bld->bnl", q, k)  # Q K^T: affinity of each pixel to each centroid
            update = kmeans_update(logits, v)  # assignment (arg-max over centroids) + mean of assigned values
        out = centroids + self.dropout(self.out_proj(update.to(centroids.dtype)))  # update step: C <- C + A V
        return self.norm(out), logits


def kmeans_assignment(logits: torch.Tensor) -> torch.Tensor:
    """One-hot arg-max over centroids: ``logits (B, N, L)`` -> ``A (B, N, L)`` with one 1 per pixel column."""
    winner = logits.argmax(dim=1)  # (B, L): the centroid each pixel joins
    return F.one_hot(winner, logits.shape[1]).transpose(1, 2).to(logits.dtype)


def kmeans_update(logits: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Mean of the values assigned to each centroid: ``A V / |A|`` (zero for centroids with no pixel).

    Args:
        logits: ``(B, N, L)`` clustering logits; values: ``(B, L, D)``.

    Returns:
        ``(B, N, D)``. The division by the cluster size makes this the k-means centroid of the
        cluster, independent of the image resolution (Eq. 2 writes the unnormalised sum ``A V``).
    """
    assign = kmeans_assignment(logits.detach())
    counts = assign.sum(dim=2, keepdim=True).clamp(min=1.0)
    return torch.bmm(assign, values) / counts


class SelfAttentionLayer(nn.Module):
    """Post-norm multi-head self-attention among centroids (positions added to queries and keys)."""

    def __init__(self, dim: int, nheads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, nheads, dropout=dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """``x``, ``pos``: ``(B, N, D)`` -> ``(B, N, D)``."""
        qk = x + pos
        return self.norm(x + self.dropout(self.attn(qk, qk, x, need_weights=False)[0]))


class FFNLayer(nn.Module):
    """Post-norm two-layer feed-forward block with a residual connection."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, dim)
        )
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.dropout(self.net(x)))
