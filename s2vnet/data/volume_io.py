"""Reading and writing 3D medical volumes with their geometry.

Conventions (nnU-Net's IO contract, stated once here and used everywhere):

* arrays are indexed ``(z, y, x)``, i.e. SimpleITK's index ``(i, j, k)`` reversed;
* ``Geometry.spacing`` is in millimetres in the same ``(z, y, x)`` order as the array;
* ``Geometry.origin`` and ``Geometry.direction`` are kept exactly as SimpleITK reports them
  (physical LPS ``(x, y, z)`` origin; 3x3 row-major direction whose columns are the physical
  directions of the index axes ``i, j, k``), so a prediction can be written back on the input grid.

Readable inputs: NIfTI (``.nii``, ``.nii.gz``), NRRD (``.nrrd``, ``.nhdr``), MetaImage (``.mha``,
``.mhd``) and DICOM series folders. Labels must lie on their image's grid: a mismatch is an error,
never a silent resample.
"""
from __future__ import annotations

import gzip
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from s2vnet.errors import InputError

__all__ = [
    "Geometry", "Volume", "read_volume", "read_label", "write_volume", "check_same_grid",
    "IMAGE_SUFFIXES", "WRITE_SUFFIXES", "SINGLE_FILE_SUFFIXES",
]

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
WRITE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")
# Formats whose header and voxels live in one file (no detached .nhdr/.mhd data file): the writable ones.
SINGLE_FILE_SUFFIXES = WRITE_SUFFIXES


