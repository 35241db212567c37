"""Output formats (s2vnet/inference/writers.py, dicom_seg.py) read back with highdicom, pydicom and slicerio."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import slicerio
from dicom_series import write_ct_series
from pydicom.sr.codedict import codes
from synthetic import organ_phantom

from s2vnet.data.anatomy import ANATOMY_CODES, PRIVATE_SCHEME, anatomy_code
from s2vnet.data.dicom import choose_series
from s2vnet.data.volume_io import read_label, read_volume
from s2vnet.errors import InputError
from s2vnet.inference.api import SegmentationResult
from s2vnet.inference.writers import OUTPUT_FORMATS, SourceScan, format_of_path, resolve_format, segment_colors

CLASSES = ["liver", "right_kidney", "portal_and_splenic_vein", "spleen"]  # spleen stays absent
SHAPE = (7, 40, 36)
ORIENTATION = (1, 0, 0, 0, -1, 0)  # columns go anterior: a non-identity direction, slices stacked inferiorly


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """A synthetic CT series and a label map on its grid with classes 1..3 present."""
    folder = tmp_path_factory.mktemp("writers")
    hu, phantom = organ_phantom(SHAPE)
    write_ct_series(
        folder / "ct", hu, spacing_zyx=(2.5, 0.8, 0.7), origin_xyz=(-20.0, 15.0, 40.0), orientation=ORIENTATION
    )
    volume = read_volume(folder / "ct")
    labels = phantom.copy()
    labels[5:, :6, :6] = 3
    return folder, SegmentationResult(labels, volume.geometry, CLASSES)


def _write(folder: Path, result: SegmentationResult, name: str, fmt: str) -> Path:
    return OUTPUT_FORMATS[fmt].write(result, folder / name, SourceScan(folder / "ct"))


# ---------------------------------------------------------------------------------------------- the anatomy table


def _sct_concepts() -> dict[str, set[str]]:
    """SNOMED CT code value -> meanings, as the DICOM standard lists them (pydicom's code dictionary)."""
    found: dict[str, set[str]] = {}
    for name in dir(codes.SCT):
        if name[0].isupper():
            code = getattr(codes.SCT, name)
            found.setdefault(code.value, set()).add(code.meaning.lower())
    return found


def test_every_standard_code_is_the_dicom_standards():
    concepts = _sct_concepts()
    for name, code in ANATOMY_CODES.items():
        for term in (code.category, code.type) + ((code.modifier,) if code.modifier else ()):
            assert term.scheme == "SCT", name
            assert term.meaning.lower() in concepts.get(term.value, set()), (name, term)


def test_classes_without_a_standard_code_get_the_explicit_private_fallback():
    for name in ("portal_and_splenic_vein", "prostate_uterus", "my tumour"):
        code = anatomy_code(name)
        assert not code.standard and code.type.scheme == PRIVATE_SCHEME and code.type.meaning == name
    assert (
        anatomy_code("Right-Kidney").type.value == "64033007"
        and anatomy_code("Right-Kidney").modifier.meaning == "Right"
    )


# ---------------------------------------------------------------------------------------------- format table


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.nii.gz", "nifti"),
        ("A.NII", "nifti"),
        ("a.nrrd", "nrrd"),
        ("a.seg.nrrd", "slicer"),
        ("A.SEG.NRRD", "slicer"),
        ("a.mha", "mha"),
        ("a.seg.dcm", "dicom-seg"),
        ("SEG.DCM", "dicom-seg"),
    ],
)
def test_format_from_suffix_longest_match_any_case(name, fmt):
    assert format_of_path(Path(name)).name == fmt
    assert resolve_format(Path(name), None, is_file=True).name == fmt


def test_format_flag_must_agree_with_the_file_suffix():
    assert resolve_format(Path("x.dcm"), "dicom-seg", is_file=True).name == "dicom-seg"
    assert resolve_format(Path("out"), "slicer", is_file=False).suffixes[0] == ".seg.nrrd"
    assert resolve_format(Path("out"), None, is_file=False).name == "nifti"
    with pytest.raises(InputError, match="--format dicom-seg writes .seg.dcm or .dcm files"):
        resolve_format(Path("x.nii.gz"), "dicom-seg", is_file=True)
    with pytest.raises(InputError, match="unsupported output type"):
        resolve_format(Path("x.png"), None, is_file=True)


# ---------------------------------------------------------------------------------------------- DICOM-SEG


def test_dicom_seg_reads_back_equal_to_the_nifti_voxel_for_voxel(series):
    folder, result = series
    seg_path = _write(folder, result, "seg.dcm", "dicom-seg")
    nifti = read_label(_write(folder, result, "seg.nii.gz", "nifti"), reference=result.geometry).array
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in choose_series(folder / "ct").files]
    seg = hd.seg.segread(seg_path)
    combined = seg.get_pixels_by_source_instance([s.SOPInstanceUID for s in sources], combine_segments=True)
    to_label = np.zeros(len(seg.SegmentSequence) + 1, np.uint8)
    for item in seg.SegmentSequence:
        to_label[item.SegmentNumber] = CLASSES.index(item.SegmentLabel) + 1
    np.testing.assert_array_equal(to_label[combined], nifti)
    assert [item.SegmentLabel for item in seg.SegmentSequence] == CLASSES[:3]  # one segment per class present


