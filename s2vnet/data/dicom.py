"""Reading one DICOM series, refusing series whose slices do not form a regular, orthogonal grid.

ITK stacks the slices it is given and takes the slice spacing from the first and last positions, so a series
with a missing slice is read with an averaged spacing and a gantry-tilted series (slices shifted sideways
along the table) with the slant distance as its spacing and no shear. Both give wrong volumes and distances.
Before any voxel is read, every slice's ``ImagePositionPatient`` is projected on the slice normal (the cross
product of the two ``ImageOrientationPatient`` directions), and a series is refused when

* the steps along the normal differ by more than the tolerance (a missing, extra or duplicated slice), or
* a step has a sideways component larger than the tolerance (a gantry tilt or another shear),

where the tolerance is ``max(0.01 mm, 1% of the median step)``. Resample such a series onto a regular
orthogonal grid (or export it as NIfTI with a tool that does) before segmenting it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from s2vnet.data.validate import VolumeLimits, check_voxel_count
from s2vnet.errors import InputError

__all__ = [
    "read_dicom_series",
    "series_geometry_problem",
    "SLICE_TOLERANCE_MM",
    "SLICE_TOLERANCE_FRACTION",
    "DicomSeries",
    "dicom_series",
    "choose_series",
    "holds_dicom",
]

SLICE_TOLERANCE_MM = 0.01
SLICE_TOLERANCE_FRACTION = 0.01
_POSITION, _ORIENTATION = "0020|0032", "0020|0037"


def series_geometry_problem(positions: np.ndarray, orientation: np.ndarray) -> str | None:
    """Why slices at ``positions`` do not form a regular orthogonal grid, or None when they do.

    Args:
        positions: ``(n, 3)`` ImagePositionPatient of the slices in reading order (mm, LPS).
        orientation: the 6 ImageOrientationPatient values (row direction, column direction).
    """
    positions = np.asarray(positions, dtype=float)
    if len(positions) < 2:
        return None
    normal = np.cross(orientation[:3], orientation[3:])
    if np.linalg.norm(normal) < 1e-3:
        return "ImageOrientationPatient does not give two independent directions"
    normal /= np.linalg.norm(normal)
    steps = np.diff(positions, axis=0)
    along = steps @ normal
    sideways = np.linalg.norm(steps - np.outer(along, normal), axis=1)
    typical = float(np.median(np.abs(along)))
    tolerance = max(SLICE_TOLERANCE_MM, SLICE_TOLERANCE_FRACTION * typical)
    if np.min(np.abs(along)) < tolerance:
        return "two slices lie at the same position along the slice normal (duplicated slices?)"
    if np.ptp(along) > tolerance:
        low, high = np.min(np.abs(along)), np.max(np.abs(along))
        return (
            f"slice spacing varies from {low:.4g} to {high:.4g} mm along the slice normal (a missing or extra "
            f"slice?); tolerance {tolerance:.3g} mm"
        )
    if np.max(sideways) > tolerance:
        tilt = math.degrees(math.atan2(float(np.max(sideways)), typical))
        return (
            f"slices are shifted sideways by up to {np.max(sideways):.3g} mm per slice, i.e. not stacked along "
            f"their normal (gantry tilt of about {tilt:.1f} degrees?); tolerance {tolerance:.3g} mm"
        )
    return None


def _numbers(text: str, count: int, tag: str, file: str) -> np.ndarray:
    try:
        values = np.array([float(v) for v in text.strip().split("\\")], dtype=float)
    except ValueError:
        values = np.zeros(0)
    if values.shape != (count,) or not np.all(np.isfinite(values)):
        raise InputError(file, f"DICOM tag {tag} has an unreadable value '{text.strip()[:60]}'")
    return values


def _slice_headers(files: list[str]) -> tuple[tuple[int, ...], np.ndarray | None, np.ndarray | None]:
    """(size of the first slice, ``(n, 3)`` positions, orientation) from the files' headers only.

    Positions/orientation are None when the series carries none (ITK then stacks the slices at 1 mm).
    """
    reader = sitk.ImageFileReader()
    positions, orientation, size = [], None, ()
    for file in files:
        reader.SetFileName(file)
        reader.ReadImageInformation()
        size = size or reader.GetSize()
        if not (reader.HasMetaDataKey(_POSITION) and reader.HasMetaDataKey(_ORIENTATION)):
            return size, None, None
        positions.append(_numbers(reader.GetMetaData(_POSITION), 3, "ImagePositionPatient", file))
        if orientation is None:
            orientation = _numbers(reader.GetMetaData(_ORIENTATION), 6, "ImageOrientationPatient", file)
    return size, np.stack(positions), orientation


@dataclass(frozen=True)
class DicomSeries:
    """One DICOM series of a folder: its Series Instance UID (as GDCM groups files), files in slice order."""

    uid: str
    files: tuple[str, ...]
    description: str = ""

    def label(self) -> str:
        """``"'CT Body' 1.2.3 (20 files)"`` for messages."""
        name = f"'{self.description}' " if self.description else ""
        return f"{name}{self.uid or '<no Series Instance UID>'} ({len(self.files)} files)"


def _series_description(path: str) -> str:
    """Series Description (0008,103E) of one file, or "" (read without the pixel data)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    try:
        reader.ReadImageInformation()
        return reader.GetMetaData("0008|103e").strip() if reader.HasMetaDataKey("0008|103e") else ""
    except RuntimeError:
        return ""