@dataclass(frozen=True)
class Geometry:
    """Where a voxel array lies in physical space.

    Attributes:
        shape: array shape ``(z, y, x)``.
        spacing: voxel size in mm, ``(z, y, x)``.
        origin: physical position of voxel ``[0, 0, 0]``, SimpleITK order ``(x, y, z)``, mm.
        direction: 9 floats, SimpleITK's row-major direction cosine matrix.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]

    @classmethod
    def from_sitk(cls, image: sitk.Image) -> "Geometry":
        """Geometry of a 3D SimpleITK image."""
        return cls(
            shape=tuple(int(s) for s in reversed(image.GetSize())),
            spacing=tuple(float(s) for s in reversed(image.GetSpacing())),
            origin=tuple(float(o) for o in image.GetOrigin()),
            direction=tuple(float(d) for d in image.GetDirection()),
        )

    def to_sitk(self, array: np.ndarray) -> sitk.Image:
        """Wrap ``array`` (shape ``self.shape``) in a SimpleITK image carrying this geometry."""
        if tuple(array.shape) != self.shape:
            raise ValueError(f"array shape {array.shape} does not match geometry shape {self.shape}")
        image = sitk.GetImageFromArray(np.ascontiguousarray(array))
        image.SetSpacing(tuple(reversed(self.spacing)))
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image

    def physical_to_index(self, point: Sequence[float]) -> tuple[float, float, float]:
        """Physical LPS point ``(x, y, z)`` in mm -> continuous SimpleITK index ``(i, j, k)``."""
        matrix = np.asarray(self.direction, dtype=float).reshape(3, 3) * np.asarray(self.spacing[::-1])
        offset = np.asarray(point, dtype=float) - np.asarray(self.origin)
        return tuple(float(v) for v in np.linalg.solve(matrix, offset))

    def differences(self, other: "Geometry") -> list[str]:
        """Human-readable list of what differs between two grids (empty when they match).

        Tolerances: spacing 1e-4 relative, origin 1% of the smallest voxel, direction 1e-4.
        """
        diffs = []
        if self.shape != other.shape:
            diffs.append(f"shape (z, y, x) {other.shape} != {self.shape}")
        if not np.allclose(self.spacing, other.spacing, rtol=1e-4, atol=1e-6):
            diffs.append(f"spacing (z, y, x) {_fmt(other.spacing)} != {_fmt(self.spacing)}")
        if not np.allclose(self.origin, other.origin, rtol=0, atol=0.01 * min(self.spacing)):
            diffs.append(f"origin {_fmt(other.origin)} != {_fmt(self.origin)}")
        if not np.allclose(self.direction, other.direction, rtol=0, atol=1e-4):
            diffs.append(f"direction {_fmt(other.direction)} != {_fmt(self.direction)}")
        return diffs


@dataclass
class Volume:
    """A voxel array ``(z, y, x)`` with its geometry and the path it came from."""

    array: np.ndarray
    geometry: Geometry
    source: str


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def _has_suffix(path: Path, suffixes: Sequence[str]) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in suffixes)


def _read_dicom_series(folder: Path) -> sitk.Image:
    """Read the largest DICOM series in ``folder`` (slices sorted by SimpleITK/GDCM; a warning if several)."""
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise InputError(folder, "folder holds no DICOM series")
    files = max((reader.GetGDCMSeriesFileNames(str(folder), sid) for sid in series), key=len)
    if len(series) > 1:
        logging.getLogger(__name__).warning("%s holds %d DICOM series; reading the largest (%d files)",
                                            folder, len(series), len(files))
    reader.SetFileNames(files)
    return reader.Execute()


def _read_sitk(path: Path) -> sitk.Image:
    if not path.exists():
        raise InputError(path, "no such file or folder")
    if path.is_dir():
        reader = _read_dicom_series
    elif _has_suffix(path, IMAGE_SUFFIXES) or path.suffix.lower() in ("", ".dcm"):
        reader = lambda p: sitk.ReadImage(str(p))  # noqa: E731
    else:
        raise InputError(path, f"unsupported file type; expected one of {', '.join(IMAGE_SUFFIXES)} or a DICOM folder")
    try:
        return reader(path)
    except RuntimeError as err:  # SimpleITK reports unreadable files this way
        first = str(err).strip().splitlines()[-1] if str(err).strip() else "unknown reader error"
        raise InputError(path, f"cannot be read as an image ({first[:160]})") from None


def _as_3d(image: sitk.Image, path: Path) -> sitk.Image:
    """Accept 3D scalar images, and 4D ones whose last axis has length 1."""
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(path, f"has {image.GetNumberOfComponentsPerPixel()} components per voxel; expected a scalar volume")
    size = image.GetSize()
    if image.GetDimension() == 4 and size[3] == 1:
        return image[:, :, :, 0]
    if image.GetDimension() != 3:
        raise InputError(path, f"is {image.GetDimension()}D with size {size}; expected a 3D volume")
    return image


_NIFTI_FLOATS = {16: "f4", 64: "f8"}  # NIfTI datatype codes of float32 / float64


def _nifti_float_layout(path: Path) -> tuple[np.dtype, int] | None:
    """(dtype, data offset) of a float NIfTI-1/-2 file, or None for other types and formats."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as handle:
        header = handle.read(540)
    for order in "<>":
        size = np.frombuffer(header[:4], f"{order}i4")[0]
        if size == 348:
            code, offset = np.frombuffer(header[70:72], f"{order}i2")[0], np.frombuffer(header[108:112], f"{order}f4")[0]
        elif size == 540:
            code, offset = np.frombuffer(header[12:14], f"{order}i2")[0], np.frombuffer(header[168:176], f"{order}i8")[0]
        else:
            continue
        kind = _NIFTI_FLOATS.get(int(code))
        return (np.dtype(order + kind), int(offset)) if kind else None
    return None


def count_nonfinite_nifti(path: str | os.PathLike) -> int:
    """NaN/inf voxels stored in a float NIfTI file (0 for integer files).

    ITK's NIfTI reader silently turns NaN into 0, so the stored bytes are scanned directly.
    """
    path = Path(path)
    layout = _nifti_float_layout(path)
    if layout is None:
        return 0
    dtype, offset = layout
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    count, chunk = 0, (1 << 24) * dtype.itemsize
    with opener(path, "rb") as handle:
        handle.seek(offset)
        for block in iter(lambda: handle.read(chunk), b""):
            usable = len(block) - len(block) % dtype.itemsize
            count += int(np.count_nonzero(~np.isfinite(np.frombuffer(block[:usable], dtype))))
    return count