def test_dicom_seg_frames_lie_on_their_source_slices_and_reference_the_series(series):
    folder, result = series
    seg = pydicom.dcmread(_write(folder, result, "frames.seg.dcm", "dicom-seg"))
    sources = {
        s.SOPInstanceUID: s
        for s in (pydicom.dcmread(f, stop_before_pixels=True) for f in choose_series(folder / "ct").files)
    }
    assert len(seg.PerFrameFunctionalGroupsSequence) == int(seg.NumberOfFrames) > 0
    for frame in seg.PerFrameFunctionalGroupsSequence:
        source = sources[frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID]
        np.testing.assert_allclose(frame.PlanePositionSequence[0].ImagePositionPatient, source.ImagePositionPatient)
    first = next(iter(sources.values()))
    assert seg.StudyInstanceUID == first.StudyInstanceUID and seg.FrameOfReferenceUID == first.FrameOfReferenceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == first.SeriesInstanceUID
    assert seg.SeriesInstanceUID != first.SeriesInstanceUID and seg.PatientID == first.PatientID
    np.testing.assert_allclose(
        seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient, ORIENTATION
    )


def test_dicom_seg_segments_carry_codes_colours_and_laterality(series):
    folder, result = series
    items = {
        i.SegmentLabel: i for i in pydicom.dcmread(_write(folder, result, "codes.dcm", "dicom-seg")).SegmentSequence
    }
    liver, kidney, veins = items["liver"], items["right_kidney"], items["portal_and_splenic_vein"]
    assert liver.SegmentedPropertyTypeCodeSequence[0].CodeValue == "10200004"
    assert liver.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "91723000"
    assert liver.SegmentAlgorithmType == "AUTOMATIC" and liver.SegmentAlgorithmName == "S2VNet"
    modifier = kidney.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence[0]
    assert (kidney.SegmentedPropertyTypeCodeSequence[0].CodeValue, modifier.CodeValue) == ("64033007", "24028007")
    assert veins.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator == PRIVATE_SCHEME
    rgb = hd.color.CIELabColor.from_dicom_value(liver.RecommendedDisplayCIELabValue).to_rgb()
    np.testing.assert_allclose(np.asarray(rgb, float), segment_colors(4)[0] * 255, atol=2)


def test_dicom_seg_refuses_a_non_dicom_input_and_an_empty_result(series):
    folder, result = series
    nifti = folder / "scan.nii.gz"
    sitk.WriteImage(sitk.Image(4, 4, 4, sitk.sitkInt16), str(nifti))
    with pytest.raises(InputError, match="is not a DICOM series"):
        OUTPUT_FORMATS["dicom-seg"].write(result, folder / "x.dcm", SourceScan(nifti))
    empty = SegmentationResult(np.zeros_like(result.labels), result.geometry, CLASSES)
    with pytest.raises(InputError, match="no class was found"):
        _write(folder, empty, "empty.dcm", "dicom-seg")
    assert not (folder / "empty.dcm").exists() and not list(folder.glob(".tmp-*"))


def test_dicom_seg_of_an_anonymised_series_without_uids_is_one_line(demo_reference_files, tmp_path):
    """The demo series was anonymised to empty Study/Series UIDs: nothing could reference it."""
    folder = demo_reference_files / "example_ct_dicom"
    volume = read_volume(folder)
    result = SegmentationResult(np.ones(volume.geometry.shape, np.uint8), volume.geometry, ["liver"])
    with pytest.raises(InputError, match="has no StudyInstanceUID") as info:
        OUTPUT_FORMATS["dicom-seg"].write(result, tmp_path / "demo.dcm", SourceScan(folder))
    assert str(info.value).startswith(str(folder)) and "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------- 3D Slicer


def test_slicer_segmentation_reads_back_with_names_colours_terminology_and_grid(series):
    folder, result = series
    path = _write(folder, result, "seg.seg.nrrd", "slicer")
    seg = slicerio.read_segmentation(str(path))
    segments = seg["segments"]
    assert [s["name"] for s in segments] == CLASSES and [s["labelValue"] for s in segments] == [1, 2, 3, 4]
    np.testing.assert_allclose([s["color"] for s in segments], segment_colors(4), atol=1e-5)
    assert segments[1]["terminology"]["type"] == ["SCT", "64033007", "Kidney"]
    assert segments[1]["terminology"]["typeModifier"] == ["SCT", "24028007", "Right"]
    assert segments[3]["extent"] == [0, -1, 0, -1, 0, -1]  # spleen: empty
    np.testing.assert_array_equal(seg["voxels"].transpose(2, 1, 0), result.labels)
    reference = result.geometry.to_sitk(result.labels)
    for ijk in [(0, 0, 0), (35, 0, 0), (0, 39, 0), (0, 0, 6)]:
        lps = seg["ijkToLPS"] @ np.array([*ijk, 1.0])
        np.testing.assert_allclose(lps[:3], reference.TransformIndexToPhysicalPoint(ijk), atol=1e-6)


def test_an_interrupted_write_leaves_no_file(series, monkeypatch):
    folder, result = series

    def interrupted(*args, **kwargs):
        Path(args[0]).write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(slicerio, "write_segmentation", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _write(folder, result, "cut.seg.nrrd", "slicer")
    assert not (folder / "cut.seg.nrrd").exists() and not list(folder.glob(".tmp-*"))
