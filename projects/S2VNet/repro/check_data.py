"""``check-data``: is a dataset where the catalog looks, complete, and usable as the paper used it?

(With ``--tiny``, the demo datasets; their labels keep TotalSegmentator's other ids, mapped to background.)

Per split: the case count against the paper's split. Per case: image and label present, label ids within the
dataset's class list, the label on the image's grid (shape, spacing, origin, direction). Per split, a summary
of shapes, spacings and stored orientations. Grids come from the file headers; only labels are read in full.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from detectron2.data import DatasetCatalog, MetadataCatalog

from repro.datasets import DatasetSpec
from s2vnet.data.datasets.builtin import builtin_case_pairs, datasets_root
from s2vnet.data.volume_io import Geometry, read_volume
from s2vnet.errors import InputError


@dataclass
class SplitReport:
    """What was found in one split: ``problems`` are one-line ``"source: problem"`` strings."""

    name: str
    expected: int
    cases: int = 0
    problems: list[str] = field(default_factory=list)
    shapes: list[tuple[int, int, int]] = field(default_factory=list)
    spacings: list[tuple[float, float, float]] = field(default_factory=list)
    orientations: Counter = field(default_factory=Counter)


def header_geometry(path: Path) -> Geometry:
    """The grid of an image file from its header only (a DICOM folder is read in full)."""
    if path.is_dir():
        return read_volume(path).geometry
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as err:
        raise InputError(path, f"cannot be read ({str(err).strip().splitlines()[-1]})") from None
    if reader.GetDimension() != 3:
        raise InputError(path, f"is {reader.GetDimension()}D, not 3D")
    return Geometry(
        tuple(int(s) for s in reversed(reader.GetSize())),
        tuple(float(s) for s in reversed(reader.GetSpacing())),
        tuple(float(o) for o in reader.GetOrigin()),
        tuple(float(d) for d in reader.GetDirection()),
    )


def orientation_code(direction: tuple[float, ...]) -> str:
    """Three letters naming where the index axes i, j, k point, in ITK's LPS frame ("LPS": identity direction,
    "RAS": x and y flipped)."""
    letters = (("L", "R"), ("P", "A"), ("S", "I"))
    matrix = np.asarray(direction, dtype=float).reshape(3, 3)
    code = ""
    for column in matrix.T:
        axis = int(np.argmax(np.abs(column)))
        code += letters[axis][0 if column[axis] > 0 else 1]
    return code


def check_case(image: Path, label: Path, label_ids: set[int] | None, report: SplitReport) -> None:
    """Add one case's problems and geometry to ``report`` (``label_ids`` None: any id is allowed)."""
    missing = [p for p in (image, label) if not p.exists()]
    for path in missing:
        report.problems.append(f"{path}: missing ({'image' if path == image else 'label'} of case {image.name})")
    if missing:
        return
    try:
        grid, label_grid = header_geometry(image), header_geometry(label)
    except InputError as err:
        report.problems.append(str(err))
        return
    diffs = grid.differences(label_grid)
    if diffs:
        report.problems.append(f"{label}: not on its image's grid: {'; '.join(diffs)}")
    stored = np.unique(sitk.GetArrayFromImage(sitk.ReadImage(str(label))))
    unknown = sorted(int(v) for v in stored if label_ids is not None and int(v) not in label_ids)
    if unknown:
        report.problems.append(f"{label}: label ids {unknown[:10]} are not in the class list (ids {sorted(label_ids)})")
    report.shapes.append(grid.shape)
    report.spacings.append(grid.spacing)
    report.orientations[orientation_code(grid.direction)] += 1


def case_pairs(name: str) -> list[tuple[str, str]]:
    """``[(image, label), ...]`` of a catalog dataset: a builtin one as its folder lists them (files unchecked),
    another from the catalog."""
    try:
        return builtin_case_pairs(name)
    except InputError:
        if name not in DatasetCatalog.list():
            raise
    return [(r["file_name"], r["sem_seg_file_name"]) for r in DatasetCatalog.get(name)]


def check_split(name: str, expected: int) -> SplitReport:
    """Check every case of the catalog dataset ``name`` against a split of ``expected`` cases."""
    report = SplitReport(name, expected)
    try:
        pairs = case_pairs(name)
    except InputError as err:
        report.problems.append(str(err))
        return report
    report.cases = len(pairs)
    if report.cases != expected:
        report.problems.append(f"{name}: {report.cases} cases, the paper's split has {expected}")
    meta = MetadataCatalog.get(name)
    label_ids = {0, *meta.label_ids} if meta.unlisted_labels == "error" else None
    for image, label in pairs:
        check_case(Path(image), Path(label), label_ids, report)
    return report


def check_dataset(spec: DatasetSpec, tiny: bool = False) -> list[SplitReport]:
    """Check every split of ``spec`` (the demo's with ``tiny``) against the paper's case counts."""
    return [check_split(name, expected) for name, expected in spec.splits_for(tiny).items()]


def _range(values: list, axis: int) -> str:
    """``min-max`` of one axis of ``values`` (one number when they agree; "-" when empty)."""
    column = [v[axis] for v in values]
    if not column:
        return "-"
    low, high = min(column), max(column)
    return f"{low:g}" if low == high else f"{low:g}-{high:g}"


def report_markdown(spec: DatasetSpec, reports: list[SplitReport]) -> str:
    """The check's report: one row per split, then every problem."""
    lines = [
        f"# check-data {spec.name}",
        "",
        f"Datasets folder: `{datasets_root().resolve()}`. Expected: the case count of the paper's split.",
        "",
        "| split | cases | expected | z slices | y x pixels | spacing z (mm) | spacing y, x (mm) | orientation |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        yx = f"{_range(r.shapes, 1)} x {_range(r.shapes, 2)}"
        spacing_yx = f"{_range(r.spacings, 1)}, {_range(r.spacings, 2)}"
        orient = ", ".join(f"{code} {n}" for code, n in r.orientations.most_common()) or "-"
        lines.append(
            f"| {r.name} | {r.cases} | {r.expected} | {_range(r.shapes, 0)} | {yx} | {_range(r.spacings, 0)} "
            f"| {spacing_yx} | {orient} |"
        )
    problems = [p for r in reports for p in r.problems]
    lines += ["", f"## Problems ({len(problems)})", ""] + [f"- {p}" for p in problems]
    return "\n".join(lines) + "\n"
