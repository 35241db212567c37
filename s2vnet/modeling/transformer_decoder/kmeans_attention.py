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

    Training computes this as written (:meth:`reference`). Inference (eval mode) on a level with more pixels than
    centroids computes the same quantities factored (:meth:`factored`): the key and value projections are linear,
    so they move from the ``L`` pixels to the ``N`` centroids, and the assignment sums pixels per winner instead of
    multiplying by a one-hot ``(N, L)`` matrix. Equal up to floating-point rounding; at 512 x 512 it removes most
    of the finest level's arithmetic (with ``L <= N`` projecting the pixels is the cheaper side, so that stays).
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
        path = self.factored if not self.training and pixels.shape[1] > centroids.shape[1] else self.reference
        with torch.autocast(device_type=centroids.device.type, enabled=False):
            update, logits = path(centroids, centroid_pos, pixels, pixel_pos)
        out = centroids + self.dropout(self.out_proj(update.to(centroids.dtype)))  # update step: C <- C + A V
        return self.norm(out), logits

    def reference(
        self, centroids: torch.Tensor, centroid_pos: torch.Tensor, pixels: torch.Tensor, pixel_pos: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 2-3 as written: ``(A V / |A|) (B, N, D)`` and ``logits = Q K^T (B, N, L)``, fp32."""
        q = self.q_proj((centroids + centroid_pos).float())
        k = self.k_proj((pixels + pixel_pos).float())
        v = self.v_proj(pixels.float())
        logits = torch.einsum("bnd,bld->bnl", q, k)  # Q K^T: affinity of each pixel to each centroid
        return kmeans_update(logits, v), logits  # assignment (arg-max over centroids) + mean of assigned values

    def factored(
        self, centroids: torch.Tensor, centroid_pos: torch.Tensor, pixels: torch.Tensor, pixel_pos: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The same as :meth:`reference` with the projections on the centroid side (no gradient use intended).

        ``q . (W_k x + b_k) = (q W_k) . x + q . b_k`` gives the logits without projecting the ``L`` keys, and the
        mean of ``W_v x + b_v`` over a cluster is ``W_v`` (mean of x) ``+ b_v``, so only ``N`` means are projected.
        """
        q = self.q_proj((centroids + centroid_pos).float())
        # Pixel-major (B, L, N): the GEMM and the arg-max over centroids both run along contiguous memory (an
        # arg-max over the strided N axis of (B, N, L) costs more than the GEMM at 512 x 512).
        by_pixel = torch.baddbmm(
            (q @ self.k_proj.bias)[:, None], (pixels + pixel_pos).float(), (q @ self.k_proj.weight).mT
        )
        means, filled = cluster_means(by_pixel.mT, pixels.float(), winner=by_pixel.argmax(dim=2))
        return torch.where(filled, self.v_proj(means), torch.zeros_like(means)), by_pixel.mT


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


def cluster_means(
    logits: torch.Tensor, values: torch.Tensor, winner: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of the values that pick each centroid as arg-max, by summing per winner (no one-hot matrix).

    Args:
        logits: ``(B, N, L)`` clustering logits; values: ``(B, L, D)``.
        winner: ``(B, L)`` ``logits.argmax(dim=1)`` if the caller already has it.

    Returns:
        ``means (B, N, D)`` (zero for a centroid no pixel picked) and ``filled (B, N, 1)`` bool, whether any did.
    """
    b, n, _ = logits.shape
    winner = logits.argmax(dim=1) if winner is None else winner
    flat = (winner + n * torch.arange(b, device=logits.device)[:, None]).flatten()  # (B * L) in [0, B*N)
    sums = values.new_zeros(b * n, values.shape[-1]).index_add_(0, flat, values.flatten(0, 1))
    counts = values.new_zeros(b * n).index_add_(0, flat, values.new_ones(flat.shape)).view(b, n, 1)  # fixed shape
    return sums.view(b, n, -1) / counts.clamp(min=1.0), counts > 0


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
