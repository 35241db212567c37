"""Broken or hostile scans and arrays are refused with one InputError line, never segmented or let take the machine.

Covers: truncated NIfTI (1), sizes claimed by headers and the resampled grid (2), DICOM series that are
not a regular orthogonal stack (5), degenerate voxel sizes (7), and in-memory arrays of the Python API (8).
Hostile NIfTI files are written byte by byte (:func:`raw_nifti`), since writers refuse to produce them.
"""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from synthetic import keep_locale

from s2vnet.data.dicom import series_geometry_problem
from s2vnet.data.label_map import LabelMap
from s2vnet.data.preprocess import PreprocessSettings, prepare_loaded, prepare_volume
from s2vnet.data.validate import VolumeLimits, check_array_volume
from s2vnet.data.volume_io import Geometry, Volume, read_label, read_volume
from s2vnet.errors import InputError

NIFTI_INT16, NIFTI_FLOAT32 = (4, 16), (16, 32)  # (datatype code, bitpix)


def raw_nifti(shape_zyx, spacing_zyx=(1.0, 1.0, 1.0), payload: bytes | None = None, kind=NIFTI_INT16) -> bytes:
    """A single-file NIfTI-1 (little-endian, no orientation codes) with exactly ``payload`` after the header.

    ``payload=None`` writes the full zero payload the header promises.
    """
    header = bytearray(348)
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, 3, *reversed(shape_zyx), 1, 1, 1, 1)
    struct.pack_into("<2h", header, 70, *kind)
    struct.pack_into("<8f", header, 76, 1.0, *reversed(spacing_zyx), 1.0, 1.0, 1.0, 1.0)
    struct.pack_into("<2f", header, 108, 352.0, 1.0)  # vox_offset, scl_slope
    header[344:348] = b"n+1\x00"
    if payload is None:
        payload = bytes(math.prod(shape_zyx) * kind[1] // 8)
    return bytes(header) + bytes(4) + payload


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def _ramp(shape=(4, 16, 16), dtype=np.int16) -> np.ndarray:
    return (np.arange(math.prod(shape)).reshape(shape) % 500 + 1).astype(dtype)


# ---------------------------------------------------------------- 1. truncated files


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_a_truncated_nifti_is_refused_naming_the_file(tmp_path, suffix, dtype):
    whole = tmp_path / f"whole{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(_ramp(dtype=dtype)), str(whole))
    data = whole.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) * 2 // 3])  # what ITK would read with the missing voxels set to 0

    with pytest.raises(InputError, match="truncated") as info:
        read_volume(cut)
    assert str(info.value).startswith(f"{cut}: ") and "\n" not in str(info.value)
    assert read_volume(whole).array.shape == (4, 16, 16)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_a_nifti_whose_payload_is_short_is_refused(tmp_path, suffix):
    """A complete gzip stream of a cut .nii: the gzip layer is fine, the payload is not."""
    path = _write(tmp_path / f"short{suffix}", raw_nifti((4, 8, 8), payload=bytes(4 * 8 * 8 * 2 - 10)))
    with pytest.raises(
        InputError, match=r"is truncated: the header promises 512 bytes of voxel data, the file holds 502"
    ):
        read_volume(path)


def test_a_truncated_label_is_refused_too(tmp_path, write_image):
    image = write_image(tmp_path / "img.nii.gz", _ramp())
    label = write_image(tmp_path / "seg.nii", (_ramp() % 3).astype(np.uint8))
    label.write_bytes(label.read_bytes()[:-100])
    with pytest.raises(InputError, match="truncated") as info:
        prepare_volume(image, "CT", PreprocessSettings(), label, LabelMap((1, 2)))
    assert str(info.value).startswith(str(label))


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
@pytest.mark.parametrize("compress", [False, True])
def test_truncated_nrrd_and_mha_are_refused(tmp_path, suffix, compress):
    path = tmp_path / f"cut{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(_ramp()), str(path), useCompression=compress)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(InputError, match="cannot be read"):
        read_volume(path)


