"""The demo datasets built from TotalSegmentator's reference scans (labels are model output)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from detectron2.data import DatasetCatalog, MetadataCatalog

from s2vnet.data.datasets.demo import DEMO_CLASSES, DICOM_LABEL_ON_GRID
from s2vnet.data.datasets.register import label_map_for
from s2vnet.data.preprocess import PreprocessSettings, prepare_volume
from s2vnet.data.volume_io import read_label, read_volume

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def demo_env(demo_reference_files, monkeypatch):
    monkeypatch.setenv("S2VNET_DEMO_DATA", str(demo_reference_files.parent))
    return demo_reference_files


def _centroid_x(label: np.ndarray, value: int) -> float:
    return float(np.argwhere(label == value)[:, 2].mean())


def test_demo_datasets_load(demo_env):
    for name, case in [
        ("demo_ct_train", "example_ct"),
        ("demo_ct_test", "example_ct_dicom"),
        ("demo_mr", "example_mr_sm"),
    ]:
        (record,) = DatasetCatalog.get(name)
        assert record["case_id"] == case and Path(record["file_name"]).exists()
        assert MetadataCatalog.get(name).stuff_classes == list(DEMO_CLASSES)


def test_dicom_label_was_moved_onto_the_dicom_grid(demo_env):
    dicom = read_volume(demo_env / "example_ct_dicom")
    moved = read_label(demo_env / DICOM_LABEL_ON_GRID, reference=dicom.geometry)  # raises if off-grid
    original = sitk.ReadImage(str(demo_env / "example_seg_dicom.nii.gz"))
    assert original.GetOrigin() != sitk.Image(dicom.geometry.to_sitk(dicom.array)).GetOrigin()  # a real move
    counts_before = np.bincount(sitk.GetArrayFromImage(original).ravel(), minlength=118)
    counts_after = np.bincount(moved.array.ravel(), minlength=118)
    for label_id in (1, 5, 6, 52):  # spleen, liver, stomach, aorta: same voxel size, so counts match
        assert abs(int(counts_after[label_id]) - int(counts_before[label_id])) <= 0.02 * counts_before[label_id]


@pytest.mark.parametrize("name", ["demo_ct_train", "demo_ct_test", "demo_mr"])
def test_demo_cases_hold_the_organs_in_a_common_orientation(demo_env, name):
    (record,) = DatasetCatalog.get(name)
    prepared = prepare_volume(
        record["file_name"], record["modality"], PreprocessSettings(), record["sem_seg_file_name"], label_map_for(name)
    )
    present = set(np.unique(prepared.label).tolist()) - {0}
    if name.startswith("demo_ct"):
        assert present == set(range(1, len(DEMO_CLASSES) + 1))
    liver, spleen = DEMO_CLASSES.index("liver") + 1, DEMO_CLASSES.index("spleen") + 1
    assert _centroid_x(prepared.label, liver) < _centroid_x(prepared.label, spleen)  # LPS: patient right is low x


def test_visualize_data_writes_pngs(demo_env, tmp_path):
    out = tmp_path / "vis"
    cmd = [
        sys.executable,
        str(REPO / "tools" / "visualize_data.py"),
        "--config-file",
        str(REPO / "configs" / "demo" / "s2vnet_r18_demo.yaml"),
        "--dataset",
        "demo_ct_train",
        "--num",
        "2",
        "--output-dir",
        str(out),
        "INPUT.VOLUME.CACHE_DIR",
        str(tmp_path / "cache"),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    pngs = sorted(out.glob("*.png"))
    assert [p.name for p in pngs] == ["demo_ct_train_example_ct_clip0.png", "demo_ct_train_example_ct_clip1.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000 for p in pngs)
