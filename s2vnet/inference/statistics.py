"""Per-class volume and intensity statistics of a segmentation, and their CSV file.

One row per case and class (every class, also those not found): voxel count, volume in millilitres
(voxel count x the product of the spacing in mm / 1000) and the mean and median intensity of the class's
voxels in the input's stored units (Hounsfield units for CT, as SimpleITK reads DICOM and NIfTI with their
rescale slope and intercept applied; scanner units for MRI). Intensities of an empty class are left blank.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from s2vnet.data.volume_io import Geometry
from s2vnet.inference.writers import atomic_path

__all__ = ["STATISTICS_COLUMNS", "class_statistics", "write_statistics_csv", "read_statistics_csv"]

STATISTICS_COLUMNS = ("case", "class_id", "class", "voxels", "volume_ml", "mean_intensity", "median_intensity")


def class_statistics(
    labels: np.ndarray, intensities: np.ndarray, geometry: Geometry, class_names: Sequence[str], case: str
) -> list[dict]:
    """Rows of :data:`STATISTICS_COLUMNS` for every class.

    Args:
        labels: ``(z, y, x)`` 0 = background, ``c + 1`` = ``class_names[c]``, on ``geometry``.
        intensities: ``(z, y, x)`` the scan's voxels in stored units, same grid.
        geometry: gives the voxel volume (spacing in mm).
        class_names: names in class-index order.
        case: the case name put in every row.
    """
    if labels.shape != intensities.shape:
        raise ValueError(f"labels {labels.shape} and intensities {intensities.shape} differ in shape")
    voxel_ml = float(np.prod(geometry.spacing)) / 1000.0
    counts = np.bincount(labels.ravel(), minlength=len(class_names) + 1)
    rows = []
    for c, name in enumerate(class_names):
        count = int(counts[c + 1])
        values = intensities[labels == c + 1].astype(np.float64) if count else None
        rows.append(
            {
                "case": case,
                "class_id": c + 1,
                "class": name,
                "voxels": count,
                "volume_ml": round(count * voxel_ml, 4),
                "mean_intensity": "" if values is None else round(float(values.mean()), 3),
                "median_intensity": "" if values is None else round(float(np.median(values)), 3),
            }
        )
    return rows


def write_statistics_csv(rows: Iterable[dict], path: Path) -> Path:
    """Write rows (:data:`STATISTICS_COLUMNS`) as CSV, atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=STATISTICS_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(Path(path), ".csv") as tmp:
        tmp.write_text(buffer.getvalue(), encoding="utf-8")
    return Path(path)


def read_statistics_csv(path: Path) -> list[dict]:
    """Rows of a CSV written by :func:`write_statistics_csv` (values as strings)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
