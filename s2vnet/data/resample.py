"""Optional in-plane resampling of ``(z, y, x)`` volumes, with the exact inverse shape kept.

Slices keep their z position; only y and x change. The output shape is
``round(n * spacing / target)`` per axis and the achieved spacing is recorded (it differs from the
target by less than half a voxel over the field of view). Images use bilinear interpolation
(antialiased when shrinking), labels use nearest-exact; going back restores the input's exact
``(y, x)`` shape so predictions can be written on the input grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

_CHUNK = 32  # slices interpolated at once, to bound peak memory on large volumes


@dataclass(frozen=True)
class InPlaneResampling:
    """An in-plane grid change and its inverse.

    Attributes:
        in_shape: ``(y, x)`` before; out_shape: ``(y, x)`` after.
        in_spacing / out_spacing: ``(y, x)`` in mm before and after.
    """

    in_shape: tuple[int, int]
    out_shape: tuple[int, int]
    in_spacing: tuple[float, float]
    out_spacing: tuple[float, float]

    @property
    def is_identity(self) -> bool:
        return self.in_shape == self.out_shape

    def index(self, yx: Sequence[float]) -> tuple[float, float]:
        """A pixel position ``(y, x)`` before -> after (pixel centres at integers, as the interpolation)."""
        return tuple(float((v + 0.5) * o / i - 0.5) for v, i, o in zip(yx, self.in_shape, self.out_shape))

    def restore_index(self, yx: Sequence[float]) -> tuple[float, float]:
        """A pixel position ``(y, x)`` after -> before (inverse of :meth:`index`)."""
        return tuple(float((v + 0.5) * i / o - 0.5) for v, i, o in zip(yx, self.in_shape, self.out_shape))

    def image(self, volume: np.ndarray) -> np.ndarray:
        """Resample an image ``(z, y, x)`` -> float32 ``(z, Y, X)`` (bilinear)."""
        return _interpolate(volume, self.out_shape, "bilinear", self.in_shape)

    def labels(self, volume: np.ndarray) -> np.ndarray:
        """Resample a label map ``(z, y, x)`` -> ``(z, Y, X)`` (nearest), dtype kept."""
        return _interpolate(volume, self.out_shape, "nearest-exact", self.in_shape)

    def restore_labels(self, volume: np.ndarray) -> np.ndarray:
        """Labels on the resampled grid ``(z, Y, X)`` -> input grid ``(z, y, x)``."""
        return _interpolate(volume, self.in_shape, "nearest-exact", self.out_shape)

    def restore_scores(self, scores: np.ndarray) -> np.ndarray:
        """Per-class scores ``(C, z, Y, X)`` -> ``(C, z, y, x)`` (bilinear), for argmax on the input grid."""
        return np.stack([_interpolate(s, self.in_shape, "bilinear", self.out_shape) for s in scores])


def plan_in_plane(
    shape: Sequence[int], spacing: Sequence[float], target: Sequence[float] | None, size: Sequence[int] | None = None
) -> InPlaneResampling:
    """Plan resampling of a ``(z, y, x)`` volume with ``spacing`` (z, y, x) to ``target`` (y, x) mm.

    ``size`` (y, x) pixels, when given, is the output shape instead (the spacing follows from it, per axis).
    ``target=None`` and ``size=None`` give the identity plan.
    """
    in_shape = (int(shape[-2]), int(shape[-1]))
    in_spacing = (float(spacing[-2]), float(spacing[-1]))
    if target is None and size is None:
        return InPlaneResampling(in_shape, in_shape, in_spacing, in_spacing)
    if size is not None:
        out_shape = (int(size[0]), int(size[1]))
    else:
        out_shape = tuple(max(1, int(round(n * s / t))) for n, s, t in zip(in_shape, in_spacing, target))
    out_spacing = tuple(n * s / m for n, s, m in zip(in_shape, in_spacing, out_shape))
    return InPlaneResampling(in_shape, out_shape, in_spacing, out_spacing)


def _interpolate(volume: np.ndarray, size: tuple[int, int], mode: str, expect: tuple[int, int]) -> np.ndarray:
    if tuple(volume.shape[-2:]) != tuple(expect):
        raise ValueError(f"in-plane shape {volume.shape[-2:]} does not match the planned {expect}")
    if tuple(size) == tuple(expect):
        return volume.astype(np.float32) if mode == "bilinear" else volume
    out = [_interpolate_chunk(volume[i : i + _CHUNK], size, mode) for i in range(0, volume.shape[0], _CHUNK)]
    return np.concatenate(out, axis=0)


def _interpolate_chunk(chunk: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    tensor = torch.from_numpy(np.ascontiguousarray(chunk)).float()[:, None]
    if mode == "bilinear":
        shrink = size[0] < chunk.shape[-2] or size[1] < chunk.shape[-1]
        out = F.interpolate(tensor, size=size, mode="bilinear", align_corners=False, antialias=shrink)
        return out[:, 0].numpy()
    out = F.interpolate(tensor, size=size, mode="nearest-exact")
    return out[:, 0].numpy().astype(chunk.dtype)
