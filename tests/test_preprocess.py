"""Preprocessing: normalisation, orientation, in-plane resampling, label maps, prepare_volume."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import SimpleITK as sitk

from s2vnet.config import get_s2vnet_cfg
from s2vnet.data.label_map import LabelMap, default_label_ids
from s2vnet.data.normalization import IntensitySettings, canonical_modality, normalize_intensities, to_uint8
from s2vnet.data.orientation import Reorientation, reorientation_for
from s2vnet.data.preprocess import PreprocessSettings, prepare_volume
from s2vnet.data.resample import plan_in_plane
from s2vnet.errors import InputError

DIAG_RAS = (-1, 0, 0, 0, -1, 0, 0, 0, 1)  # a typical NIfTI (RAS+) image read by ITK
PERMUTED = (0, 1, 0, 1, 0, 0, 0, 0, -1)  # i -> +y, j -> +x, k -> -z (columns are index axes)
OBLIQUE_SAGITTAL = (0, 0, 1, -1, 0, 0, 0, -1, 0)  # k -> +x: stored slices are sagittal


# ---------------------------------------------------------------- intensity normalisation


def test_ct_window_defaults():
    values = np.array([-1000, -175, 37.5, 250, 3000], dtype=np.float32)
    out = normalize_intensities(values, "CT", IntensitySettings(), "ct.nii.gz")
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0, 0, 127.5, 255, 255], atol=1e-4)


def test_ct_integer_input():
    values = np.array([[-2000, -175], [250, 32767]], dtype=np.int16)
    out = normalize_intensities(values, "ct", IntensitySettings(), "ct.nii.gz")
    np.testing.assert_allclose(out, [[0, 0], [255, 255]], atol=1e-4)


def test_ct_custom_window():
    settings = IntensitySettings(ct_window=(0.0, 100.0))
    out = normalize_intensities(np.array([-50.0, 0.0, 50.0, 100.0, 150.0]), "CT", settings, "ct.nii.gz")
    np.testing.assert_allclose(out, [0, 0, 127.5, 255, 255], atol=1e-4)


@pytest.mark.parametrize("modality", ["MRI", "mr", "MR", "mri"])
def test_mri_percentiles(modality):
    volume = np.arange(1000, dtype=np.float64).reshape(10, 10, 10)
    low, high = np.percentile(volume, (0.5, 99.5))
    out = normalize_intensities(volume, modality, IntensitySettings(), "mr.nii.gz")

    assert out.dtype == np.float32
    assert out.shape == volume.shape
    expected = np.clip((volume - low) / (high - low), 0, 1) * 255
    np.testing.assert_allclose(out, expected, atol=1e-3)
    # values outside the percentiles clip
    np.testing.assert_allclose(out[volume <= low], 0, atol=1e-3)
    np.testing.assert_allclose(out[volume >= high], 255, atol=1e-3)
    assert 0.001 < out[volume > low].min() and out[volume < high].max() < 254.999
    # the linear map between them sends the 0.5th percentile to 0 and the 99.5th to 255
    inside = (volume > low) & (volume < high)
    slope, intercept = np.polyfit(volume[inside], out[inside].astype(np.float64), 1)
    assert -intercept / slope == pytest.approx(low, abs=1e-2)
    assert (255 - intercept) / slope == pytest.approx(high, abs=1e-2)


def test_mri_custom_percentiles_and_constant_volume():
    volume = np.arange(100, dtype=np.float32)
    out = normalize_intensities(volume, "MRI", IntensitySettings(mri_percentiles=(10, 90)), "mr")
    low, high = np.percentile(volume, (10, 90))
    np.testing.assert_allclose(out, np.clip((volume - low) / (high - low), 0, 1) * 255, atol=1e-3)
    constant = normalize_intensities(np.full((2, 3, 4), 7.0), "MRI", IntensitySettings(), "mr")
    assert np.all(constant == 0)


@pytest.mark.parametrize(
    ("modality", "volume"),
    [("MRI", np.arange(1000, dtype=np.float64)), ("CT", np.linspace(-500.0, 600.0, 1001))],
)
def test_normalised_values_stay_within_0_255(modality, volume):
    """The registry's contract is float32 in [0, 255]; float32 rounding must not overshoot it."""
    out = normalize_intensities(volume, modality, IntensitySettings(), "scan.nii.gz")
    assert out.min() >= 0.0
    assert out.max() <= 255.0, f"max {out.max()!r} exceeds 255"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_intensities_are_rejected(bad):
    volume = np.zeros((2, 3, 4), np.float32)
    volume[1, 1, 1] = bad
    with pytest.raises(InputError, match="1 NaN or infinite") as info:
        normalize_intensities(volume, "CT", IntensitySettings(), "scan.mha")
    assert info.value.source == "scan.mha"


