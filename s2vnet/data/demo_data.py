"""Fetch the demo data: ``python -m s2vnet.data.demo_data [--root DIR]`` (also ``s2vnet-demo-data``).

Downloads the TotalSegmentator 2.18.0 source archive with pip (PyPI, sha256-pinned), unpacks the
reference scans the demo uses, and resamples the DICOM case's label onto the DICOM grid. Safe to
re-run: finished steps are skipped, and each step writes to a temporary name first.
See :mod:`s2vnet.data.datasets.demo` for what the datasets contain.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tarfile
import uuid
from pathlib import Path

import SimpleITK as sitk

from s2vnet.data.datasets.demo import DICOM_LABEL_ON_GRID, demo_root
from s2vnet.errors import cli_errors
from s2vnet.utils.fetch import pip_download_pinned

ARCHIVE = "totalsegmentator-2.18.0.tar.gz"
ARCHIVE_SHA256 = "5d4223ef93973bc36d710869d11e7742ead2c154c72f7f9edcaaadd5b6c4bd03"
MEMBER_PREFIX = "totalsegmentator-2.18.0/tests/reference_files/"
NEEDED = (
    "example_ct.nii.gz",
    "example_seg_fast_force_split.nii.gz",
    "example_ct_dicom/",
    "example_seg_dicom.nii.gz",
    "example_mr_sm.nii.gz",
    "example_seg_mr.nii.gz",
)


def fetch_archive(downloads: Path) -> Path:
    """Download the pinned sdist into ``downloads`` with pip and verify its sha256."""
    return pip_download_pinned(
        "totalsegmentator==2.18.0", ARCHIVE, ARCHIVE_SHA256, downloads, ["--no-binary", "totalsegmentator"]
    )


def _wanted(name: str) -> str | None:
    """Path below reference_files/ for archive members the demo needs, else None."""
    if not name.startswith(MEMBER_PREFIX):
        return None
    rel = name[len(MEMBER_PREFIX) :]
    if ".." in Path(rel).parts or not any(rel == n or (n.endswith("/") and rel.startswith(n)) for n in NEEDED):
        return None
    return rel


def extract_reference_files(archive: Path, target: Path) -> None:
    """Unpack the needed reference files into ``target`` (atomically: a temp folder, then rename)."""
    tmp = target.with_name(f".tmp-{uuid.uuid4().hex[:8]}")
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar.getmembers():
                rel = _wanted(member.name)
                if rel is None or not member.isfile():
                    continue
                out = tmp / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, out.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def resample_dicom_label(ref: Path) -> Path:
    """Put ``example_seg_dicom.nii.gz`` onto the DICOM series' grid (physical space, nearest neighbour)."""
    out = ref / DICOM_LABEL_ON_GRID
    if out.exists():
        return out
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(ref / "example_ct_dicom")))
    grid = reader.Execute()
    label = sitk.ReadImage(str(ref / "example_seg_dicom.nii.gz"))
    moved = sitk.Resample(label, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, label.GetPixelID())
    tmp = out.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{out.name}")
    sitk.WriteImage(moved, str(tmp), useCompression=True)
    tmp.rename(out)
    return out


def prepare_demo_data(root: Path | None = None) -> Path:
    """Fetch, unpack and prepare the demo data under ``root`` (default :func:`demo_root`)."""
    root = Path(root) if root is not None else demo_root()
    ref = root / "reference_files"
    if not (ref / "example_ct.nii.gz").exists():
        root.mkdir(parents=True, exist_ok=True)
        extract_reference_files(fetch_archive(root / "downloads"), ref)
    resample_dicom_label(ref)
    return ref


@cli_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Fetch the S2VNet demo data (TotalSegmentator 2.18.0 reference scans)."
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help="target folder (default: $S2VNET_DEMO_DATA or $DETECTRON2_DATASETS/s2vnet_demo)",
    )
    args = parser.parse_args(argv)
    ref = prepare_demo_data(args.root)
    print(f"demo data ready in {ref}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
