"""Output formats for a :class:`~s2vnet.inference.api.SegmentationResult`: one table, keyed by name and suffix.

=============  ==========================  ============================================================
name           suffixes                    what is written
=============  ==========================  ============================================================
``nifti``      ``.nii.gz``, ``.nii``       label map on the input grid + ``<stem>.json`` naming the labels
``nrrd``       ``.nrrd``                   the same as NRRD (not a Slicer segmentation)
``mha``        ``.mha``                    the same as MetaImage
``slicer``     ``.seg.nrrd``               3D Slicer segmentation: every class a named, coloured, coded segment
``dicom-seg``  ``.seg.dcm``, ``.dcm``      DICOM Segmentation referencing the source series (DICOM input only)
=============  ==========================  ============================================================

A format is found from ``--format NAME`` or from the output's suffix (longest match, any case, so
``.seg.nrrd`` is Slicer's and ``SEG.NII.GZ`` is NIfTI). Each member is called as
``fmt.write(result, path, source)`` with :class:`SourceScan` telling where the scan came from, and writes
atomically (a temporary name in the same folder, then :func:`os.replace`), so an interrupted run never
leaves a half-written file. ``fmt.outputs(path)`` lists every file a write produces (resumable folder runs
test them all).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from s2vnet.data.anatomy import AnatomyCode, anatomy_code
from s2vnet.data.volume_io import Geometry, matching_suffix
from s2vnet.errors import InputError
from s2vnet.inference.api import SegmentationResult, sidecar_path
from s2vnet.utils.visualize import class_colors

__all__ = [
    "SourceScan",
    "OutputFormat",
    "OUTPUT_FORMATS",
    "ALL_SUFFIXES",
    "format_named",
    "format_of_path",
    "resolve_format",
    "atomic_path",
    "write_slicer_segmentation",
    "segment_colors",
]


@dataclass(frozen=True)
class SourceScan:
    """The scan a result was computed from.

    Attributes:
        path: the input file or DICOM folder.
        series_uid: the DICOM series read from ``path`` when it holds several (None: its only one).
        interactive: clicks refined the result (DICOM-SEG records SEMIAUTOMATIC instead of AUTOMATIC).
    """

    path: Path
    series_uid: str | None = None
    interactive: bool = False

    @property
    def is_dicom(self) -> bool:
        return self.path.is_dir()


WriteFn = Callable[[SegmentationResult, Path, SourceScan], Path]


@dataclass(frozen=True)
class OutputFormat:
    """One output format.

    Attributes:
        name: the ``--format`` value.
        suffixes: file suffixes, lower case; the first is used for folder runs.
        write: ``write(result, path, source) -> path``, atomic.
        sidecar: whether ``<stem>.json`` naming the labels is written beside the file.
        needs_dicom: only for DICOM-series inputs (the output references the source instances).
        description: one line for ``--help``.
    """

    name: str
    suffixes: tuple[str, ...]
    write: WriteFn
    sidecar: bool
    needs_dicom: bool
    description: str

    def outputs(self, path: Path) -> list[Path]:
        """Every file that writing ``path`` produces."""
        return [path, sidecar_path(path)] if self.sidecar else [path]

    def file_name(self, stem: str) -> str:
        """``stem`` + the default suffix."""
        return stem + self.suffixes[0]


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` ending in ``suffix`` (lower case); on success it replaces ``path``.

    On any exception (Ctrl-C included) the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = suffix or matching_suffix(path, ALL_SUFFIXES) or ""
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{stem}{suffix.lower()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def segment_colors(num_classes: int) -> np.ndarray:
    """RGB in [0, 1] ``(K, 3)`` per class: the viewer's and figures' colours, so every output looks alike."""
    return class_colors(num_classes)


# ---------------------------------------------------------------------------------------------- label maps


def _write_label_map(result: SegmentationResult, path: Path, source: SourceScan) -> Path:
    return result.save(path)


# ---------------------------------------------------------------------------------------------- 3D Slicer


def _terminology(code: AnatomyCode) -> dict:
    """A Slicer ``TerminologyEntry`` (as :mod:`slicerio` writes it) from the coded anatomy."""
    entry = {
        "contextName": "Segmentation category and type - DICOM master list",
        "category": [code.category.scheme, code.category.value, code.category.meaning],
        "type": [code.type.scheme, code.type.value, code.type.meaning],
    }
    if code.modifier is not None:
        entry["typeModifier"] = [code.modifier.scheme, code.modifier.value, code.modifier.meaning]
    return entry


def _ijk_to_lps(geometry: Geometry) -> np.ndarray:
    """4 x 4 matrix from the voxel index ``(i, j, k, 1)`` to physical LPS mm."""
    matrix = np.eye(4)
    matrix[:3, :3] = np.asarray(geometry.direction, dtype=float).reshape(3, 3) * np.asarray(geometry.spacing[::-1])
    matrix[:3, 3] = geometry.origin
    return matrix


def _extent(mask_ijk: np.ndarray) -> list[int]:
    """Slicer's segment extent ``[i0, i1, j0, j1, k0, k1]`` (``[0, -1, ...]`` when empty)."""
    if not mask_ijk.any():
        return [0, -1, 0, -1, 0, -1]
    return [int(v) for axis in np.nonzero(mask_ijk) for v in (axis.min(), axis.max())]


