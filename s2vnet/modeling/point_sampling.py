"""Point sampling of mask logits/targets, shared by the matcher and the criterion.

Points are given in normalised image coordinates ``(x, y)`` in ``[0, 1]`` (``(0, 0)`` = top-left
corner of the top-left pixel, ``(1, 1)`` = bottom-right corner of the bottom-right pixel), so the
same points can be read from maps of any resolution (mask head at 1/4, k-means logits coarser,
targets at input resolution).

All randomness comes from an optional ``torch.Generator``; ``None`` uses torch's default generator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["point_sample", "uniform_point_coords", "uncertain_point_coords", "logit_uncertainty"]


def point_sample(input: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear values of ``input`` at normalised points (``F.grid_sample``, ``align_corners=False``).

    Points outside the image read zero padding.

    Args:
        input: (B, C, H, W) maps.
        coords: (B, P, 2) points as ``(x, y)`` in ``[0, 1]``.

    Returns:
        (B, C, P) sampled values, in ``input``'s dtype.
    """
    if input.dim() != 4 or coords.dim() != 3 or coords.shape[-1] != 2:
        raise ValueError(
            f"point_sample expects input (B, C, H, W) and coords (B, P, 2), got "
            f"{tuple(input.shape)} and {tuple(coords.shape)}"
        )
    grid = (2.0 * coords.to(input.dtype) - 1.0).unsqueeze(2)  # (B, P, 1, 2) in [-1, 1]
    return F.grid_sample(input, grid, mode="bilinear", padding_mode="zeros", align_corners=False).squeeze(3)


def _rand(shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    """Uniform [0, 1) fp32 numbers drawn from ``generator`` (on its own device), moved to ``device``."""
    if generator is None:
        return torch.rand(shape, device=device)
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def uniform_point_coords(
    num_rows: int, num_points: int, device: torch.device, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Uniformly random points.

    Returns:
        (num_rows, num_points, 2) fp32 ``(x, y)`` in ``[0, 1)``.
    """
    return _rand((num_rows, num_points, 2), torch.device(device), generator)


def logit_uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """Uncertainty of binary mask logits: ``-|logit|`` (highest at the decision boundary).

    Args:
        logits: any shape.

    Returns:
        same shape.
    """
    return -logits.abs()


def uncertain_point_coords(
    logits: torch.Tensor,
    num_points: int,
    oversample_ratio: float,
    importance_ratio: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Points concentrated where the mask logits are uncertain (PointRend-style importance sampling).

    Draws ``int(oversample_ratio * num_points)`` uniform points, keeps the
    ``int(importance_ratio * num_points)`` most uncertain (``-|logit|``, read by :func:`point_sample`)
    and fills the remaining ``num_points`` with fresh uniform points. Not differentiable (no gradient
    flows to ``logits``).

    Args:
        logits: (R, 1, h, w) mask logits.
        num_points: P, points per row.
        oversample_ratio: >= 1.
        importance_ratio: in [0, 1].
        generator: source of all random numbers; None = torch's default generator.

    Returns:
        (R, P, 2) fp32 ``(x, y)`` in ``[0, 1)``, on ``logits``' device.
    """
    if logits.dim() != 4 or logits.shape[1] != 1:
        raise ValueError(f"uncertain_point_coords expects logits (R, 1, h, w), got {tuple(logits.shape)}")
    if oversample_ratio < 1 or not 0 <= importance_ratio <= 1:
        raise ValueError(
            f"need oversample_ratio >= 1 and 0 <= importance_ratio <= 1, got {oversample_ratio} and {importance_ratio}"
        )
    rows, device = logits.shape[0], logits.device
    num_sampled = int(num_points * oversample_ratio)
    num_uncertain = min(int(importance_ratio * num_points), num_sampled)
    num_random = num_points - num_uncertain
    with torch.no_grad():
        candidates = uniform_point_coords(rows, num_sampled, device, generator)  # (R, S, 2)
        uncertainty = logit_uncertainty(point_sample(logits.detach().float(), candidates))[:, 0]  # (R, S)
        top = uncertainty.topk(num_uncertain, dim=1).indices  # (R, U)
        picked = torch.gather(candidates, 1, top.unsqueeze(-1).expand(-1, -1, 2))  # (R, U, 2)
        fill = uniform_point_coords(rows, num_random, device, generator)  # (R, P - U, 2)
    return torch.cat([picked, fill], dim=1)
