"""Multi-scale deformable attention (Deformable DETR) in pure PyTorch.

Every query looks at ``n_points`` locations per head and level, placed around its reference point by
learned offsets, and averages the bilinearly sampled values with learned softmax weights. The sampling uses
``F.grid_sample`` on each level (bilinear, zero padding, ``align_corners=False``): a normalised location
(x, y) in [0, 1] maps to the pixel coordinate ``(x * W - 0.5, y * H - 0.5)``, so pixel centres sit at
``((j + 0.5) / W, (i + 0.5) / H)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MSDeformAttn", "ms_deform_attn_sample"]


def ms_deform_attn_sample(
    value: torch.Tensor,
    spatial_shapes: Sequence[Sequence[int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Weighted bilinear sampling of per-head values on every level.

    Args:
        value: ``(B, sum HW, n_heads, head_dim)``, levels flattened row-major one after the other.
        spatial_shapes: ``n_levels`` pairs ``(H, W)``.
        sampling_locations: ``(B, Lq, n_heads, n_levels, n_points, 2)`` normalised (x, y) in [0, 1].
        attention_weights: ``(B, Lq, n_heads, n_levels, n_points)``.

    Returns:
        ``(B, Lq, n_heads * head_dim)``.
    """
    b, _, n_heads, head_dim = value.shape
    _, lq, _, n_levels, n_points, _ = sampling_locations.shape
    per_level = value.split([int(h) * int(w) for h, w in spatial_shapes], dim=1)
    grids = 2.0 * sampling_locations - 1.0
    weights = attention_weights.transpose(1, 2).reshape(b * n_heads, 1, lq, n_levels, n_points)
    out = None
    for level, (h, w) in enumerate(spatial_shapes):
        # (B, HW, heads, d) -> (B * heads, d, H, W)
        v = per_level[level].permute(0, 2, 3, 1).reshape(b * n_heads, head_dim, int(h), int(w))
        # (B, Lq, heads, P, 2) -> (B * heads, Lq, P, 2)
        g = grids[:, :, :, level].transpose(1, 2).reshape(b * n_heads, lq, n_points, 2)
        sampled = F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False)  # (B*h, d, Lq, P)
        # weighted sum over the points, accumulated level by level (no (B*h, d, Lq, L, P) stack)
        part = (sampled * weights[..., level, :]).sum(dim=-1)
        out = part if out is None else out + part
    return out.view(b, n_heads * head_dim, lq).transpose(1, 2).contiguous()


def _host_ints(values: torch.Tensor | Sequence) -> list:
    """A tensor's values as Python numbers (a device-to-host copy), or a sequence as a list."""
    return values.tolist() if torch.is_tensor(values) else list(values)


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention.

    Args:
        d_model: channels of queries, values and output (divisible by ``n_heads``).
        n_levels: feature levels.
        n_heads: attention heads.
        n_points: sampling points per head and level.
    """

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.d_model, self.n_levels, self.n_heads, self.n_points = d_model, n_levels, n_heads, n_points
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, d_model)
        self.output_proj = nn.Linear(d_model, d_model)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Offsets start on a radial pattern (head k points at angle 2*pi*k/heads, point p at distance p+1
        pixels), attention weights start uniform, projections Xavier-uniform with zero bias."""
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        direction = torch.stack([angles.cos(), angles.sin()], dim=-1)
        direction = direction / direction.abs().max(dim=-1, keepdim=True).values  # on the unit square
        scale = torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        bias = direction.view(self.n_heads, 1, 1, 2).repeat(1, self.n_levels, self.n_points, 1) * scale
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(bias.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for proj in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(proj.weight)
            nn.init.zeros_(proj.bias)

    def forward(
        self,
        query: torch.Tensor,
        reference_points: torch.Tensor,
        value: torch.Tensor,
        spatial_shapes: torch.Tensor | Sequence[Sequence[int]],
        level_start_index: torch.Tensor | Sequence[int],
        padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend from each query around its reference points.

        Args:
            query: ``(B, Lq, C)``.
            reference_points: ``(B, Lq, n_levels, 2)``, normalised (x, y) in [0, 1] on each level.
            value: ``(B, sum HW, C)``, the levels flattened row-major and concatenated.
            spatial_shapes: each level's ``(H, W)``, Python ints (no device-to-host copy) or an ``(n_levels, 2)``
                tensor.
            level_start_index: offset of each level in ``value`` (checked): ints or an ``(n_levels,)`` tensor.
            padding_mask: optional ``(B, sum HW)`` bool, True = padding (its values are zeroed).

        Returns:
            ``(B, Lq, C)``.
        """
        b, lq, _ = query.shape
        shapes = [(int(h), int(w)) for h, w in _host_ints(spatial_shapes)]
        self._check(value, shapes, _host_ints(level_start_index), reference_points)
        v = self.value_proj(value)
        if padding_mask is not None:
            v = v.masked_fill(padding_mask[..., None], 0.0)
        v = v.view(b, value.shape[1], self.n_heads, self.d_model // self.n_heads)
        offsets = self.sampling_offsets(query).view(b, lq, self.n_heads, self.n_levels, self.n_points, 2)
        weights = self.attention_weights(query).view(b, lq, self.n_heads, self.n_levels * self.n_points)
        weights = weights.softmax(-1).view(b, lq, self.n_heads, self.n_levels, self.n_points)
        # offsets are in pixels of each level: divide by (W, H) to normalise
        normaliser = torch.tensor([[w, h] for h, w in shapes], dtype=query.dtype, device=query.device)
        locations = reference_points[:, :, None, :, None, :] + offsets / normaliser[None, None, None, :, None, :]
        return self.output_proj(ms_deform_attn_sample(v, shapes, locations, weights))

    def _check(
        self, value: torch.Tensor, shapes: list[tuple], level_start_index: list[int], reference_points: torch.Tensor
    ) -> None:
        """Raise ValueError when the flattened value, level offsets and reference points disagree."""
        if len(shapes) != self.n_levels or reference_points.shape[-2:] != (self.n_levels, 2):
            raise ValueError(
                f"expected {self.n_levels} levels and reference points (..., {self.n_levels}, 2), got "
                f"{len(shapes)} levels and {tuple(reference_points.shape)}"
            )
        sizes = [h * w for h, w in shapes]
        if sum(sizes) != value.shape[1]:
            raise ValueError(f"value has {value.shape[1]} tokens but spatial_shapes sum to {sum(sizes)}")
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        if [int(s) for s in level_start_index] != starts:
            raise ValueError(f"level_start_index {list(level_start_index)} does not match shapes {shapes}")
