"""Size and geometry limits checked before anything large is allocated, and the checks of array inputs.

Every size a file's header claims (its voxel count, the grid after in-plane resampling) is compared with
:class:`VolumeLimits` before voxels are read or resampled, so a small hostile file cannot take the machine;
voxel sizes outside ``INPUT.VOLUME.SPACING_RANGE`` are refused because they give an empty or absurd grid.
Every error is an :class:`~s2vnet.errors.InputError` naming the source and, for a limit, the key to raise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from s2vnet.errors import InputError

__all__ = [
    "VolumeLimits",
    "check_voxel_count",
    "check_resampled_size",
    "check_spacing",
    "check_array_volume",
    "ARRAY_DTYPES",
]

# Voxel types an array volume may have (what the readers and SimpleITK store): signed/unsigned integers,
# float32 and float64. bool, float16, complex and object arrays are refused.
ARRAY_DTYPES = tuple(
    np.dtype(t)
    for t in ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64")
)


@dataclass(frozen=True)
class VolumeLimits:
    """Config ``INPUT.VOLUME.{MAX_VOXELS, MAX_RESAMPLED_VOXELS, SPACING_RANGE}`` (see :mod:`s2vnet.config`)."""

    max_voxels: int = 2**29
    max_resampled_voxels: int = 2**29
    spacing_range: tuple[float, float] = (0.01, 100.0)

    @classmethod
    def from_cfg(cls, cfg) -> VolumeLimits:
        vol = cfg.INPUT.VOLUME
        return cls(int(vol.MAX_VOXELS), int(vol.MAX_RESAMPLED_VOXELS), tuple(float(v) for v in vol.SPACING_RANGE))


def _shape_text(shape: Sequence[int]) -> str:
    return " x ".join(str(int(n)) for n in shape)


def check_voxel_count(shape: Sequence[int], limits: VolumeLimits, source: str, what: str = "the header says") -> None:
    """Refuse a volume of ``shape`` with more than ``limits.max_voxels`` voxels (or an empty one).

    Args:
        shape: the extent of every axis, in any order.
        what: how the message introduces the shape ("the header says", "the array is").
    """
    count = math.prod(int(n) for n in shape)
    if count == 0:
        raise InputError(source, f"{what} {_shape_text(shape)} voxels: the volume is empty")
    if count > limits.max_voxels:
        raise InputError(
            source,
            f"{what} {_shape_text(shape)} = {count:,} voxels, more than INPUT.VOLUME.MAX_VOXELS "
            f"({limits.max_voxels:,}); raise that key to read it",
        )


def check_resampled_size(shape: Sequence[int], limits: VolumeLimits, source: str) -> None:
    """Refuse a working grid (after in-plane resampling) of more than ``limits.max_resampled_voxels`` voxels."""
    count = math.prod(int(n) for n in shape)
    if count > limits.max_resampled_voxels:
        raise InputError(
            source,
            f"resampling to INPUT.VOLUME.TARGET_SPACING gives a {_shape_text(shape)} grid = "
            f"{count:,} voxels, more than INPUT.VOLUME.MAX_RESAMPLED_VOXELS "
            f"({limits.max_resampled_voxels:,}); check the voxel size or raise that key",
        )


def check_spacing(spacing: Sequence[float], limits: VolumeLimits, source: str) -> None:
    """Refuse voxel sizes (mm, any axis order) that are not finite or lie outside ``limits.spacing_range``."""
    low, high = limits.spacing_range
    values = [float(s) for s in spacing]
    shown = "(" + ", ".join(f"{v:.4g}" for v in values) + ")"
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise InputError(source, f"voxel size {shown} mm must be positive and finite")
    if not all(low <= v <= high for v in values):
        raise InputError(
            source,
            f"voxel size {shown} mm lies outside the plausible range {low:g}..{high:g} mm (INPUT.VOLUME.SPACING_RANGE)",
        )


def _check_dtype(array: np.ndarray, source: str) -> None:
    if array.dtype not in ARRAY_DTYPES:
        raise InputError(source, f"has voxel type {array.dtype}; expected an integer type, float32 or float64")


def check_array_volume(
    array, spacing: Sequence[float], source: str = "<array>", limits: VolumeLimits | None = None
) -> None:
    """Check an in-memory volume before it is used like a read file.

    Args:
        array: the voxels, ``np.ndarray`` of shape ``(z, y, x)``.
        spacing: voxel size ``(z, y, x)`` in mm.
        source: what errors name.
        limits: size and spacing limits (default: the config defaults).

    Raises:
        InputError: not a 3D numpy array, an empty axis, an unsupported voxel type (bool, float16, complex,
            object), too many voxels, or a spacing that is not three plausible positive numbers.
    """
    limits = limits or VolumeLimits()
    if not isinstance(array, np.ndarray):
        raise InputError(source, f"is a {type(array).__name__}; expected a numpy array (z, y, x)")
    if array.ndim != 3:
        raise InputError(source, f"has shape {array.shape}; expected a 3D volume (z, y, x)")
    check_voxel_count(array.shape, limits, source, "the array is")
    _check_dtype(array, source)
    check_spacing(_three_numbers(spacing, source), limits, source)


def _three_numbers(spacing, source: str) -> tuple[float, float, float]:
    """``spacing`` as three floats; refuses strings, booleans, other lengths and non-sequences."""
    numbers = (int, float, np.integer, np.floating)
    if (
        isinstance(spacing, (str, bytes))
        or not hasattr(spacing, "__len__")
        or len(spacing) != 3
        or not all(isinstance(s, numbers) and not isinstance(s, (bool, np.bool_)) for s in spacing)
    ):
        raise InputError(source, f"spacing {spacing!r} must be three numbers (z, y, x) in mm")
    return tuple(float(s) for s in spacing)
