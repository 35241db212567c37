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
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from s2vnet.data.validate import VolumeLimits, check_voxel_count
from s2vnet.errors import InputError

__all__ = ["read_dicom_series", "series_geometry_problem", "SLICE_TOLERANCE_MM", "SLICE_TOLERANCE_FRACTION"]

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
        return (f"slice spacing varies from {low:.4g} to {high:.4g} mm along the slice normal (a missing or extra "
                f"slice?); tolerance {tolerance:.3g} mm")
    if np.max(sideways) > tolerance:
        tilt = math.degrees(math.atan2(float(np.max(sideways)), typical))
        return (f"slices are shifted sideways by up to {np.max(sideways):.3g} mm per slice, i.e. not stacked along "
                f"their normal (gantry tilt of about {tilt:.1f} degrees?); tolerance {tolerance:.3g} mm")
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


def read_dicom_series(folder: Path, limits: VolumeLimits) -> sitk.Image:
    """Read the largest DICOM series in ``folder`` after checking its size and slice geometry.

    Slices are sorted by SimpleITK/GDCM (by position along the normal); a warning is logged when the folder
    holds several series.

    Raises:
        InputError: no series, too many voxels, or slices that are not a regular orthogonal grid.
    """
    log = logging.getLogger("s2vnet.data.volume_io")
    reader = sitk.ImageSeriesReader()
    series = reader.GetGDCMSeriesIDs(str(folder))
    if not series:
        raise InputError(folder, "folder holds no DICOM series")
    files = max((reader.GetGDCMSeriesFileNames(str(folder), sid) for sid in series), key=len)
    if len(series) > 1:
        log.warning("%s holds %d DICOM series; reading the largest (%d files)", folder, len(series), len(files))
    size, positions, orientation = _slice_headers(list(files))
    check_voxel_count((len(files),) + tuple(size[:2]), limits, str(folder))
    if positions is None:
        log.warning("%s: DICOM series without ImagePositionPatient/ImageOrientationPatient; slices are stacked "
                    "with the reader's default spacing", folder)
    else:
        problem = series_geometry_problem(positions, orientation)
        if problem:
            raise InputError(folder, f"DICOM series refused: {problem}")
    reader.SetFileNames(files)
    return reader.Execute()