def test_nan_in_a_float_nifti_is_still_refused(tmp_path):
    array = _ramp(dtype=np.float32)
    array[1, 2, 3] = np.nan
    path = tmp_path / "nan.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    with pytest.raises(InputError, match="contains 1 NaN or infinite"):
        read_volume(path)


# ---------------------------------------------------------------- 2. sizes claimed by headers


def test_a_header_claiming_too_many_voxels_is_refused_before_reading(tmp_path):
    path = _write(tmp_path / "huge.nii.gz", raw_nifti((1000, 1000, 1000), payload=b""))  # a few hundred bytes
    assert path.stat().st_size < 500
    with pytest.raises(InputError, match=r"1000 x 1000 x 1000 .* more than INPUT.VOLUME.MAX_VOXELS"):
        read_volume(path)
    small = VolumeLimits(max_voxels=100)
    ok = _write(tmp_path / "ok.nii", raw_nifti((2, 8, 8)))
    with pytest.raises(InputError, match="raise that key"):
        read_volume(ok, small)


def test_raising_max_voxels_lets_a_big_header_through_to_the_payload_check(tmp_path):
    path = _write(tmp_path / "huge.nii.gz", raw_nifti((1000, 1000, 1000), payload=b""))
    with pytest.raises(InputError, match="truncated"):  # and still nothing allocated: the payload is not there
        read_volume(path, VolumeLimits(max_voxels=2**31))


def test_a_tiny_file_with_huge_voxels_is_refused_not_resampled(tmp_path):
    """The 97-byte NIfTI of the issue: 10 x 10 voxels of 400 mm, resampled to 2 mm would be 2000 x 2000 per slice."""
    path = _write(tmp_path / "tiny.nii.gz", raw_nifti((1, 10, 10), (400.0, 400.0, 400.0)))
    assert path.stat().st_size < 120
    settings = PreprocessSettings(target_spacing=(2.0, 2.0))
    with pytest.raises(InputError, match=r"voxel size \(400, 400, 400\) mm lies outside .*SPACING_RANGE"):
        prepare_volume(path, "CT", settings)


def test_the_resampled_grid_is_bounded_before_it_is_allocated(tmp_path, monkeypatch):
    path = _write(tmp_path / "coarse.nii", raw_nifti((2, 40, 40), (5.0, 50.0, 50.0)))
    limits = VolumeLimits(max_resampled_voxels=1_000_000)
    settings = PreprocessSettings(target_spacing=(1.0, 1.0), limits=limits)
    import s2vnet.data.preprocess as preprocess

    def must_not_run(*args, **kwargs):
        raise AssertionError("normalised before the size check")

    monkeypatch.setattr(preprocess, "normalize_intensities", must_not_run)
    with pytest.raises(
        InputError,
        match=r"2 x 2000 x 2000 grid = 8,000,000 voxels, more than "
        r"INPUT.VOLUME.MAX_RESAMPLED_VOXELS \(1,000,000\)",
    ):
        prepare_volume(path, "CT", settings)


def test_limits_come_from_the_config():
    from s2vnet.config import get_s2vnet_cfg

    cfg = get_s2vnet_cfg()
    cfg.INPUT.VOLUME.MAX_VOXELS, cfg.INPUT.VOLUME.SPACING_RANGE = 1000, (0.5, 5.0)
    limits = PreprocessSettings.from_cfg(cfg).limits
    assert limits.max_voxels == 1000 and limits.spacing_range == (0.5, 5.0)
    assert "limits" not in PreprocessSettings.from_cfg(cfg).to_dict()  # the cache manifest ignores them


# ---------------------------------------------------------------- 5. DICOM geometry


