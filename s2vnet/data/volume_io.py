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

Nothing is segmented from a broken or hostile file: the voxel count a header declares is checked against
``INPUT.VOLUME.MAX_VOXELS`` before voxels are read (:mod:`s2vnet.data.validate`), a NIfTI payload cut
short or holding NaN is refused (:mod:`s2vnet.data.nifti`; ITK reads both as zeros), a DICOM series must be
a regular orthogonal stack (:mod:`s2vnet.data.dicom`), and voxel sizes must lie in
``INPUT.VOLUME.SPACING_RANGE``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from s2vnet.data.dicom import read_dicom_series
from s2vnet.data.nifti import NIFTI_SUFFIXES, check_nifti_payload
from s2vnet.data.validate import VolumeLimits, check_spacing, check_voxel_count
from s2vnet.errors import InputError

__all__ = [
    "Geometry",
    "Volume",
    "read_volume",
    "read_label",
    "write_volume",
    "check_same_grid",
    "IMAGE_SUFFIXES",
    "WRITE_SUFFIXES",
    "SINGLE_FILE_SUFFIXES",
    "matching_suffix",
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
    def from_sitk(cls, image: sitk.Image) -> Geometry:
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

    def differences(self, other: Geometry) -> list[str]:
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
    return matching_suffix(path, suffixes) is not None


def matching_suffix(path: str | os.PathLike, suffixes: Sequence[str]) -> str | None:
    """The longest of ``suffixes`` that ``path``'s name ends with, compared case-insensitively; None if none."""
    name = Path(path).name.lower()
    found = [s for s in suffixes if name.endswith(s.lower())]
    return max(found, key=len) if found else None


def _sitk_call(call, path: Path):
    """Run a SimpleITK reader call, turning its errors into one-line InputErrors naming ``path``."""
    try:
        return call()
    except RuntimeError as err:  # SimpleITK reports unreadable files this way
        first = str(err).strip().splitlines()[-1] if str(err).strip() else "unknown reader error"
        raise InputError(path, f"cannot be read as an image ({first[:160]})") from None


# ITK chooses a reader by the lower-case suffix (an upper-case ".MHA" finds none): name it from the suffix.
_IMAGE_IO = {
    ".nii.gz": "NiftiImageIO",
    ".nii": "NiftiImageIO",
    ".nrrd": "NrrdImageIO",
    ".nhdr": "NrrdImageIO",
    ".mha": "MetaImageIO",
    ".mhd": "MetaImageIO",
}


def _read_file(path: Path, limits: VolumeLimits) -> sitk.Image:
    """One image file: header first (size limit, NIfTI payload), then the voxels."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    suffix = matching_suffix(path, IMAGE_SUFFIXES)
    if suffix is not None:
        reader.SetImageIO(_IMAGE_IO[suffix])
    _sitk_call(reader.ReadImageInformation, path)
    check_voxel_count(tuple(reversed(reader.GetSize())) + (reader.GetNumberOfComponents(),), limits, str(path))
    if _has_suffix(path, NIFTI_SUFFIXES):
        check_nifti_payload(path)
    return _sitk_call(reader.Execute, path)


def _read_sitk(path: Path, limits: VolumeLimits, series_uid: str | None, strict_series: bool) -> sitk.Image:
    if not path.exists():
        raise InputError(path, "no such file or folder")
    if path.is_dir():
        return _sitk_call(lambda: read_dicom_series(path, limits, series_uid, strict_series), path)
    if _has_suffix(path, IMAGE_SUFFIXES) or path.suffix.lower() in ("", ".dcm"):
        return _read_file(path, limits)
    raise InputError(path, f"unsupported file type; expected one of {', '.join(IMAGE_SUFFIXES)} or a DICOM folder")


def _as_3d(image: sitk.Image, path: Path) -> sitk.Image:
    """Accept 3D scalar images, and 4D ones whose last axis has length 1."""
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            path, f"has {image.GetNumberOfComponentsPerPixel()} components per voxel; expected a scalar volume"
        )
    size = image.GetSize()
    if image.GetDimension() == 4 and size[3] == 1:
        return image[:, :, :, 0]
    if image.GetDimension() != 3:
        raise InputError(path, f"is {image.GetDimension()}D with size {size}; expected a 3D volume")
    return image


def read_volume(
    path: str | os.PathLike,
    limits: VolumeLimits | None = None,
    *,
    series_uid: str | None = None,
    strict_series: bool = False,
) -> Volume:
    """Read a 3D image file or DICOM series folder.

    Args:
        path: NIfTI / NRRD / MetaImage file, or a folder holding one DICOM series.
        limits: size and voxel-size limits (config ``INPUT.VOLUME.*``; default: the config defaults).
        series_uid: for a DICOM folder holding several series, the Series Instance UID to read.
        strict_series: several series and no ``series_uid`` is an error naming them (default: read the
            largest, with a warning naming them all).

    Returns:
        :class:`Volume` whose ``array`` has shape ``(z, y, x)`` and the stored dtype.

    Raises:
        InputError: missing or unreadable file; a header declaring more than ``limits.max_voxels`` voxels
            (checked before any voxel is read); a NIfTI file cut short or holding NaN/inf (which ITK would
            read as 0); a DICOM series that is not a regular orthogonal grid; an image that is not 3D and
            scalar; a voxel size outside ``limits.spacing_range``.
    """
    path = Path(path)
    limits = limits or VolumeLimits()
    image = _as_3d(_read_sitk(path, limits, series_uid, strict_series), path)
    geometry = Geometry.from_sitk(image)
    check_spacing(geometry.spacing, limits, str(path))
    return Volume(sitk.GetArrayFromImage(image), geometry, str(path))


def check_same_grid(reference: Geometry, other: Geometry, source: str | os.PathLike) -> None:
    """Raise :class:`InputError` naming ``source`` if ``other`` is not on ``reference``'s grid."""
    diffs = reference.differences(other)
    if diffs:
        raise InputError(source, "label is not on its image's grid: " + "; ".join(diffs))


def read_label(
    path: str | os.PathLike, reference: Geometry | None = None, limits: VolumeLimits | None = None
) -> Volume:
    """Read an integer label volume, optionally checking it lies on ``reference``'s grid.

    Float-typed label files are accepted when every value is an integer (a common NIfTI export).

    Returns:
        :class:`Volume` with an integer ``array`` of shape ``(z, y, x)``.
    """
    volume = read_volume(path, limits)
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
    # ITK picks the writer by a lower-case suffix: "SEG.NII.GZ" is written as ".tmp-...-SEG.nii.gz", then renamed.
    suffix = matching_suffix(path, WRITE_SUFFIXES)
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name[: -len(suffix)]}{suffix}")
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
