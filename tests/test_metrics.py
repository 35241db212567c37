"""Dice / HD95 / NSD: analytic shapes, empty-mask policies, cropping, and the reference libraries.

The reference libraries are medpy (``medpy.metric.binary``) and DeepMind's ``surface_distance``
(PyPI ``surface-distance``); both are in the ``test`` extra and must be installed.
"""

from __future__ import annotations

import math
import os
import warnings

import numpy as np
import pytest
from medpy.metric import binary as medpy_binary  # the test extra
from scipy import ndimage

from s2vnet.evaluation import metrics
from s2vnet.evaluation.metrics import dice, hd95, nsd, per_class_metrics

with warnings.catch_warnings():  # surface_distance uses scipy's deprecated ndimage.filters/morphology
    warnings.simplefilter("ignore", DeprecationWarning)
    import surface_distance  # the test extra (PyPI: surface-distance)
    from surface_distance import lookup_tables as sd_tables

SPACING = (2.5, 0.8, 0.8)


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def _box(shape, start, size) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(s, s + n) for s, n in zip(start, size))] = True
    return mask


def _ball(shape, centre, radius_mm, spacing) -> np.ndarray:
    grid = np.indices(shape, dtype=float)
    dist2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, spacing))
    return dist2 <= radius_mm**2