def test_unknown_modality_lists_known_ones():
    with pytest.raises(InputError) as info:
        canonical_modality("PET", "pet.nii.gz")
    message = str(info.value)
    assert message.startswith("pet.nii.gz: ")
    assert "unknown modality 'PET'" in message
    assert "CT" in message and "MRI" in message


def test_to_uint8_rounds_and_clips():
    out = to_uint8(np.array([-3.0, 0.4, 0.6, 127.5, 254.6, 300.0], np.float32))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, [0, 0, 1, 128, 255, 255])


# ---------------------------------------------------------------- orientation


@pytest.mark.parametrize("direction", [DIAG_RAS, PERMUTED, OBLIQUE_SAGITTAL], ids=["diag", "permuted", "sagittal"])
@pytest.mark.parametrize("code", ["LPS", "RAS"])
def test_reorientation_matches_sitk_dicom_orient(direction, code):
    array = np.random.default_rng(0).integers(0, 1000, size=(3, 4, 5)).astype(np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetDirection(tuple(float(d) for d in direction))
    image.SetSpacing((0.9, 0.7, 3.0))  # (x, y, z)

    reorientation = reorientation_for(direction, code)
    oriented = sitk.DICOMOrient(image, code)

    np.testing.assert_array_equal(reorientation.apply(array), sitk.GetArrayFromImage(oriented))
    assert reorientation.spacing((3.0, 0.7, 0.9)) == tuple(reversed(oriented.GetSpacing()))


def test_reorientation_of_ras_image_to_lps():
    reorientation = reorientation_for(DIAG_RAS, "LPS")
    assert reorientation == Reorientation((0, 1, 2), (False, True, True))
    assert reorientation_for(DIAG_RAS, "RAS").is_identity
    assert reorientation_for(PERMUTED, "LPS").spacing((3.0, 0.7, 0.9)) == (3.0, 0.9, 0.7)


def test_empty_code_keeps_stored_order():
    assert reorientation_for(PERMUTED, "").is_identity


@pytest.mark.parametrize("perm", list(itertools.permutations(range(3))))
def test_invert_undoes_apply_exactly(perm):
    rng = np.random.default_rng(1)
    array = rng.normal(size=(3, 4, 5))
    batched = rng.normal(size=(2, 3, 4, 5))
    for flip in itertools.product((False, True), repeat=3):
        reorientation = Reorientation(perm, flip)
        assert reorientation.apply(array).shape == tuple(array.shape[p] for p in perm)
        np.testing.assert_array_equal(reorientation.invert(reorientation.apply(array)), array)
        np.testing.assert_array_equal(reorientation.invert(reorientation.apply(batched)), batched)
        assert reorientation.spacing((1.0, 2.0, 3.0)) == tuple(float(p + 1) for p in perm)


def test_too_oblique_direction_is_rejected():
    c = np.sqrt(0.5)
    rotated_45 = (c, -c, 0, c, c, 0, 0, 0, 1)
    with pytest.raises(InputError, match="too oblique") as info:
        reorientation_for(rotated_45, "LPS", "oblique.nii.gz")
    assert info.value.source == "oblique.nii.gz"


@pytest.mark.parametrize("code", ["LPX", "LLS", "LP", "LPSA"])
def test_bad_orientation_code(code):
    with pytest.raises(InputError, match="not an orientation code"):
        reorientation_for(DIAG_RAS, code)


# ---------------------------------------------------------------- in-plane resampling


def _blocks(shape, block=16, classes=4, seed=0) -> np.ndarray:
    """A label map of large rectangular blocks."""
    rng = np.random.default_rng(seed)
    z, y, x = shape
    coarse = rng.integers(0, classes, size=(z, -(-y // block), -(-x // block))).astype(np.uint8)
    return np.repeat(np.repeat(coarse, block, axis=1), block, axis=2)[:, :y, :x].copy()


def test_plan_in_plane_shape_and_spacing():
    plan = plan_in_plane((10, 101, 122), (3, 3, 3), (2, 2))
    assert plan.in_shape == (101, 122)
    assert plan.out_shape == (152, 183)
    assert plan.in_spacing == (3.0, 3.0)
    assert plan.out_spacing == pytest.approx((2.0, 2.0), rel=0.01)
    assert not plan.is_identity


def test_plan_without_target_is_identity():
    plan = plan_in_plane((10, 101, 122), (3, 0.7, 0.9), None)
    assert plan.is_identity
    assert plan.out_spacing == (0.7, 0.9)
    labels = _blocks((2, 101, 122))
    assert plan.labels(labels) is labels
    assert plan.image(labels).dtype == np.float32


@pytest.mark.parametrize("target", [(2.0, 2.0), (4.0, 5.0)], ids=["upsample", "downsample"])
def test_labels_round_trip_restores_the_input_shape(target):
    labels = _blocks((40, 101, 122))  # more than one interpolation chunk of slices
    plan = plan_in_plane(labels.shape, (3, 3, 3), target)

    resampled = plan.labels(labels)
    assert resampled.shape == (40,) + plan.out_shape
    assert resampled.dtype == labels.dtype
    assert set(np.unique(resampled)) <= set(np.unique(labels))

    restored = plan.restore_labels(resampled)
    assert restored.shape == labels.shape
    assert np.mean(restored == labels) >= 0.98


def test_image_and_score_resampling():
    plan = plan_in_plane((3, 20, 30), (3, 1, 1), (0.5, 0.5))
    image = plan.image(np.full((3, 20, 30), 42, np.int16))
    assert image.dtype == np.float32 and image.shape == (3, 40, 60)
    np.testing.assert_allclose(image, 42, atol=1e-4)
    scores = np.random.default_rng(0).random((2, 3, 40, 60)).astype(np.float32)
    assert plan.restore_scores(scores).shape == (2, 3, 20, 30)
    with pytest.raises(ValueError, match="does not match"):
        plan.labels(np.zeros((3, 21, 30), np.uint8))


# ---------------------------------------------------------------- label map


def test_label_map_encode():
    label_map = LabelMap((1, 5, 6))
    stored = np.array([[0, 5], [6, 1]], dtype=np.int16)
    encoded = label_map.encode(stored, "lbl.nii.gz")
    assert encoded.dtype == np.uint8
    np.testing.assert_array_equal(encoded, [[0, 2], [3, 1]])


def test_label_map_unlisted_error_names_file_and_value():
    with pytest.raises(InputError) as info:
        LabelMap((1, 5, 6)).encode(np.array([0, 5, 7, 7]), "case_007_label.nii.gz")
    message = str(info.value)
    assert message.startswith("case_007_label.nii.gz: ")
    assert "[7]" in message
    assert "not in the class list" in message


def test_label_map_unlisted_background():
    encoded = LabelMap((1, 5, 6), unlisted="background").encode(np.array([0, 5, 7, 6, 200]), "lbl")
    np.testing.assert_array_equal(encoded, [0, 2, 0, 3, 0])


def test_label_map_rejects_negative_values():
    with pytest.raises(InputError, match="negative"):
        LabelMap((1,), unlisted="background").encode(np.array([0, -1, 1]), "lbl")


@pytest.mark.parametrize(
    ("ids", "unlisted"), [((1, 1), "error"), ((0, 1), "error"), (tuple(range(1, 256)), "error"), ((1,), "ignore")]
)
def test_label_map_validation(ids, unlisted):
    with pytest.raises(ValueError):
        LabelMap(ids, unlisted)


def test_default_label_ids():
    assert default_label_ids(["a", "b", "c"]) == (1, 2, 3)


# ---------------------------------------------------------------- prepare_volume


def test_settings_from_cfg():
    cfg = get_s2vnet_cfg()
    assert PreprocessSettings.from_cfg(cfg) == PreprocessSettings()
    cfg.INPUT.VOLUME.RESAMPLE_IN_PLANE = True
    cfg.INPUT.VOLUME.TARGET_SPACING = (0.8, 0.8)
    cfg.INPUT.VOLUME.CT_WINDOW = (-100, 200)
    cfg.INPUT.VOLUME.ORIENTATION = "RAS"
    settings = PreprocessSettings.from_cfg(cfg)
    assert settings == PreprocessSettings("RAS", IntensitySettings((-100.0, 200.0), (0.5, 99.5)), (0.8, 0.8))
    assert settings.to_dict()["intensity"]["ct_window"] == (-100.0, 200.0)


def test_prepare_volume_identity(tmp_path, write_image):
    rng = np.random.default_rng(0)
    image = rng.integers(-500, 500, size=(4, 10, 12)).astype(np.int16)
    stored = _blocks((4, 10, 12), block=4, classes=3) * 5  # ids 0, 5, 10
    spacing = (2.5, 0.8, 0.9)
    image_path = write_image(tmp_path / "img.nii.gz", image, spacing)
    label_path = write_image(tmp_path / "lbl.nii.gz", stored, spacing)

    prepared = prepare_volume(image_path, "CT", PreprocessSettings(), label_path, LabelMap((5, 10)))

    assert prepared.reorientation.is_identity and prepared.resampling.is_identity
    assert prepared.image.dtype == np.uint8 and prepared.label.dtype == np.uint8
    np.testing.assert_array_equal(prepared.image, to_uint8(normalize_intensities(image, "CT", IntensitySettings(), "")))
    np.testing.assert_array_equal(prepared.label, stored // 5)
    assert prepared.spacing == pytest.approx(spacing)
    assert prepared.geometry.shape == (4, 10, 12)
    np.testing.assert_array_equal(prepared.to_input_grid(prepared.label), stored // 5)


@pytest.mark.parametrize("direction", [PERMUTED, DIAG_RAS, OBLIQUE_SAGITTAL], ids=["permuted", "diag", "sagittal"])
def test_prepared_labels_return_to_the_input_grid(tmp_path, write_image, direction):
    shape = (6, 50, 70)
    spacing = (3.0, 0.7, 0.9)
    image = np.random.default_rng(2).integers(-300, 400, size=shape).astype(np.int16)
    stored = np.array([0, 1, 5, 6], np.uint8)[_blocks(shape, block=20, classes=4, seed=3)]
    image_path = write_image(tmp_path / "img.nii.gz", image, spacing, (5.0, -3.0, 7.0), direction)
    label_path = write_image(tmp_path / "lbl.nii.gz", stored, spacing, (5.0, -3.0, 7.0), direction)
    label_map = LabelMap((1, 5, 6))
    settings = PreprocessSettings(target_spacing=(1.0, 0.8))  # shrinks one in-plane axis, grows the other

    prepared = prepare_volume(image_path, "CT", settings, label_path, label_map)

    assert not prepared.reorientation.is_identity
    assert not prepared.resampling.is_identity
    assert prepared.image.shape == prepared.label.shape
    assert prepared.image.shape[1:] == prepared.resampling.out_shape
    assert prepared.spacing[1:] == pytest.approx((1.0, 0.8), rel=0.05)
    assert prepared.spacing[0] == pytest.approx(prepared.reorientation.spacing(spacing)[0])
    back = prepared.to_input_grid(prepared.label)
    assert back.shape == shape
    assert back.flags["C_CONTIGUOUS"]
    assert np.mean(back == label_map.encode(stored, "lbl")) >= 0.98


@pytest.mark.parametrize(
    ("name", "dtype"), [("nan.mha", np.float32), ("nan.nii.gz", np.float32), ("nan.nii", np.float64)]
)
def test_prepare_volume_rejects_nan(tmp_path, write_image, name, dtype):
    """MetaImage keeps NaN; ITK's NIfTI reader turns it into 0, so NIfTI bytes are scanned."""
    volume = np.zeros((3, 4, 5), dtype)
    volume[1, 2, 3] = np.nan
    path = write_image(tmp_path / name, volume)
    with pytest.raises(InputError) as info:
        prepare_volume(path, "CT", PreprocessSettings())
    assert str(path) in str(info.value)
    assert "NaN" in str(info.value)


def test_prepare_volume_unknown_modality(tmp_path, write_image):
    path = write_image(tmp_path / "pet.nii.gz", np.zeros((2, 3, 4), np.float32))
    with pytest.raises(InputError) as info:
        prepare_volume(path, "PET", PreprocessSettings())
    message = str(info.value)
    assert str(path) in message and "PET" in message
    assert "known: CT, MRI" in message


def test_prepare_volume_needs_a_label_map(tmp_path, write_image):
    image_path = write_image(tmp_path / "img.nii.gz", np.zeros((2, 3, 4), np.int16))
    label_path = write_image(tmp_path / "lbl.nii.gz", np.zeros((2, 3, 4), np.uint8))
    with pytest.raises(ValueError, match="label_map"):
        prepare_volume(image_path, "CT", PreprocessSettings(), label_path)


def test_prepare_volume_label_off_grid(tmp_path, write_image):
    image_path = write_image(tmp_path / "img.nii.gz", np.zeros((2, 3, 4), np.int16), (1, 1, 1))
    label_path = write_image(tmp_path / "lbl.nii.gz", np.zeros((2, 3, 4), np.uint8), (2, 1, 1))
    with pytest.raises(InputError, match="spacing") as info:
        prepare_volume(image_path, "CT", PreprocessSettings(), label_path, LabelMap((1,)))
    assert info.value.source == str(label_path)


def test_prepare_volume_unlisted_label(tmp_path, write_image):
    image_path = write_image(tmp_path / "img.nii.gz", np.zeros((2, 3, 4), np.int16))
    stored = np.zeros((2, 3, 4), np.uint8)
    stored[0, 0, 0] = 7
    label_path = write_image(tmp_path / "lbl.nii.gz", stored)
    with pytest.raises(InputError, match=r"\[7\]") as info:
        prepare_volume(image_path, "CT", PreprocessSettings(), label_path, LabelMap((1, 2)))
    assert info.value.source == str(label_path)
