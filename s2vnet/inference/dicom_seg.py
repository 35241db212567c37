"""DICOM Segmentation (DICOM-SEG) output with highdicom, on the source series' own frames.

The labels ``(z, y, x)`` come from reading the series with SimpleITK, whose slice ``z`` is file ``z`` of
GDCM's sorted file list and whose rows and columns are the DICOM rows and columns. So frame ``z`` of the
segmentation is source instance ``z``: highdicom copies its Image Position (Patient), references it in the
frame's Derivation Image Sequence, and the object references the source series, study and patient.

One segment per class present (BINARY, empty frames omitted), numbered 1..m in class order, each with the
class name as Segment Label, the viewer's colour as CIELab, and the coded anatomy of
:mod:`s2vnet.data.anatomy` (laterality as a type modifier). Source files whose SOP Class / Instance UID
are empty take them from their file meta information (Media Storage SOP Class / Instance UID, which are
the same by definition); a series without Study, Series or Frame of Reference UID cannot be referenced and
is refused with one line.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import numpy as np

from s2vnet.data.anatomy import AnatomyCode, CodedTerm, anatomy_code
from s2vnet.data.dicom import choose_series
from s2vnet.errors import InputError
from s2vnet.inference.writers import atomic_path, segment_colors

__all__ = ["write_dicom_seg", "read_source_series", "SEG_SERIES_NUMBER"]

SEG_SERIES_NUMBER = 900  # Series Number of the segmentation series (kept apart from the scanner's numbers)
_REQUIRED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID")


def _version() -> str:
    try:
        return importlib.metadata.version("s2vnet")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def read_source_series(folder: Path, series_uid: str | None = None) -> list:
    """The series' headers (pydicom datasets without pixel data) in the volume's slice order.

    Raises:
        InputError: the series cannot be referenced (missing UIDs) or a file cannot be read.
    """
    import pydicom

    datasets = []
    for name in choose_series(folder, series_uid).files:
        try:
            ds = pydicom.dcmread(name, stop_before_pixels=True)
        except Exception as err:  # pydicom raises several types for broken files
            raise InputError(name, f"cannot be read as DICOM ({type(err).__name__})") from None
        _fill_sop_uids(ds)
        datasets.append(ds)
    for key in _REQUIRED_UIDS:
        if not str(getattr(datasets[0], key, "") or ""):
            raise InputError(
                folder,
                f"has no {key} (anonymised without new UIDs?), so a DICOM-SEG cannot reference "
                "it; write .seg.nrrd or .nii.gz instead",
            )
    return datasets


def _fill_sop_uids(ds) -> None:
    """Empty SOP Class / Instance UID -> the file meta's Media Storage SOP Class / Instance UID."""
    meta = getattr(ds, "file_meta", None)
    for key, meta_key in (("SOPClassUID", "MediaStorageSOPClassUID"), ("SOPInstanceUID", "MediaStorageSOPInstanceUID")):
        if not str(getattr(ds, key, "") or "") and meta is not None and str(getattr(meta, meta_key, "") or ""):
            setattr(ds, key, getattr(meta, meta_key))


def _check_grid(datasets: list, labels: np.ndarray, folder: Path) -> None:
    rows, cols = int(datasets[0].Rows), int(datasets[0].Columns)
    if labels.shape != (len(datasets), rows, cols):
        raise InputError(
            folder, f"series has {len(datasets)} slices of {rows} x {cols}, but the labels are {labels.shape} (z, y, x)"
        )


def _coded(term: CodedTerm):
    from highdicom.sr import CodedConcept

    return CodedConcept(term.value, term.scheme, term.meaning)


def _description(number: int, name: str, code: AnatomyCode, rgb: np.ndarray, interactive: bool):
    """One highdicom ``SegmentDescription``."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(
        name="S2VNet", family=codes.cid7162.ArtificialIntelligence, version=_version()
    )
    description = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=name[:64],
        segmented_property_category=_coded(code.category),
        segmented_property_type=_coded(code.type),
        algorithm_type="SEMIAUTOMATIC" if interactive else "AUTOMATIC",
        algorithm_identification=algorithm,
        tracking_uid=hd.UID(),
        tracking_id=name[:64],
        display_color=hd.color.CIELabColor.from_rgb(*[float(v) * 255.0 for v in rgb]),
    )
    if code.modifier is not None:
        description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
            _coded(code.modifier)
        ]
    return description


def write_dicom_seg(
    labels: np.ndarray,
    class_names: list[str],
    path: Path,
    source_folder: Path,
    series_uid: str | None = None,
    interactive: bool = False,
) -> Path:
    """Write ``labels`` as a DICOM-SEG referencing the DICOM series they were computed on.

    Args:
        labels: uint ``(z, y, x)`` on the series' grid (0 = background, ``c + 1`` = ``class_names[c]``).
        class_names: names in class-index order.
        path: output file (``.seg.dcm`` / ``.dcm``), written atomically.
        source_folder: the DICOM folder the labels were computed from.
        series_uid: which series of the folder, when it holds several.
        interactive: clicks refined the labels (SEMIAUTOMATIC) or not (AUTOMATIC).

    Raises:
        InputError: no class present, a series that cannot be referenced, or labels off its grid.
    """
    import highdicom as hd

    datasets = read_source_series(Path(source_folder), series_uid)
    _check_grid(datasets, labels, Path(source_folder))
    present = [int(v) for v in np.unique(labels) if v > 0]
    if not present:
        raise InputError(path, "no class was found in the scan; a DICOM-SEG needs at least one segment")
    numbering = np.zeros(max(present) + 1, dtype=np.uint8 if len(present) < 256 else np.uint16)
    numbering[present] = np.arange(1, len(present) + 1)
    colors = segment_colors(len(class_names))
    descriptions = [
        _description(n + 1, class_names[v - 1], anatomy_code(class_names[v - 1]), colors[v - 1], interactive)
        for n, v in enumerate(present)
    ]
    seg = hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=numbering[labels],
        segmentation_type="BINARY",
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="S2VNet",
        manufacturer_model_name="S2VNet",
        software_versions=_version(),
        device_serial_number="none",
        content_label="S2VNET",
        content_description="S2VNet segmentation",
        series_description="S2VNet segmentation",
    )
    with atomic_path(Path(path), ".dcm") as tmp:
        seg.save_as(tmp)
    return Path(path)
