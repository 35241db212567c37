"""Reading and writing volumes with their geometry (s2vnet/data/volume_io.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from synthetic import keep_locale

from s2vnet.data import volume_io
from s2vnet.data.dicom import holds_dicom
from s2vnet.data.volume_io import Geometry, read_label, read_volume, write_volume
from s2vnet.errors import InputError

SPACING_ZYX = (3.0, 0.7, 0.9)
ORIGIN_XYZ = (-12.5, 40.25, 103.0)
_C, _S = math.cos(math.radians(30)), math.sin(math.radians(30))
ROTATION_Z30 = (_C, -_S, 0.0, _S, _C, 0.0, 0.0, 0.0, 1.0)  # rotation about z by 30 degrees, row-major
SUFFIXES = (".nii.gz", ".nrrd", ".mha")


def _int16_volume(shape=(4, 5, 6)) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(-1024, 3000, size=shape).astype(np.int16)


def _tmp_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".tmp-"))


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_read_volume_returns_zyx_array_and_geometry(tmp_path, write_image, suffix):
    array = _int16_volume()
    path = write_image(tmp_path / f"ct{suffix}", array, SPACING_ZYX, ORIGIN_XYZ, ROTATION_Z30)

    volume = read_volume(path)
    reference = sitk.ReadImage(str(path))

    assert volume.array.dtype == np.int16
    assert volume.array.shape == (4, 5, 6)
    np.testing.assert_array_equal(volume.array, array)
    assert volume.source == str(path)
    assert volume.geometry.shape == (4, 5, 6)
    assert volume.geometry.spacing == pytest.approx(SPACING_ZYX, rel=1e-6)
    assert volume.geometry.spacing == tuple(reversed(reference.GetSpacing()))
    assert volume.geometry.origin == reference.GetOrigin()
    assert volume.geometry.direction == reference.GetDirection()
    # and what SimpleITK reports is what was written (NIfTI stores float32 sform/qform)
    np.testing.assert_allclose(volume.geometry.origin, ORIGIN_XYZ, atol=1e-4)
    np.testing.assert_allclose(volume.geometry.direction, ROTATION_Z30, atol=1e-5)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_write_volume_keeps_geometry_and_compacts_labels(tmp_path, write_image, suffix):
    image_path = write_image(tmp_path / f"ct{suffix}", _int16_volume(), SPACING_ZYX, ORIGIN_XYZ, ROTATION_Z30)
    geometry = read_volume(image_path).geometry
    label = np.random.default_rng(1).integers(0, 14, size=geometry.shape).astype(np.int64)

    out = write_volume(label, geometry, tmp_path / "out" / f"pred{suffix}")

    assert out == tmp_path / "out" / f"pred{suffix}"
    written = sitk.ReadImage(str(out))
    assert written.GetSize() == tuple(reversed(geometry.shape))
    np.testing.assert_allclose(written.GetSpacing(), tuple(reversed(geometry.spacing)), rtol=1e-6)
    np.testing.assert_allclose(written.GetOrigin(), geometry.origin, atol=1e-4)
    np.testing.assert_allclose(written.GetDirection(), geometry.direction, atol=1e-5)
    assert written.GetPixelID() == sitk.sitkUInt8
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), label)
    assert _tmp_leftovers(out.parent) == []


@pytest.mark.parametrize(
    ("values", "dtype", "stored"),
    [
        ([0, 1, 255], np.int64, np.uint8),
        ([0, 1, 256], np.int32, np.uint16),
        ([0, 1, 70000], np.int64, np.int64),
        ([-1, 0, 1], np.int16, np.int16),
        ([False, True, True], np.bool_, np.uint8),
        ([0.0, 0.5, 1.0], np.float32, np.float32),
    ],
)
def test_compact_integer(values, dtype, stored):
    array = np.array(values, dtype=dtype)
    compacted = volume_io._compact_integer(array)
    assert compacted.dtype == stored
    np.testing.assert_array_equal(compacted, array)


def test_geometry_to_sitk_round_trip():
    geometry = Geometry((2, 3, 4), SPACING_ZYX, ORIGIN_XYZ, ROTATION_Z30)
    image = geometry.to_sitk(np.zeros((2, 3, 4), np.uint8))
    assert Geometry.from_sitk(image) == geometry
    with pytest.raises(ValueError, match="does not match"):
        geometry.to_sitk(np.zeros((4, 3, 2), np.uint8))


# ---------------------------------------------------------------- nothing half-written


def _geometry() -> Geometry:
    return Geometry((2, 3, 4), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))


def test_write_volume_wrong_shape_writes_nothing(tmp_path):
    target = tmp_path / "pred.nii.gz"
    with pytest.raises(InputError) as info:
        write_volume(np.zeros((4, 3, 2), np.uint8), _geometry(), target)
    assert str(target) in str(info.value)
    assert "shape" in str(info.value)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_write_volume_unsupported_suffix(tmp_path):
    target = tmp_path / "pred.png"
    with pytest.raises(InputError, match="unsupported output type"):
        write_volume(np.zeros((2, 3, 4), np.uint8), _geometry(), target)
    assert list(tmp_path.iterdir()) == []


def test_write_volume_failing_writer_leaves_no_partial_file(tmp_path, monkeypatch):
    """A writer that dies half-way leaves neither a file at the target nor a temporary file."""

    def half_write(image, filename, *args, **kwargs):
        Path(filename).write_bytes(b"half a NIfTI header")
        raise RuntimeError("disk full")

    monkeypatch.setattr(volume_io.sitk, "WriteImage", half_write)
    target = tmp_path / "pred.nii.gz"
    with pytest.raises(RuntimeError, match="disk full"):
        write_volume(np.zeros((2, 3, 4), np.uint8), _geometry(), target)
    assert not target.exists()
    assert _tmp_leftovers(tmp_path) == []


def test_write_volume_failure_keeps_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "pred.nii.gz"
    write_volume(np.ones((2, 3, 4), np.uint8), _geometry(), target)
    before = target.read_bytes()

    def half_write(image, filename, *args, **kwargs):
        Path(filename).write_bytes(b"partial")
        raise RuntimeError("interrupted")

    monkeypatch.setattr(volume_io.sitk, "WriteImage", half_write)
    with pytest.raises(RuntimeError):
        write_volume(np.zeros((2, 3, 4), np.uint8), _geometry(), target)
    assert target.read_bytes() == before
    assert _tmp_leftovers(tmp_path) == []


# ---------------------------------------------------------------- DICOM


def _write_dicom_series(folder: Path, array: np.ndarray, spacing_zyx, origin_xyz, series_number: int = 1) -> None:
    """One file per slice, named in reverse position order so sorting by name would be wrong."""
    folder.mkdir(parents=True, exist_ok=True)
    nz = array.shape[0]
    dz, dy, dx = spacing_zyx
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    uid = f"1.2.826.0.1.3680043.2.1125.{series_number}"
    study, series = f"{uid}.1", f"{uid}.2"
    for k in range(nz):
        slice_ = sitk.GetImageFromArray(array[k])
        slice_.SetSpacing((dx, dy))
        position = (origin_xyz[0], origin_xyz[1], origin_xyz[2] + k * dz)
        tags = {
            "0008|0060": "CT",
            "0008|0016": "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
            "0008|0018": f"{uid}.3.{k + 1}",
            "0020|000d": study,
            "0020|000e": series,
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{p:g}" for p in position),
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0028|0030": f"{dy:g}\\{dx:g}",  # row spacing (y) \ column spacing (x)
            "0018|0050": "5.0",  # deliberately not the slice distance
        }
        for tag, value in tags.items():
            slice_.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"s{series_number}_slice{nz - 1 - k:03d}.dcm"))
        with keep_locale():
            writer.Execute(slice_)


def test_read_dicom_folder(tmp_path):
    array = _int16_volume((4, 5, 6))
    folder = tmp_path / "series"
    _write_dicom_series(folder, array, (2.5, 0.7, 0.9), (-10.0, 20.0, 30.0))

    volume = read_volume(folder)

    assert volume.array.shape == (4, 5, 6)
    assert volume.geometry.spacing == pytest.approx((2.5, 0.7, 0.9), rel=1e-6)
    assert volume.geometry.origin == pytest.approx((-10.0, 20.0, 30.0))
    assert volume.geometry.direction == pytest.approx((1, 0, 0, 0, 1, 0, 0, 0, 1))
    np.testing.assert_array_equal(volume.array, array)


def test_read_dicom_folder_with_two_series_reads_the_largest(tmp_path, caplog):
    large, small = _int16_volume((4, 5, 6)), _int16_volume((2, 3, 3))
    folder = tmp_path / "series"
    _write_dicom_series(folder, small, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), series_number=1)
    _write_dicom_series(folder, large, (2.5, 0.7, 0.9), (-10.0, 20.0, 30.0), series_number=2)

    with caplog.at_level("WARNING", logger="s2vnet.data.volume_io"):
        volume = read_volume(folder)

    np.testing.assert_array_equal(volume.array, large)
    assert any("2 DICOM series" in r.getMessage() and str(folder) in r.getMessage() for r in caplog.records)


def test_read_folder_without_dicom(tmp_path):
    (tmp_path / "notes.txt").write_text("not a DICOM file")
    with pytest.raises(InputError, match="no DICOM series") as info:
        read_volume(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_read_demo_dicom_series(demo_reference_files):
    volume = read_volume(demo_reference_files / "example_ct_dicom")
    assert volume.array.shape == (20, 512, 512)
    assert volume.geometry.spacing == pytest.approx((2.0, 0.9765625, 0.9765625), rel=1e-5)


# ---------------------------------------------------------------- read errors


def test_read_missing_file(tmp_path):
    path = tmp_path / "missing.nii.gz"
    with pytest.raises(InputError, match="no such file") as info:
        read_volume(path)
    assert info.value.source == str(path)


def test_read_garbage_file(tmp_path):
    path = tmp_path / "garbage.nii.gz"
    path.write_bytes(b"\x00not an image at all\xff" * 20)
    with pytest.raises(InputError, match="cannot be read as an image") as info:
        read_volume(path)
    assert str(path) in str(info.value)


def test_read_unsupported_suffix(tmp_path):
    path = tmp_path / "scan.png"
    path.write_bytes(b"png?")
    with pytest.raises(InputError, match="unsupported file type"):
        read_volume(path)


def test_read_2d_image_is_rejected(tmp_path, write_image):
    path = write_image(tmp_path / "slice.nii.gz", np.zeros((5, 6), np.int16))
    with pytest.raises(InputError, match="2D") as info:
        read_volume(path)
    assert str(path) in str(info.value)


def test_read_4d_with_single_time_point_is_3d(tmp_path):
    image = sitk.JoinSeries([sitk.GetImageFromArray(_int16_volume((3, 4, 5)))])
    assert image.GetDimension() == 4
    path = tmp_path / "t1.nii.gz"
    sitk.WriteImage(image, str(path))
    volume = read_volume(path)
    assert volume.array.shape == (3, 4, 5)
    np.testing.assert_array_equal(volume.array, _int16_volume((3, 4, 5)))


def test_read_vector_image_is_rejected(tmp_path):
    image = sitk.GetImageFromArray(np.zeros((3, 4, 5, 2), np.float32), isVector=True)
    path = tmp_path / "vector.mha"
    sitk.WriteImage(image, str(path))
    with pytest.raises(InputError, match="2 components per voxel"):
        read_volume(path)


# ---------------------------------------------------------------- labels


def _on_grid_pair(tmp_path, write_image, **label_geometry):
    """Image on the default test grid and a label whose geometry differs by ``label_geometry``."""
    geometry = dict(spacing=SPACING_ZYX, origin=ORIGIN_XYZ, direction=ROTATION_Z30)
    image_path = write_image(tmp_path / "img.nii.gz", _int16_volume((4, 5, 6)), **geometry)
    shape = label_geometry.pop("shape", (4, 5, 6))
    geometry.update(label_geometry)
    label_path = write_image(tmp_path / "lbl.nii.gz", np.ones(shape, np.uint8), **geometry)
    return read_volume(image_path).geometry, label_path


def test_read_label_on_same_grid(tmp_path, write_image):
    reference, label_path = _on_grid_pair(tmp_path, write_image)
    label = read_label(label_path, reference=reference)
    assert label.array.shape == (4, 5, 6)
    assert label.array.dtype.kind in "iu"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"shape": (4, 5, 7)}, "shape"),
        ({"spacing": (3.0, 0.8, 0.9)}, "spacing"),
        ({"origin": (-12.5, 41.25, 103.0)}, "origin"),
        ({"direction": (1, 0, 0, 0, 1, 0, 0, 0, 1)}, "direction"),
    ],
)
def test_read_label_off_grid_names_the_difference(tmp_path, write_image, change, named):
    reference, label_path = _on_grid_pair(tmp_path, write_image, **change)
    with pytest.raises(InputError) as info:
        read_label(label_path, reference=reference)
    message = str(info.value)
    assert message.startswith(str(label_path))
    assert "grid" in message
    assert named in message
    others = {"shape", "spacing", "origin", "direction"} - {named}
    assert not any(f"{other} " in message.split(": ", 1)[1] for other in others), message


def test_float_label_with_integer_values_is_accepted(tmp_path, write_image):
    values = np.array([0, 1, 2, 13] * 30, dtype=np.float32).reshape(4, 5, 6)
    path = write_image(tmp_path / "lbl.nii.gz", values)
    label = read_label(path)
    assert label.array.dtype.kind == "i"
    np.testing.assert_array_equal(label.array, values.astype(np.int64))


def test_float_label_with_fractions_is_rejected(tmp_path, write_image):
    values = np.zeros((4, 5, 6), np.float32)
    values[1, 2, 3] = 0.5
    path = write_image(tmp_path / "lbl.nii.gz", values)
    with pytest.raises(InputError, match="non-integer") as info:
        read_label(path)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------- several DICOM series, upper-case suffixes


def test_several_dicom_series_strict_names_them_and_says_how_to_choose(tmp_path):
    folder = tmp_path / "series"
    _write_dicom_series(folder, _int16_volume((2, 3, 3)), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), series_number=1)
    _write_dicom_series(folder, _int16_volume((4, 5, 6)), (2.5, 0.7, 0.9), (-10.0, 20.0, 30.0), series_number=2)
    with pytest.raises(InputError) as info:
        read_volume(folder, strict_series=True)
    message = str(info.value)
    assert message.startswith(f"{folder}: holds 2 DICOM series")
    assert (
        "1.2.826.0.1.3680043.2.1125.1.2 (2 files)" in message and "1.2.826.0.1.3680043.2.1125.2.2 (4 files)" in message
    )
    assert "--dicom-series UID" in message and "\n" not in message


def test_dicom_series_uid_chooses_one(tmp_path):
    small = _int16_volume((2, 3, 3))
    folder = tmp_path / "series"
    _write_dicom_series(folder, small, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), series_number=1)
    _write_dicom_series(folder, _int16_volume((4, 5, 6)), (2.5, 0.7, 0.9), (-10.0, 20.0, 30.0), series_number=2)
    np.testing.assert_array_equal(
        read_volume(folder, series_uid="1.2.826.0.1.3680043.2.1125.1.2", strict_series=True).array, small
    )
    with pytest.raises(InputError, match="holds no DICOM series 9.9"):
        read_volume(folder, series_uid="9.9")
    assert holds_dicom(folder) and not holds_dicom(tmp_path)


@pytest.mark.parametrize("name", ["SEG.NII.GZ", "Seg.Nrrd", "seg.MHA"])
def test_upper_case_suffix_is_written_in_its_format(tmp_path, name):
    geometry = Geometry((4, 5, 6), SPACING_ZYX, ORIGIN_XYZ, ROTATION_Z30)
    labels = (np.arange(120) % 3).reshape(4, 5, 6).astype(np.uint8)
    path = write_volume(labels, geometry, tmp_path / name)
    assert path.name == name and _tmp_leftovers(tmp_path) == []
    volume = read_volume(path)
    np.testing.assert_array_equal(volume.array, labels)
    assert volume.geometry.differences(geometry) == []