def _blob(rng: np.random.Generator, shape, sigma=2.0, level=0.6) -> np.ndarray:
    """A smooth random blob (thresholded smoothed noise), never empty."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    mask = field > level * field.std()
    mask[tuple(n // 2 for n in shape)] = True
    return mask


def _perturb(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """A prediction-like variant: shifted, dilated or eroded, with some random flips on the surface."""
    choice = int(rng.integers(3))
    if choice == 0:
        out = np.roll(mask, tuple(int(v) for v in rng.integers(-2, 3, size=3)), axis=(0, 1, 2))
    elif choice == 1:
        out = ndimage.binary_dilation(mask)
    else:
        out = ndimage.binary_erosion(mask) | (mask & (rng.random(mask.shape) < 0.3))
    band = ndimage.binary_dilation(mask, iterations=2) & ~ndimage.binary_erosion(mask, iterations=2)
    flips = band & (rng.random(mask.shape) < 0.1)
    out = out ^ flips
    if not out.any():
        out[tuple(n // 2 for n in mask.shape)] = True
    return out


def _deepmind(pred, gt, spacing, tolerance):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        distances = surface_distance.compute_surface_distances(gt, pred, spacing)
        return surface_distance.compute_surface_dice_at_tolerance(distances, tolerance)


def _uncropped_nsd(pred, gt, spacing, tolerance):
    """NSD through the uncropped path: the whole volume with one background layer around it."""
    d_pg, a_p, d_gp, a_g = metrics.surfel_distances(
        np.pad(pred, 1), np.pad(gt, 1), spacing, metrics.surfel_area_table(spacing)
    )
    return (a_p[d_pg <= tolerance].sum() + a_g[d_gp <= tolerance].sum()) / (a_p.sum() + a_g.sum())


def _cuboid_area_parts(h, length, spacing):
    """Surfel areas of a (h, L, L)-voxel cuboid: (total, one z face layer with its rim, one z face inside)."""
    sz, sy, sx = spacing
    z_face = (length - 1) ** 2 * sy * sx
    rim_x = (length - 1) * 0.5 * sx * math.hypot(sy, sz)  # cells along an x edge of a z face
    rim_y = (length - 1) * 0.5 * sy * math.hypot(sx, sz)
    rim_z = (h - 1) * 0.5 * sz * math.hypot(sy, sx)
    corner = 0.125 * math.sqrt((sy * sx) ** 2 + (sz * sx) ** 2 + (sz * sy) ** 2)
    side = (h - 1) * (length - 1) * (sz * sx + sz * sy)
    total = 2 * z_face + 2 * side + 4 * (rim_x + rim_y + rim_z) + 8 * corner
    layer = z_face + 2 * (rim_x + rim_y) + 4 * corner
    return total, layer, z_face


# ------------------------------------------------------------------------------------------
# analytic shapes
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [1, 2, 3])
def test_hd95_of_cubes_offset_along_z_is_the_offset_in_mm(offset):
    shape = (24, 20, 20)
    gt = _box(shape, (4, 6, 6), (8, 8, 8))
    pred = _box(shape, (4 + offset, 6, 6), (8, 8, 8))
    assert hd95(pred, gt, SPACING) == pytest.approx(offset * 2.5, abs=1e-12)
    assert hd95(pred, gt, SPACING) == pytest.approx(medpy_binary.hd95(pred, gt, voxelspacing=SPACING), abs=1e-12)
    assert dice(pred, gt) == pytest.approx(1 - offset / 8)


def test_hd95_offset_along_y_uses_the_y_spacing():
    gt = _box((20, 24, 20), (6, 4, 6), (8, 8, 8))
    pred = _box((20, 24, 20), (6, 7, 6), (8, 8, 8))
    assert hd95(pred, gt, SPACING) == pytest.approx(3 * 0.8, abs=1e-12)


def test_sphere_against_itself():
    ball = _ball((30, 40, 40), (15, 20, 20), 10.0, SPACING)
    assert dice(ball, ball) == 1.0
    assert hd95(ball, ball, SPACING) == 0.0
    assert nsd(ball, ball, SPACING, tolerance_mm=0.0) == 1.0


def test_nsd_of_cuboids_offset_by_one_slice():
    """gt and pred: the same (h, L, L) cuboid, pred one slice higher.

    Mixed 2x2x2 cells of both masks coincide except gt's bottom layer (with its rim) and the inside of
    its top face, which lie one slice (2.5 mm) from pred's surface, or closer in plane (0.8 mm steps);
    and symmetrically for pred. So NSD is 1 from 2.5 mm on and 1 - (layer + face) / total below 0.8 mm.
    """
    h, length = 6, 8
    gt = _box((16, 14, 14), (4, 3, 3), (h, length, length))
    pred = np.roll(gt, 1, axis=0)
    total, layer, face = _cuboid_area_parts(h, length, SPACING)
    expected = 1 - (layer + face) / total
    assert nsd(pred, gt, SPACING, tolerance_mm=0.5) == pytest.approx(expected, rel=1e-12)
    assert nsd(pred, gt, SPACING, tolerance_mm=0.79) == pytest.approx(expected, rel=1e-12)
    assert expected < nsd(pred, gt, SPACING, tolerance_mm=0.8) < 1.0
    assert nsd(pred, gt, SPACING, tolerance_mm=2.5) == 1.0
    assert nsd(pred, gt, SPACING, tolerance_mm=10.0) == 1.0
    assert nsd(pred, gt, SPACING, tolerance_mm=0.5) == pytest.approx(_deepmind(pred, gt, SPACING, 0.5), rel=1e-12)


def test_cube_surface_area_is_exact_for_faces():
    """A cuboid's surfel areas: its faces' areas exactly, plus the bevelled edges and corners."""
    h, length = 5, 7
    cube = np.pad(_box((h, length, length), (0, 0, 0), (h, length, length)), 1)
    table = metrics.surfel_area_table(SPACING)
    areas = table[metrics.cell_codes(cube)]
    assert areas.sum() == pytest.approx(_cuboid_area_parts(h, length, SPACING)[0], rel=1e-12)


# ------------------------------------------------------------------------------------------
# empty masks
# ------------------------------------------------------------------------------------------


def test_empty_mask_policies():
    empty = np.zeros((6, 7, 8), dtype=bool)
    some = _box(empty.shape, (1, 1, 1), (3, 3, 3))
    assert dice(empty, empty) == 1.0
    assert dice(empty, empty, empty_value=0.0) == 0.0
    assert dice(some, empty) == 0.0 and dice(empty, some) == 0.0
    assert hd95(empty, empty, SPACING) == 0.0
    assert hd95(some, empty, SPACING) == 50.0 and hd95(empty, some, SPACING) == 50.0
    assert hd95(some, empty, SPACING, empty_penalty=373.0) == 373.0
    assert nsd(empty, empty, SPACING, 1.0) == 1.0
    assert nsd(empty, empty, SPACING, 1.0, empty_value=0.0) == 0.0
    assert nsd(some, empty, SPACING, 1.0) == 0.0 and nsd(empty, some, SPACING, 1.0) == 0.0


def test_reference_libraries_on_empty_masks():
    """What the policies replace: medpy raises for HD95 and gives NaN for Dice, DeepMind NaN or an error."""
    empty = np.zeros((6, 7, 8), dtype=bool)
    some = _box(empty.shape, (1, 1, 1), (3, 3, 3))
    with pytest.raises(RuntimeError):
        medpy_binary.hd95(some, empty, voxelspacing=SPACING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert math.isnan(medpy_binary.dc(empty, empty))
        assert math.isnan(_deepmind(empty, empty, SPACING, 1.0))
        try:  # surface-distance 0.1 uses np.Inf here, which numpy 2 removed
            assert _deepmind(some, empty, SPACING, 1.0) == 0.0
        except AttributeError as err:
            assert "Inf" in str(err)


def test_bad_inputs_are_refused():
    a = np.zeros((4, 4, 4), dtype=bool)
    with pytest.raises(ValueError):
        dice(a, np.zeros((4, 4, 5), dtype=bool))
    with pytest.raises(ValueError):
        hd95(a, a, (1.0, 1.0))
    with pytest.raises(ValueError):
        nsd(a, a, (1.0, 0.0, 1.0), 1.0)
    with pytest.raises(ValueError):
        dice(np.zeros((4, 4), dtype=bool), np.zeros((4, 4), dtype=bool))


# ------------------------------------------------------------------------------------------
# cropping is exact
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cropping_gives_the_uncropped_numbers(seed):
    rng = np.random.default_rng(seed)
    gt = _blob(rng, (14, 18, 16))
    pred = _perturb(rng, gt)
    spacing = (3.0, 0.7, 0.9)
    # the blobs touch the volume border (thresholded noise fills the box); embed them in a larger
    # volume as well, flush against one corner and away from it
    volumes = [(pred, gt)]
    for pad in (((0, 9), (3, 0), (5, 2)), ((6, 6), (6, 6), (6, 6))):
        volumes.append((np.pad(pred, pad), np.pad(gt, pad)))
    for p, g in volumes:
        uncropped_hd95 = np.percentile(metrics.hd95_distances(p, g, spacing), 95)
        assert hd95(p, g, spacing) == pytest.approx(uncropped_hd95, rel=1e-13, abs=1e-13)
        assert hd95(p, g, spacing) == pytest.approx(medpy_binary.hd95(p, g, voxelspacing=spacing), rel=1e-13)
        for tolerance in (0.7, 2.0, 4.5):
            assert nsd(p, g, spacing, tolerance) == pytest.approx(_uncropped_nsd(p, g, spacing, tolerance), rel=1e-13)
    # and all embeddings agree with each other
    assert len({round(hd95(p, g, spacing), 12) for p, g in volumes[1:]}) == 1
    assert len({round(nsd(p, g, spacing, 2.0), 12) for p, g in volumes[1:]}) == 1


# ------------------------------------------------------------------------------------------
# the reference libraries
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spacing",
    [(1.0, 1.0, 1.0), (2.5, 0.8, 0.8), (5.0, 0.7, 1.3), (0.6, 2.0, 3.1), (1.7, 0.33, 4.4)],
)
def test_surfel_area_table_equals_deepmind(spacing):
    ours = metrics.surfel_area_table(spacing)
    theirs = sd_tables.create_table_neighbour_code_to_surface_area(spacing)
    np.testing.assert_allclose(ours, theirs, rtol=1e-14, atol=0)


@pytest.mark.parametrize(
    "seed, shape, spacing",
    [
        (0, (16, 20, 18), (2.5, 0.8, 0.8)),
        (1, (10, 30, 30), (5.0, 0.7, 0.7)),
        (2, (24, 16, 20), (1.0, 1.0, 1.0)),
        (3, (18, 22, 14), (0.9, 2.2, 1.4)),
        (4, (12, 25, 25), (3.0, 0.6, 0.9)),
    ],
)
def test_random_blobs_match_medpy_and_deepmind(seed, shape, spacing):
    rng = np.random.default_rng(seed)
    for _ in range(3):
        gt = np.pad(_blob(rng, shape), 2)
        pred = _perturb(rng, gt)
        assert dice(pred, gt) == pytest.approx(medpy_binary.dc(pred, gt), rel=1e-15)
        assert hd95(pred, gt, spacing) == pytest.approx(medpy_binary.hd95(pred, gt, voxelspacing=spacing), rel=1e-13)
        for tolerance in (0.5, 1.0, 2.5, 6.0):
            ours = nsd(pred, gt, spacing, tolerance)
            assert ours == pytest.approx(_deepmind(pred, gt, spacing, tolerance), rel=1e-12)


def test_real_liver_mask_matches_medpy_and_deepmind(demo_reference_files):
    import SimpleITK as sitk

    path = demo_reference_files / "example_seg_fast_force_split.nii.gz"
    if not path.is_file():
        reason = f"{path} is missing"
        if os.environ.get("S2VNET_REQUIRE_DEMO_DATA") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    image = sitk.ReadImage(str(path))
    liver = sitk.GetArrayFromImage(image) == 5  # TotalSegmentator "total" id 5 = liver
    assert liver.sum() > 10_000
    file_spacing = tuple(float(s) for s in reversed(image.GetSpacing()))
    for spacing in (file_spacing, (5.0, 0.8, 1.2)):
        for pred in (ndimage.binary_dilation(liver), ndimage.binary_erosion(liver)):
            assert dice(pred, liver) == pytest.approx(medpy_binary.dc(pred, liver), rel=1e-15)
            assert hd95(pred, liver, spacing) == pytest.approx(
                medpy_binary.hd95(pred, liver, voxelspacing=spacing), rel=1e-13
            )
            for tolerance in (1.0, spacing[0], 2 * max(spacing)):
                assert nsd(pred, liver, spacing, tolerance) == pytest.approx(
                    _deepmind(pred, liver, spacing, tolerance), rel=1e-12
                )


# ------------------------------------------------------------------------------------------
# per class
# ------------------------------------------------------------------------------------------


def test_per_class_metrics_equals_the_binary_metrics():
    rng = np.random.default_rng(7)
    shape = (20, 26, 24)
    gt = np.zeros(shape, dtype=np.int16)
    gt[2:9, 3:12, 3:12] = 1
    gt[10:18, 14:24, 10:20] = 2
    gt[_ball(shape, (12, 6, 18), 4.0, (1.0, 1.0, 1.0))] = 4  # class 3; class 2 (label 3) is absent
    pred = gt.copy()
    pred[np.roll(gt == 1, 1, axis=0)] = 1
    pred[ndimage.binary_erosion(gt == 2)] = 0
    pred[(gt == 4) & (rng.random(shape) < 0.2)] = 0
    pred[0:2, 0:3, 0:3] = 5  # class 4: false positive only
    tolerances = [1.0, 2.0, 1.5, 3.0, 1.0]
    results = per_class_metrics(pred, gt, SPACING, num_classes=5, tolerance_mm=tolerances)
    assert [r["class"] for r in results] == [0, 1, 2, 3, 4]
    for r, tolerance in zip(results, tolerances):
        p, g = pred == r["class"] + 1, gt == r["class"] + 1
        assert r["gt_voxels"] == int(g.sum()) and r["pred_voxels"] == int(p.sum())
        assert r["dice"] == dice(p, g)
        assert r["hd95"] == hd95(p, g, SPACING)
        assert r["nsd"] == pytest.approx(nsd(p, g, SPACING, tolerance), rel=1e-14)
    assert results[2] == {"class": 2, "dice": 1.0, "hd95": 0.0, "nsd": 1.0, "gt_voxels": 0, "pred_voxels": 0}
    assert results[4]["dice"] == 0.0 and results[4]["hd95"] == 50.0 and results[4]["nsd"] == 0.0
    single = per_class_metrics(pred, gt, SPACING, num_classes=5, tolerance_mm=2.0, empty_penalty=99.0)
    assert single[1]["nsd"] == results[1]["nsd"] and single[4]["hd95"] == 99.0
    with pytest.raises(ValueError):
        per_class_metrics(pred, gt, SPACING, num_classes=5, tolerance_mm=[1.0, 2.0])


def test_mean_label_dice_averages_the_labels_present_in_either_map():
    a = np.array([[[0, 1, 1, 2]]])
    b = np.array([[[0, 1, 3, 3]]])
    # label 1: 2*1/(2+1); label 2: only in a -> 0; label 3: only in b -> 0
    assert metrics.mean_label_dice(a, b) == pytest.approx((2 / 3 + 0 + 0) / 3)
    assert metrics.mean_label_dice(a, a) == 1.0
    assert metrics.mean_label_dice(np.zeros((1, 2, 2), int), np.zeros((1, 2, 2), int)) == 1.0
