"""What ITK's NIfTI reader does not check: a payload cut short, and NaN/inf voxels.

ITK fills the voxels missing from a truncated ``.nii`` or ``.nii.gz`` with zeros and reads NaN as 0, so
both would be segmented silently. :func:`check_nifti_payload` compares the byte count the header
promises (``vox_offset + prod(dim) * bitpix / 8``) with the file size (``.nii``) or with what the gzip
stream decompresses to (``.nii.gz``; a truncated or corrupt stream is an error too), and counts
non-finite values of float files in the same pass.
"""

from __future__ import annotations

import gzip
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s2vnet.errors import InputError

__all__ = ["NiftiLayout", "nifti_layout", "check_nifti_payload", "NIFTI_SUFFIXES"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
_FLOATS = {16: "f4", 64: "f8"}  # NIfTI datatype codes of float32 / float64
_CHUNK = 1 << 24


@dataclass(frozen=True)
class NiftiLayout:
    """Where the voxels of a single-file NIfTI lie.

    Attributes:
        offset: byte offset of the first voxel (``vox_offset``).
        payload_bytes: bytes of voxel data the header promises.
        float_dtype: numpy dtype of float32/float64 files (with byte order), None for other types.
    """

    offset: int
    payload_bytes: int
    float_dtype: np.dtype | None

    @property
    def end(self) -> int:
        return self.offset + self.payload_bytes


def _opener(path: Path):
    return gzip.open if path.name.lower().endswith(".gz") else open


def _fields(header: bytes, order: str) -> tuple[int, int, list[int], float] | None:
    """(datatype, bitpix, dim[0..7], vox_offset) of a NIfTI-1 ``n+1`` / NIfTI-2 ``n+2`` header.

    ``order`` is the header's byte order.
    """
    size = int(np.frombuffer(header[:4], f"{order}i4")[0])
    if size == 348 and header[344:348] == b"n+1\x00":
        code, bitpix = np.frombuffer(header[70:74], f"{order}i2")
        return (
            int(code),
            int(bitpix),
            np.frombuffer(header[40:56], f"{order}i2").tolist(),
            float(np.frombuffer(header[108:112], f"{order}f4")[0]),
        )
    if size == 540 and header[4:8] == b"n+2\x00":
        code, bitpix = np.frombuffer(header[12:16], f"{order}i2")
        return (
            int(code),
            int(bitpix),
            np.frombuffer(header[16:80], f"{order}i8").tolist(),
            float(np.frombuffer(header[168:176], f"{order}i8")[0]),
        )
    return None


def nifti_layout(path: str | Path) -> NiftiLayout | None:
    """The voxel layout of a single-file NIfTI-1/-2 (either byte order), or None when the header is not one."""
    path = Path(path)
    try:
        with _opener(path)(path, "rb") as handle:
            header = handle.read(540)
    except (OSError, EOFError, zlib.error):
        return None
    if len(header) < 348:
        return None
    for order in "<>":
        fields = _fields(header, order)
        if fields is None:
            continue
        code, bitpix, dim, offset = fields
        if not 1 <= dim[0] <= 7 or bitpix <= 0 or not 0 <= offset < 2**62:
            return None
        voxels = math.prod(max(int(n), 0) for n in dim[1 : dim[0] + 1])
        kind = _FLOATS.get(code)
        return NiftiLayout(int(offset), (voxels * bitpix + 7) // 8, np.dtype(order + kind) if kind else None)
    return None


def _count_nonfinite(block: bytes, dtype: np.dtype) -> int:
    usable = len(block) - len(block) % dtype.itemsize
    return int(np.count_nonzero(~np.isfinite(np.frombuffer(block[:usable], dtype))))


def _scan(path: Path, layout: NiftiLayout) -> tuple[int, int]:
    """(payload bytes present, non-finite voxels among them) reading at most the promised payload."""
    present, bad, itemsize = 0, 0, layout.float_dtype.itemsize if layout.float_dtype else 1
    with _opener(path)(path, "rb") as handle:
        if handle.seek(layout.offset) != layout.offset or handle.tell() != layout.offset:
            return 0, 0
        while present < layout.payload_bytes:
            block = handle.read(min(_CHUNK - _CHUNK % itemsize, layout.payload_bytes - present))
            if not block:
                break
            present += len(block)
            if layout.float_dtype is not None:
                bad += _count_nonfinite(block, layout.float_dtype)
    return present, bad


def _needs_scan(path: Path, layout: NiftiLayout) -> bool:
    """Whether the bytes must be read: compressed files, and float files (for NaN/inf)."""
    return path.name.lower().endswith(".gz") or layout.float_dtype is not None


def check_nifti_payload(path: str | Path) -> None:
    """Refuse a NIfTI file whose voxel data is shorter than its header says, or that holds NaN/inf.

    Raises:
        InputError: naming ``path``: truncated file, truncated/corrupt gzip stream, or non-finite values.
    """
    path = Path(path)
    layout = nifti_layout(path)
    if layout is None:
        return
    if not _needs_scan(path, layout):
        present = max(path.stat().st_size - layout.offset, 0)
        bad = 0
    else:
        try:
            present, bad = _scan(path, layout)
        except (EOFError, OSError, zlib.error) as err:  # gzip.BadGzipFile is an OSError
            raise InputError(
                path, f"gzip stream is truncated or corrupt ({str(err) or type(err).__name__}); the file is incomplete"
            ) from None
    if present < layout.payload_bytes:
        raise InputError(
            path,
            f"is truncated: the header promises {layout.payload_bytes:,} bytes of voxel data, "
            f"the file holds {present:,}",
        )
    if bad:
        raise InputError(path, f"contains {bad} NaN or infinite intensities")