def write_series(folder: Path, positions, orientation="1\\0\\0\\0\\1\\0") -> Path:
    """One 8 x 8 int16 slice per position (x, y, z mm), files named in reverse order."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    uid = "1.2.826.0.1.3680043.2.1125.99"
    for k, position in enumerate(positions):
        slice_ = sitk.GetImageFromArray(np.full((8, 8), k, dtype=np.int16))
        slice_.SetSpacing((0.8, 0.8))
        tags = {
            "0008|0060": "CT",
            "0008|0016": "1.2.840.10008.5.1.4.1.1.2",
            "0008|0018": f"{uid}.3.{k + 1}",
            "0020|000d": f"{uid}.1",
            "0020|000e": f"{uid}.2",
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{p:.6f}" for p in position),
            "0020|0037": orientation,
            "0028|0030": "0.8\\0.8",
        }
        for tag, value in tags.items():
            slice_.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{len(positions) - k:03d}.dcm"))
        with keep_locale():
            writer.Execute(slice_)
    return folder


def test_a_regular_dicom_series_is_read(tmp_path):
    volume = read_volume(write_series(tmp_path / "ok", [(0, 0, 2.5 * k) for k in range(5)]))
    assert volume.array.shape == (5, 8, 8) and volume.geometry.spacing == pytest.approx((2.5, 0.8, 0.8))


def test_a_series_with_a_missing_slice_is_refused(tmp_path):
    """ITK would read it with the averaged spacing 2.5 mm instead of 2 mm and the slices in the wrong places."""
    folder = write_series(tmp_path / "gap", [(0, 0, z) for z in (0, 2, 4, 8, 10)])
    with pytest.raises(InputError, match=r"DICOM series refused: slice spacing varies from 2 to 4 mm") as info:
        read_volume(folder)
    assert str(info.value).startswith(f"{folder}: ")


def test_a_gantry_tilted_series_is_refused(tmp_path):
    """ITK would read it with the slant distance (2.13 mm) as spacing and no shear."""
    shift = math.tan(math.radians(20))
    folder = write_series(tmp_path / "tilt", [(0, 2 * k * shift, 2 * k) for k in range(5)])
    with pytest.raises(
        InputError, match=r"shifted sideways by up to 0.728 mm per slice.*gantry tilt of about 20.0 deg"
    ):
        read_volume(folder)


def test_an_oblique_but_orthogonal_series_is_read(tmp_path):
    """Slices stacked along the normal of a rotated plane are a regular grid, whatever the axes."""
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    orientation = f"{c:.6f}\\{s:.6f}\\0\\{-s:.6f}\\{c:.6f}\\0"  # rotated in-plane: normal still +z
    volume = read_volume(write_series(tmp_path / "oblique", [(0, 0, 3 * k) for k in range(4)], orientation))
    assert volume.geometry.spacing[0] == pytest.approx(3.0)


@pytest.mark.parametrize(
    "positions, problem",
    [
        ([(0, 0, 0), (0, 0, 1), (0, 0, 2.005), (0, 0, 3)], None),  # 0.005 mm jitter: within 0.01 mm
        ([(0, 0, 0), (0, 0, 5), (0, 0, 10.02), (0, 0, 15)], None),  # steps differ by 0.04 mm: 1% of 5 mm
        ([(0, 0, 0), (0, 0, 1), (0, 0, 2.05), (0, 0, 3)], "varies"),  # 5% of 1 mm
        ([(0, 0, 0), (0, 0, 1), (0, 0, 1), (0, 0, 2)], "same position"),
        ([(0, 0, 0), (0.05, 0, 1), (0.1, 0, 2)], "sideways"),  # 2.9 degrees
    ],
)
def test_slice_geometry_tolerance(positions, problem):
    found = series_geometry_problem(np.array(positions, dtype=float), np.array([1, 0, 0, 0, 1, 0], dtype=float))
    assert (found is None) if problem is None else (problem in found), found


# ---------------------------------------------------------------- 7. degenerate voxel sizes


@pytest.mark.parametrize(
    "spacing, message",
    [
        ((1e-3, 1e-3, 1e-3), "outside the plausible range 0.01..100 mm"),
        ((1.0, 1.0, 250.0), "outside the plausible range"),
    ],
)
def test_degenerate_spacing_in_a_file_is_refused(tmp_path, spacing, message):
    """(A negative voxel size in a header is read by ITK as a flipped axis with a positive size: not degenerate.)"""
    path = _write(tmp_path / "bad.nii.gz", raw_nifti((3, 8, 8), spacing))
    with pytest.raises(InputError, match=message) as info:
        read_volume(path)
    assert str(info.value).startswith(f"{path}: voxel size ")


@pytest.mark.parametrize(
    "suffix, value, message",
    [
        (".nrrd", b"(0.001,0,0)", "voxel size .* outside the plausible range"),
        (".mha", b"0.001", "outside the plausible range"),
        (".nrrd", b"(0,0,0)", "cannot be read as an image"),
        (".mha", b"0", "cannot be read as an image"),
    ],
)
def test_degenerate_spacing_in_nrrd_and_mha_is_refused(tmp_path, suffix, value, message):
    path = tmp_path / f"flat{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(_ramp()), str(path), useCompression=False)
    text = path.read_bytes()
    text = text.replace(b"space directions: (1,0,0) (0,1,0)", b"space directions: " + value + b" (0,1,0)").replace(
        b"ElementSpacing = 1 1 1", b"ElementSpacing = " + value + b" 1 1"
    )
    path.write_bytes(text)
    with pytest.raises(InputError, match=message):
        read_volume(path)


def test_prepare_loaded_checks_the_spacing_of_a_built_volume():
    volume = Volume(_ramp(), Geometry((4, 16, 16), (0.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1)), "v")
    with pytest.raises(InputError, match="v: voxel size"):
        prepare_loaded(volume, "CT", PreprocessSettings())


def test_limits_are_honoured_by_read_label(tmp_path):
    path = _write(tmp_path / "seg.nii", raw_nifti((2, 8, 8)))
    with pytest.raises(InputError, match="MAX_VOXELS"):
        read_label(path, limits=VolumeLimits(max_voxels=10))


# ---------------------------------------------------------------- 8. arrays given to the Python API


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((4, 8, 8), dtype=bool), "voxel type bool"),
        (np.zeros((4, 8, 8), dtype=np.float16), "voxel type float16"),
        (np.zeros((4, 8, 8), dtype=object), "voxel type object"),
        (np.zeros((4, 8, 8), dtype=np.complex64), "voxel type complex64"),
        (np.zeros((0, 8, 8), dtype=np.int16), "0 x 8 x 8 voxels: the volume is empty"),
        (np.zeros((8, 8), dtype=np.int16), r"shape \(8, 8\); expected a 3D volume"),
        ([[[0]]], "expected a numpy array"),
    ],
)
def test_bad_arrays_are_input_errors(array, message):
    with pytest.raises(InputError, match=message) as info:
        check_array_volume(array, (1.0, 1.0, 1.0))
    assert str(info.value).startswith("<array>: ")


@pytest.mark.parametrize(
    "spacing, message",
    [
        ((0.0, 1.0, 1.0), "must be positive"),
        ((1.0, -1.0, 1.0), "must be positive"),
        ((1.0, float("nan"), 1.0), "must be positive and finite"),
        ((1e-3, 1.0, 1.0), "plausible range"),
        ((1.0, 1.0), "must be three numbers"),
        ("111", "must be three numbers"),
        ((True, 1.0, 1.0), "must be three numbers"),
        (1.0, "must be three numbers"),
    ],
)
def test_bad_array_spacing_is_an_input_error(spacing, message):
    with pytest.raises(InputError, match=message):
        check_array_volume(np.zeros((2, 4, 4), np.int16), spacing, "ct")


def test_good_arrays_pass_and_size_is_bounded():
    for dtype in (np.uint8, np.int16, np.int32, np.float32, np.float64):
        check_array_volume(np.zeros((2, 4, 4), dtype), np.array([2.5, 0.7, 0.7]))
    with pytest.raises(InputError, match="MAX_VOXELS"):
        check_array_volume(np.zeros((2, 4, 4), np.int16), (1, 1, 1), limits=VolumeLimits(max_voxels=31))