def read_volume(path: str | os.PathLike) -> Volume:
    """Read a 3D image file or DICOM series folder.

    Args:
        path: NIfTI / NRRD / MetaImage file, or a folder holding one DICOM series.

    Returns:
        :class:`Volume` whose ``array`` has shape ``(z, y, x)`` and the stored dtype.

    Raises:
        InputError: missing or unreadable file, an image that is not 3D and scalar, or a float NIfTI
            holding NaN/inf (which ITK would otherwise read as 0).
    """
    path = Path(path)
    image = _as_3d(_read_sitk(path), path)
    if path.is_file() and _has_suffix(path, (".nii", ".nii.gz")) and image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        bad = count_nonfinite_nifti(path)
        if bad:
            raise InputError(path, f"contains {bad} NaN or infinite intensities")
    return Volume(sitk.GetArrayFromImage(image), Geometry.from_sitk(image), str(path))


def check_same_grid(reference: Geometry, other: Geometry, source: str | os.PathLike) -> None:
    """Raise :class:`InputError` naming ``source`` if ``other`` is not on ``reference``'s grid."""
    diffs = reference.differences(other)
    if diffs:
        raise InputError(source, "label is not on its image's grid: " + "; ".join(diffs))


def read_label(path: str | os.PathLike, reference: Geometry | None = None) -> Volume:
    """Read an integer label volume, optionally checking it lies on ``reference``'s grid.

    Float-typed label files are accepted when every value is an integer (a common NIfTI export).

    Returns:
        :class:`Volume` with an integer ``array`` of shape ``(z, y, x)``.
    """
    volume = read_volume(path)
    array = volume.array
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or not np.all(array == np.round(array)):
            raise InputError(path, "label volume holds non-integer values")
        array = array.astype(np.int64)
    elif array.dtype.kind not in "iub":
        raise InputError(path, f"label volume has unsupported voxel type {array.dtype}")
    if reference is not None:
        check_same_grid(reference, volume.geometry, path)
    volume.array = array
    return volume


def write_volume(array: np.ndarray, geometry: Geometry, path: str | os.PathLike) -> Path:
    """Write ``array`` (shape ``geometry.shape``) to ``path`` with exactly that geometry.

    The file is written under a temporary name in the same folder and renamed into place, so an
    interrupted write never leaves a half-written file at ``path``.

    Args:
        array: voxel values ``(z, y, x)``; label arrays are stored as uint8 or uint16 when they fit.
        geometry: the grid to write on, usually the input image's.
        path: output file, one of ``.nii.gz``, ``.nii``, ``.nrrd``, ``.mha``.
    """
    path = Path(path)
    if not _has_suffix(path, WRITE_SUFFIXES):
        raise InputError(path, f"unsupported output type; expected one of {', '.join(WRITE_SUFFIXES)}")
    if array.ndim != 3 or tuple(array.shape) != geometry.shape:
        raise InputError(path, f"array shape {array.shape} does not match the target grid {geometry.shape}")
    array = _compact_integer(array)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        sitk.WriteImage(geometry.to_sitk(array), str(tmp), useCompression=True)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _compact_integer(array: np.ndarray) -> np.ndarray:
    """Store non-negative integer arrays in the smallest of uint8 / uint16 that holds them."""
    if array.dtype.kind == "b":
        return array.astype(np.uint8)
    if array.dtype.kind not in "iu" or array.size == 0 or array.min() < 0:
        return array
    top = int(array.max())
    if top <= np.iinfo(np.uint8).max:
        return array.astype(np.uint8)
    if top <= np.iinfo(np.uint16).max:
        return array.astype(np.uint16)
    return array