def write_slicer_segmentation(labels: np.ndarray, geometry: Geometry, class_names: list[str], path: Path) -> Path:
    """Write a 3D Slicer ``.seg.nrrd``: one layer, segment ``c + 1`` = ``class_names[c]`` (every class, even empty).

    Args:
        labels: uint ``(z, y, x)`` on ``geometry`` (0 = background, ``c + 1`` = class ``c``).
        geometry: the input's grid; Slicer reads it from ``space directions`` / ``space origin`` (LPS).
        class_names: names in class-index order; each segment gets its name, colour and coded terminology.
    """
    import slicerio  # a runtime dependency, imported here so ``s2vnet`` imports without it

    voxels = np.ascontiguousarray(labels.astype(np.uint8 if len(class_names) < 256 else np.uint16).transpose(2, 1, 0))
    colors = segment_colors(len(class_names))
    segments = []
    for c, name in enumerate(class_names):
        segments.append(
            {
                "id": f"Segment_{c + 1}",
                "name": name,
                "color": [round(float(v), 6) for v in colors[c]],
                "labelValue": c + 1,
                "layer": 0,
                "extent": _extent(voxels == c + 1),
                "terminology": _terminology(anatomy_code(name)),
            }
        )
    segmentation = {
        "voxels": voxels,
        "ijkToLPS": _ijk_to_lps(geometry),
        "segments": segments,
        "containedRepresentationNames": ["Binary labelmap"],
        "masterRepresentation": "Binary labelmap",
    }
    with atomic_path(path, ".seg.nrrd") as tmp:
        slicerio.write_segmentation(str(tmp), segmentation)
    return path


def _write_slicer(result: SegmentationResult, path: Path, source: SourceScan) -> Path:
    return write_slicer_segmentation(result.labels, result.geometry, result.class_names, path)


# ---------------------------------------------------------------------------------------------- DICOM-SEG


def _write_dicom_seg(result: SegmentationResult, path: Path, source: SourceScan) -> Path:
    from s2vnet.inference.dicom_seg import write_dicom_seg  # imports highdicom only when used

    if not source.is_dicom:
        raise InputError(
            source.path,
            "is not a DICOM series: a DICOM-SEG can only reference a DICOM input; write .seg.nrrd or .nii.gz instead",
        )
    return write_dicom_seg(
        result.labels, result.class_names, path, source.path, source.series_uid, interactive=source.interactive
    )


# ---------------------------------------------------------------------------------------------- the table


OUTPUT_FORMATS: Mapping[str, OutputFormat] = MappingProxyType(
    {
        f.name: f
        for f in (
            OutputFormat(
                "nifti", (".nii.gz", ".nii"), _write_label_map, True, False, "NIfTI label map + label-name JSON"
            ),
            OutputFormat("nrrd", (".nrrd",), _write_label_map, True, False, "NRRD label map + label-name JSON"),
            OutputFormat("mha", (".mha",), _write_label_map, True, False, "MetaImage label map + label-name JSON"),
            OutputFormat("slicer", (".seg.nrrd",), _write_slicer, False, False, "3D Slicer segmentation (.seg.nrrd)"),
            OutputFormat(
                "dicom-seg",
                (".seg.dcm", ".dcm"),
                _write_dicom_seg,
                False,
                True,
                "DICOM Segmentation (DICOM-series input only)",
            ),
        )
    }
)
ALL_SUFFIXES: tuple[str, ...] = tuple(s for f in OUTPUT_FORMATS.values() for s in f.suffixes)


def format_named(name: str) -> OutputFormat:
    """The format called ``name`` (``--format``)."""
    fmt = OUTPUT_FORMATS.get(name.lower())
    if fmt is None:
        raise InputError("--format", f"unknown output format '{name}'; expected one of {', '.join(OUTPUT_FORMATS)}")
    return fmt


def format_of_path(path: Path) -> OutputFormat | None:
    """The format whose suffix ``path`` ends with (longest match, any case), or None."""
    suffix = matching_suffix(path, ALL_SUFFIXES)
    if suffix is None:
        return None
    return next(f for f in OUTPUT_FORMATS.values() if suffix in f.suffixes)


def resolve_format(output: Path, name: str | None, is_file: bool) -> OutputFormat:
    """The format of one run: ``name`` if given (it must agree with a file output's suffix), else the suffix's.

    Args:
        output: the ``--output`` path.
        name: ``--format`` or None.
        is_file: whether ``output`` names one file (single scan) rather than a folder (folder run: NIfTI default).
    """
    by_suffix = format_of_path(output) if is_file else None
    if name is None:
        if by_suffix is None and is_file:
            raise InputError(output, f"unsupported output type; expected one of {', '.join(ALL_SUFFIXES)}")
        return by_suffix or OUTPUT_FORMATS["nifti"]
    fmt = format_named(name)
    if is_file and by_suffix is not fmt:
        raise InputError(
            output,
            f"--format {fmt.name} writes {' or '.join(fmt.suffixes)} files; the output name does not end with one",
        )
    return fmt
