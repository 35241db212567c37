"""The viewer's DICOM-SEG download: offered for sessions opened from a DICOM series, next to the NIfTI one."""

from __future__ import annotations

import io
import shutil

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_series import write_ct_series
from serve_support import client, tiny_predictor, write_scan
from synthetic import organ_phantom

from s2vnet.data.dicom import choose_series


@pytest.fixture(scope="module")
def predictor():
    return tiny_predictor()


@pytest.fixture
def root(tmp_path):
    data = tmp_path / "data"
    write_ct_series(
        data / "dicom case", organ_phantom((6, 48, 40))[0], spacing_zyx=(2.0, 0.8, 0.7), orientation=(1, 0, 0, 0, -1, 0)
    )
    write_scan(data / "ct.nii.gz")
    return data


def _open_segmented(api, path: str) -> dict:
    info = api.post("/api/sessions", json={"path": path, "modality": "CT"}).json()
    return api.post(f"/api/sessions/{info['id']}/auto", json={}).json()


def test_dicom_session_downloads_a_dicom_seg_equal_to_the_nifti(predictor, root, tmp_path):
    with client(predictor, root) as api:
        info = _open_segmented(api, "dicom case")
        assert info["dicom"] is True
        response = api.get(f"/api/sessions/{info['id']}/segmentation.dcm")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/dicom"
        assert response.headers["content-disposition"] == 'attachment; filename="dicom_case_s2vnet.seg.dcm"'
        nifti = tmp_path / "seg.nii.gz"
        nifti.write_bytes(api.get(f"/api/sessions/{info['id']}/segmentation.nii.gz").content)
    seg = hd.seg.Segmentation.from_dataset(pydicom.dcmread(io.BytesIO(response.content)))
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in choose_series(root / "dicom case").files]
    combined = seg.get_pixels_by_source_instance([s.SOPInstanceUID for s in sources], combine_segments=True)
    to_label = np.zeros(len(seg.SegmentSequence) + 1, np.uint8)
    for item in seg.SegmentSequence:
        to_label[item.SegmentNumber] = ["a", "b"].index(item.SegmentLabel) + 1
    np.testing.assert_array_equal(to_label[combined], sitk.GetArrayFromImage(sitk.ReadImage(str(nifti))))
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == sources[0].SeriesInstanceUID


def test_dicom_seg_is_refused_for_a_nifti_session_and_before_segmenting(predictor, root):
    with client(predictor, root) as api:
        info = _open_segmented(api, "ct.nii.gz")
        assert info["dicom"] is False
        response = api.get(f"/api/sessions/{info['id']}/segmentation.dcm")
        assert response.status_code == 409 and "was not opened from a DICOM series" in response.json()["error"]
        fresh = api.post("/api/sessions", json={"path": "dicom case", "modality": "CT"}).json()
        response = api.get(f"/api/sessions/{fresh['id']}/segmentation.dcm")
        assert response.status_code == 409 and "run the automatic segmentation first" in response.json()["error"]


def test_an_unreferenceable_series_is_one_json_line_without_server_paths(predictor, root, demo_reference_files):
    shutil.copytree(demo_reference_files / "example_ct_dicom", root / "anonymised")
    with client(predictor, root) as api:
        info = _open_segmented(api, "anonymised")
        response = api.get(f"/api/sessions/{info['id']}/segmentation.dcm")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith("anonymised: has no StudyInstanceUID") and str(root) not in error
