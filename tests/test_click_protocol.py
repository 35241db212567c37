"""The interactive-evaluation click protocol: known answers, 6-connectivity, determinism, NoC."""
from __future__ import annotations

import numpy as np
import pytest

from s2vnet.evaluation.clicks import first_click, next_click, noc, simulate_round


def _box(shape, start, size) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(s, s + n) for s, n in zip(start, size))] = True
    return mask


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ------------------------------------------------------------------------------------------
# first click
# ------------------------------------------------------------------------------------------


def test_first_click_at_the_centre_of_a_cube():
    gt = _box((20, 21, 22), (3, 8, 10), (7, 7, 7))
    assert first_click(gt, _rng()) == (6, 11, 13)


def test_first_click_uses_the_spacing():
    # 3 slices of 2.5 mm by 9 x 9 pixels of 0.8 mm: a 7.5 x 7.2 x 7.2 mm box, centre (1, 4, 4) + start
    gt = _box((8, 16, 16), (2, 3, 5), (3, 9, 9))
    assert first_click(gt, _rng(), spacing=(2.5, 0.8, 0.8)) == (3, 7, 9)
    # in voxel units the 3-slice height dominates: every in-plane voxel not on the rim ties
    clicks = {first_click(gt, _rng(seed)) for seed in range(12)}
    assert len(clicks) > 1 and all(z == 3 and 4 <= y <= 10 and 6 <= x <= 12 for z, y, x in clicks)


def test_first_click_counts_the_volume_border_as_background():
    gt = _box((12, 12, 12), (0, 3, 4), (5, 5, 5))  # cut by the z = 0 face of the volume
    assert first_click(gt, _rng()) == (2, 5, 6)


def test_first_click_on_an_l_shape_goes_to_the_thick_part():
    gt = _box((20, 30, 30), (5, 4, 4), (9, 9, 9))  # thick block, centre (9, 8, 8)
    gt |= _box(gt.shape, (8, 13, 6), (3, 15, 3))  # thin arm along y
    gt |= _box(gt.shape, (8, 6, 13), (3, 3, 15))  # thin arm along x
    assert first_click(gt, _rng()) == (9, 8, 8)


def test_first_click_refuses_an_empty_mask():
    with pytest.raises(ValueError):
        first_click(np.zeros((4, 4, 4), dtype=bool), _rng())


def test_first_click_ties_are_broken_by_the_seed_and_are_reproducible():
    gt = _box((10, 10, 10), (3, 3, 3), (4, 4, 4))  # 8 voxels tie at the centre
    tied = {(z, y, x) for z in (4, 5) for y in (4, 5) for x in (4, 5)}
    clicks = [first_click(gt, _rng(seed)) for seed in range(16)]
    assert set(clicks) <= tied and len(set(clicks)) > 2
    assert clicks == [first_click(gt, _rng(seed)) for seed in range(16)]


# ------------------------------------------------------------------------------------------
# next click
# ------------------------------------------------------------------------------------------


def test_under_segmentation_gives_a_positive_click_in_the_largest_missed_region():
    gt = _box((24, 24, 24), (2, 2, 2), (20, 20, 20))
    pred = gt.copy()
    pred[4:9, 5:10, 6:11] = False  # 5^3 missed inside the object
    pred[15:18, 15:18, 15:18] = False  # 3^3 missed, smaller
    z, y, x, positive = next_click(pred, gt, _rng())
    assert positive is True
    assert (z, y, x) == (6, 7, 8)
    assert gt[z, y, x] and not pred[z, y, x]


def test_over_segmentation_gives_a_negative_click():
    gt = _box((24, 24, 30), (4, 4, 4), (8, 8, 8))
    pred = gt | _box(gt.shape, (6, 6, 17), (5, 5, 5))  # 125 false positive voxels, centre (8, 8, 19)
    pred[6, 6, 6] = False  # one false negative voxel
    z, y, x, positive = next_click(pred, gt, _rng())
    assert positive is False
    assert (z, y, x) == (8, 8, 19)
    assert pred[z, y, x] and not gt[z, y, x]


def test_no_error_no_click():
    gt = _box((8, 8, 8), (2, 2, 2), (3, 3, 3))
    rng = _rng(5)
    state = rng.bit_generator.state
    assert next_click(gt.copy(), gt, rng) is None
    assert next_click(np.zeros_like(gt), np.zeros_like(gt), rng) is None
    assert rng.bit_generator.state == state


