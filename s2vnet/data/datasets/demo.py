"""The demo datasets: real CT/MR scans shipped inside the TotalSegmentator 2.18.0 source archive.

``python -m s2vnet.data.demo_data`` fetches that archive from PyPI (hash-pinned) and unpacks its
``tests/reference_files`` under :func:`demo_root`. Three datasets are registered (lazily):

* ``demo_ct_train``: ``example_ct.nii.gz`` (abdominal CT, 3 mm) with ``example_seg_fast_force_split.nii.gz``;
* ``demo_ct_test``: the DICOM series ``example_ct_dicom/`` (0.98 x 0.98 x 2 mm) with
  ``example_seg_dicom.nii.gz`` resampled onto the DICOM grid in physical space (nearest neighbour);
* ``demo_mr``: ``example_mr_sm.nii.gz`` with ``example_seg_mr.nii.gz``.

The labels are TotalSegmentator model output, not human annotation. Only the eight BTCV organs
that both CT cases contain are trained (:data:`DEMO_CLASSES`); every other TotalSegmentator label
is mapped to background. Their TotalSegmentator ids ("total" task for CT, "total_mr" for MR):

    class                     CT id  MR id
    spleen                      1      1
    liver                       5      5
    stomach                     6      6
    pancreas                    7      7
    right_adrenal_gland         8      8
    aorta                      52     23
    inferior_vena_cava         63     24
    portal_and_splenic_vein    64     25
"""
from __future__ import annotations

import os
from pathlib import Path

from s2vnet.data.datasets.register import register_volume_dataset

DEMO_CLASSES = (
    "spleen", "liver", "stomach", "pancreas", "right_adrenal_gland", "aorta", "inferior_vena_cava",
    "portal_and_splenic_vein",
)
DEMO_CT_IDS = (1, 5, 6, 7, 8, 52, 63, 64)
DEMO_MR_IDS = (1, 5, 6, 7, 8, 23, 24, 25)
# The DICOM case's label, moved onto the DICOM grid by ``python -m s2vnet.data.demo_data``.
DICOM_LABEL_ON_GRID = "example_seg_dicom_on_dicom_grid.nii.gz"


def demo_root() -> Path:
    """``$S2VNET_DEMO_DATA``, else ``$DETECTRON2_DATASETS/s2vnet_demo``, else ``./datasets/s2vnet_demo``."""
    if os.environ.get("S2VNET_DEMO_DATA"):
        return Path(os.environ["S2VNET_DEMO_DATA"])
    return Path(os.environ.get("DETECTRON2_DATASETS", "datasets")) / "s2vnet_demo"


def reference_files() -> Path:
    return demo_root() / "reference_files"


def _case(image: str, label: str) -> list[tuple[str, str]]:
    ref = reference_files()
    return [(str(ref / image), str(ref / label))]


def register_demo_datasets() -> None:
    """Register demo_ct_train, demo_ct_test and demo_mr (paths resolved when loaded)."""
    register_volume_dataset("demo_ct_train", cases=lambda: _case("example_ct.nii.gz", "example_seg_fast_force_split.nii.gz"),
                            class_names=DEMO_CLASSES, label_ids=DEMO_CT_IDS, modality="CT", unlisted_labels="background")
    register_volume_dataset("demo_ct_test", cases=lambda: _case("example_ct_dicom", DICOM_LABEL_ON_GRID),
                            class_names=DEMO_CLASSES, label_ids=DEMO_CT_IDS, modality="CT", unlisted_labels="background")
    register_volume_dataset("demo_mr", cases=lambda: _case("example_mr_sm.nii.gz", "example_seg_mr.nii.gz"),
                            class_names=DEMO_CLASSES, label_ids=DEMO_MR_IDS, modality="MRI", unlisted_labels="background")