def dicom_series(folder: str | os.PathLike) -> list[DicomSeries]:
    """The DICOM series in ``folder`` (not its sub-folders), largest first; files sorted by slice position.

    Raises:
        InputError: the folder holds no DICOM series.
    """
    reader = sitk.ImageSeriesReader()
    found = []
    for uid in reader.GetGDCMSeriesIDs(str(folder)):
        files = tuple(reader.GetGDCMSeriesFileNames(str(folder), uid))
        found.append(DicomSeries(uid, files, _series_description(files[0]) if files else ""))
    if not found:
        raise InputError(folder, "folder holds no DICOM series")
    return sorted(found, key=lambda s: -len(s.files))


def choose_series(folder: str | os.PathLike, uid: str | None = None, strict: bool = False) -> DicomSeries:
    """The series of ``folder`` to read: ``uid`` if given, else the only one (or, unless ``strict``, the largest).

    Raises:
        InputError: no DICOM series; ``uid`` not in the folder; several series with ``strict`` and no ``uid``
            (the message names every series and says how to choose).
    """
    series = dicom_series(folder)
    if uid is not None:
        chosen = [s for s in series if s.uid == uid]
        if not chosen:
            raise InputError(folder, f"holds no DICOM series {uid}; it holds {', '.join(s.label() for s in series)}")
        return chosen[0]
    if len(series) > 1:
        listing = ", ".join(s.label() for s in series)
        if strict:
            raise InputError(
                folder,
                f"holds {len(series)} DICOM series: {listing}; choose one with "
                "--dicom-series UID, or put each series in its own folder",
            )
        logging.getLogger("s2vnet.data.volume_io").warning(
            "%s holds %d DICOM series (%s); reading the largest, %s", folder, len(series), listing, series[0].uid
        )
    return series[0]


def holds_dicom(folder: str | os.PathLike, files: Sequence[str] | None = None, probe: int = 3) -> bool:
    """Whether one of the folder's first ``probe`` files (by name) carries the DICOM preamble (``DICM`` at byte 128).

    Hidden files and symbolic links are not opened. ``files``: the folder's file names, if already listed.
    """
    folder = Path(folder)
    if files is None:
        try:
            files = [e.name for e in os.scandir(folder) if e.is_file(follow_symlinks=False)]
        except OSError:
            return False
    for name in sorted(f for f in files if not f.startswith("."))[:probe]:
        path = folder / name
        if path.is_symlink():
            continue
        try:
            with open(path, "rb") as handle:
                handle.seek(128)
                if handle.read(4) == b"DICM":
                    return True
        except OSError:
            continue
    return False


def read_dicom_series(folder: Path, limits: VolumeLimits, uid: str | None = None, strict: bool = False) -> sitk.Image:
    """Read one DICOM series of ``folder`` (:func:`choose_series`) after checking its size and slice geometry.

    Slices are sorted by SimpleITK/GDCM (by position along the normal); when the folder holds several series
    and ``uid`` names none, the largest is read with a warning naming them all (an error when ``strict``).

    Raises:
        InputError: no series, an unknown ``uid``, several series with ``strict``, too many voxels, or slices
            that are not a regular orthogonal grid.
    """
    log = logging.getLogger("s2vnet.data.volume_io")
    reader = sitk.ImageSeriesReader()
    files = choose_series(folder, uid, strict).files
    size, positions, orientation = _slice_headers(list(files))
    check_voxel_count((len(files),) + tuple(size[:2]), limits, str(folder))
    if positions is None:
        log.warning(
            "%s: DICOM series without ImagePositionPatient/ImageOrientationPatient; slices are stacked "
            "with the reader's default spacing",
            folder,
        )
    else:
        problem = series_geometry_problem(positions, orientation)
        if problem:
            raise InputError(folder, f"DICOM series refused: {problem}")
    reader.SetFileNames(list(files))
    return reader.Execute()