def test_error_components_are_6_connected_and_never_mix_kinds():
    gt = np.zeros((20, 20, 20), dtype=bool)
    pred = np.zeros_like(gt)
    # two 27-voxel missed cubes touching along an edge only: 54 voxels if 26-connected
    gt |= _box(gt.shape, (2, 2, 2), (3, 3, 3)) | _box(gt.shape, (5, 5, 2), (3, 3, 3))
    # a 45-voxel false positive elsewhere: the largest 6-connected component
    pred |= _box(gt.shape, (12, 12, 10), (3, 3, 5))
    z, y, x, positive = next_click(pred, gt, _rng())
    assert positive is False and (z, y) == (13, 13) and 11 <= x <= 13
    # a false negative slab next to a larger false positive slab: not one 6-connected component
    gt = _box((12, 12, 12), (2, 2, 2), (4, 8, 8))
    pred = _box(gt.shape, (6, 2, 2), (5, 8, 8))  # gt & ~pred = z 2..5, pred & ~gt = z 6..10
    assert next_click(pred, gt, _rng())[3] is False
    assert next_click(gt, pred, _rng())[3] is True


def test_next_click_is_deterministic_for_a_seed_and_the_seed_breaks_ties():
    gt = _box((12, 12, 12), (1, 1, 1), (10, 10, 10))
    pred = gt.copy()
    pred[2:6, 2:6, 2:6] = False  # two equal 4^3 missed cubes: ties in size and in distance
    pred[6:10, 6:10, 6:10] = False
    clicks = [next_click(pred, gt, _rng(seed)) for seed in range(24)]
    assert clicks == [next_click(pred, gt, _rng(seed)) for seed in range(24)]
    assert all(c[3] is True and gt[c[:3]] and not pred[c[:3]] for c in clicks)
    assert {c[0] < 6 for c in clicks} == {True, False}  # both cubes get chosen for some seed
    assert len({c[:3] for c in clicks}) > 4


# ------------------------------------------------------------------------------------------
# rounds
# ------------------------------------------------------------------------------------------


def _labels():
    gt = np.zeros((16, 20, 24), dtype=np.uint8)
    gt[2:9, 2:9, 2:9] = 1  # class 0
    gt[9:14, 10:19, 12:22] = 2  # class 1
    gt[1:4, 12:18, 14:20] = 4  # class 3; class 2 (label 3) is absent from gt
    pred = gt.copy()
    pred[2:5, 2:9, 2:9] = 0  # class 0: under-segmented
    pred[13:16, 10:19, 12:22] = 2  # class 1: over-segmented
    pred[10:13, 2:6, 2:6] = 3  # class 2: only in pred
    return pred, gt  # class 3 is perfect


def test_round_zero_clicks_once_per_class_present_in_gt():
    pred, gt = _labels()
    clicks = simulate_round(pred, gt, num_classes=5, rng=_rng(), spacing=(2.0, 1.0, 1.0))
    assert [c["class"] for c in clicks] == [0, 1, 3]
    assert all(c["positive"] is True for c in clicks)
    rng = _rng()
    for c in clicks:
        assert c["voxel"] == first_click(gt == c["class"] + 1, rng, spacing=(2.0, 1.0, 1.0))
        assert all(type(v) is int for v in c["voxel"])


def test_later_rounds_correct_each_class_with_errors():
    pred, gt = _labels()
    clicks = simulate_round(pred, gt, num_classes=5, rng=_rng(3), round_index=1)
    assert [(c["class"], c["positive"]) for c in clicks] == [(0, True), (1, False), (2, False)]
    rng = _rng(3)
    for c in clicks:
        z, y, x, positive = next_click(pred == c["class"] + 1, gt == c["class"] + 1, rng)
        assert c["voxel"] == (z, y, x) and c["positive"] == positive


def test_rounds_are_deterministic_for_a_seed():
    pred, gt = _labels()
    for round_index in (0, 1, 2):
        a = simulate_round(pred, gt, 5, _rng(11), spacing=(2.5, 0.8, 0.8), round_index=round_index)
        b = simulate_round(pred, gt, 5, _rng(11), spacing=(2.5, 0.8, 0.8), round_index=round_index)
        assert a == b


# ------------------------------------------------------------------------------------------
# NoC
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scores, threshold, cap, expected",
    [
        ([0.91, 0.95], 0.85, 20, 1),  # reached with the first click
        ([0.70, 0.84, 0.85, 0.90], 0.85, 20, 3),  # >= counts
        ([0.70, 0.80, 0.86, 0.92], 0.90, 20, 4),
        ([0.50, 0.60], 0.85, 20, 20),  # never reached: the cap
        ([0.5, 0.6, 0.7, 0.95], 0.90, 3, 3),  # reached only after the cap
        ([], 0.85, 5, 5),
    ],
)
def test_noc(scores, threshold, cap, expected):
    assert noc(scores, threshold, cap=cap) == expected


def test_noc_refuses_a_cap_below_one():
    with pytest.raises(ValueError):
        noc([0.9], 0.85, cap=0)
