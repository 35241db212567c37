"""Exact reorientation of ``(z, y, x)`` arrays to a canonical anatomical orientation.

Only axis permutations and flips are used, so reorienting and going back is lossless and a
prediction made on the canonical array returns to the input grid voxel for voxel.
Orientation codes follow DICOM/ITK: the letter at position ``n`` names the patient direction in
which index axis ``n`` (``i`` = x, ``j`` = y, ``k`` = z) increases; "LPS" is ITK's default.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from s2vnet.errors import InputError

# letter -> (physical axis in LPS coordinates, sign)
_LETTERS = {"L": (0, 1), "R": (0, -1), "P": (1, 1), "A": (1, -1), "S": (2, 1), "I": (2, -1)}


@dataclass(frozen=True)
class Reorientation:
    """Permutation and flips taking a stored ``(z, y, x)`` array to the canonical orientation.

    Attributes:
        perm: output array axis ``a`` is input array axis ``perm[a]``.
        flip: whether output array axis ``a`` is reversed after the permutation.
    """

    perm: tuple[int, int, int] = (0, 1, 2)
    flip: tuple[bool, bool, bool] = (False, False, False)

    @property
    def is_identity(self) -> bool:
        return self.perm == (0, 1, 2) and not any(self.flip)

    def apply(self, array: np.ndarray) -> np.ndarray:
        """Stored ``(..., z, y, x)`` -> canonical ``(..., z', y', x')`` (a view when possible)."""
        lead = array.ndim - 3
        out = np.transpose(array, tuple(range(lead)) + tuple(lead + p for p in self.perm))
        axes = tuple(lead + a for a, f in enumerate(self.flip) if f)
        return np.flip(out, axes) if axes else out

    def invert(self, array: np.ndarray) -> np.ndarray:
        """Canonical ``(..., z', y', x')`` -> stored ``(..., z, y, x)``."""
        lead = array.ndim - 3
        axes = tuple(lead + a for a, f in enumerate(self.flip) if f)
        out = np.flip(array, axes) if axes else array
        inverse = np.argsort(self.perm)
        return np.transpose(out, tuple(range(lead)) + tuple(lead + int(p) for p in inverse))

    def shape(self, shape: Sequence[int]) -> tuple[int, int, int]:
        """Stored ``(z, y, x)`` shape -> canonical shape."""
        return tuple(int(shape[p]) for p in self.perm)

    def apply_index(self, zyx: Sequence[int], shape: Sequence[int]) -> tuple[int, int, int]:
        """Stored voxel ``(z, y, x)`` of a volume of stored ``shape`` -> its canonical voxel (as :meth:`apply`)."""
        canon = [int(zyx[p]) for p in self.perm]
        return tuple(int(shape[p]) - 1 - c if f else c for c, p, f in zip(canon, self.perm, self.flip))

    def invert_index(self, index: Sequence[int], shape: Sequence[int]) -> tuple[int, int, int]:
        """Canonical voxel -> stored voxel ``(z, y, x)`` of a volume of stored ``shape`` (as :meth:`invert`)."""
        stored = [0, 0, 0]
        for value, p, f in zip(index, self.perm, self.flip):
            stored[p] = int(shape[p]) - 1 - int(value) if f else int(value)
        return tuple(stored)

    def spacing(self, spacing: Sequence[float]) -> tuple[float, float, float]:
        """Stored ``(z, y, x)`` spacing -> canonical spacing."""
        return tuple(float(spacing[p]) for p in self.perm)


def reorientation_for(direction: Sequence[float], code: str, source: str = "<volume>") -> Reorientation:
    """The exact reorientation from a volume's direction matrix to ``code`` ("" = keep as stored).

    Args:
        direction: SimpleITK row-major 3x3 direction (columns = index axes i, j, k).
        code: three letters, one of each pair L/R, P/A, S/I, e.g. "LPS" or "RAS".
        source: the file the direction came from, for error messages.
    """
    if not code:
        return Reorientation()
    target = _parse_code(code)
    matrix = np.asarray(direction, dtype=float).reshape(3, 3)
    axis_of_index = np.argmax(np.abs(matrix), axis=0)  # dominant physical axis of each index axis
    if len(set(axis_of_index.tolist())) != 3:
        raise InputError(source, f"direction {np.round(matrix, 3).tolist()} is too oblique to reorient to {code}")
    sign_of_index = np.sign(matrix[axis_of_index, np.arange(3)])
    perm, flip = [0, 0, 0], [False, False, False]
    for out_index, (phys, sign) in enumerate(target):
        in_index = int(np.flatnonzero(axis_of_index == phys)[0])
        perm[2 - out_index] = 2 - in_index  # array axes are index axes reversed
        flip[2 - out_index] = bool(sign_of_index[in_index] != sign)
    return Reorientation(tuple(perm), tuple(flip))


def _parse_code(code: str) -> list[tuple[int, int]]:
    letters = code.upper()
    parsed = [_LETTERS.get(c) for c in letters]
    if len(letters) != 3 or None in parsed or len({p[0] for p in parsed}) != 3:
        raise InputError("INPUT.VOLUME.ORIENTATION", f"'{code}' is not an orientation code like 'LPS' or 'RAS'")
    return parsed
