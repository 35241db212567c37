"""A small synthetic CT DICOM series written with pydicom (complete enough for highdicom to reference)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid


def write_ct_series(
    folder: Path,
    hu: np.ndarray,
    spacing_zyx: Sequence[float] = (2.5, 0.8, 0.7),
    origin_xyz: Sequence[float] = (-20.0, 15.0, 40.0),
    orientation: Sequence[float] = (1, 0, 0, 0, 1, 0),
    series_uid: str | None = None,
    description: str = "synthetic CT",
    study_uid: str | None = None,
    prefix: str = "slice",
) -> list[Path]:
    """Write ``hu`` (z, y, x) as one file per slice (rows = y, columns = x), named in reverse slice order.

    Slice ``z`` lies at ``origin + z * dz * normal`` with ``normal = row direction x column direction``.
    Pixel values are stored as ``hu + 1024`` with Rescale Intercept -1024, as scanners do.
    """
    folder.mkdir(parents=True, exist_ok=True)
    row_dir, col_dir = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    normal = np.cross(row_dir, col_dir)
    study_uid, series_uid, frame_uid = study_uid or generate_uid(), series_uid or generate_uid(), generate_uid()
    paths = []
    for z in range(hu.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"{prefix}{hu.shape[0] - 1 - z:03d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Phantom^Test", "PHANTOM1", "", "O"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID, ds.ReferringPhysicianName = (
            "20240101",
            "120000",
            "",
            "1",
            "",
        )
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber, ds.SeriesDescription = "CT", 3, z + 1, description
        ds.Manufacturer, ds.PositionReferenceIndicator = "test", ""
        ds.ImageOrientationPatient = [float(v) for v in orientation]
        ds.ImagePositionPatient = [float(v) for v in np.asarray(origin_xyz, float) + z * spacing_zyx[0] * normal]
        ds.PixelSpacing = [float(spacing_zyx[1]), float(spacing_zyx[2])]
        ds.SliceThickness = float(spacing_zyx[0])
        ds.Rows, ds.Columns = hu.shape[1], hu.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PixelData = (hu[z].astype(np.int32) + 1024).clip(0, 65535).astype(np.uint16).tobytes()
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
    return paths
