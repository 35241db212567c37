"""The interactive-evaluation click protocols: known answers, connectivity, signs, determinism, NoC, AUC."""

from __future__ import annotations

import numpy as np
import pytest

from s2vnet.data.clicks import Click
from s2vnet.errors import InputError
from s2vnet.evaluation.clicks import challenge_click, challenge_round, first_click, next_click, noc, simulate_round
from s2vnet.evaluation.metrics import per_class_metrics
from s2vnet.evaluation.protocols import (
    CLICK_PROTOCOLS,
    challenge_case_scores,
    challenge_nsd,
    challenge_scores,
    protocols_named,
    trapezoid_auc,
)


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
    clicks = simulate_round(pred, gt, num_classes=5, rng=_rng(), spacing=(2.0, 1.0, 1.0), frame="working")
    assert [c.class_index for c in clicks] == [0, 1, 3]
    assert all(c.positive is True and c.frame == "working" for c in clicks)
    rng = _rng()
    for c in clicks:
        assert c.position == first_click(gt == c.class_index + 1, rng, spacing=(2.0, 1.0, 1.0))
        assert all(type(v) is int for v in c.position)


def test_later_rounds_correct_each_class_with_errors():
    pred, gt = _labels()
    clicks = simulate_round(pred, gt, num_classes=5, rng=_rng(3), round_index=1, frame="zyx")
    assert [(c.class_index, c.positive) for c in clicks] == [(0, True), (1, False), (2, False)]
    assert {c.frame for c in clicks} == {"zyx"}
    rng = _rng(3)
    for c in clicks:
        z, y, x, positive = next_click(pred == c.class_index + 1, gt == c.class_index + 1, rng)
        assert c.position == (z, y, x) and c.positive == positive


def test_rounds_are_deterministic_for_a_seed():
    pred, gt = _labels()
    for round_index in (0, 1, 2):
        a = simulate_round(pred, gt, 5, _rng(11), spacing=(2.5, 0.8, 0.8), round_index=round_index, frame="working")
        b = simulate_round(pred, gt, 5, _rng(11), spacing=(2.5, 0.8, 0.8), round_index=round_index, frame="working")
        assert a == b and len(a) == 3


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


# ------------------------------------------------------------------------------------------
# CVPR 2025 challenge protocol: placement
# ------------------------------------------------------------------------------------------


def test_challenge_components_are_26_connected():
    gt = np.zeros((20, 20, 20), dtype=bool)
    # two 27-voxel missed cubes touching at one corner only: one 54-voxel component with 26-connectivity
    gt |= _box(gt.shape, (2, 2, 2), (3, 3, 3)) | _box(gt.shape, (5, 5, 5), (3, 3, 3))
    pred = _box(gt.shape, (12, 12, 10), (2, 4, 5))  # a 40-voxel false positive: larger than either cube
    assert next_click(pred, gt, _rng())[3] is False  # the paper's 6-connected protocol clicks the 40 voxels
    clicks = {challenge_click(pred, gt, _rng(seed)) for seed in range(16)}
    # both cube centres are 2 voxels from the component's outside: the seed picks one of them
    assert clicks == {(3, 3, 3, True), (6, 6, 6, True)}


def test_challenge_click_sign_is_the_ground_truth_at_the_distance_maximum():
    shape = (16, 40, 40)
    layer = _box(shape, (2, 2, 2), (2, 36, 36))  # 2592 voxels, at most 1 voxel from the outside
    block = _box(shape, (4, 15, 15), (7, 7, 7))  # 343 voxels on top of the layer: one error component
    # paper: the larger (false negative) kind wins; challenge: the component's distance maximum is in the block
    assert next_click(block, layer, _rng())[3] is True
    for seed in range(6):
        z, y, x, positive = challenge_click(block, layer, _rng(seed))
        assert positive is False and (y, x) == (18, 18) and 4 <= z <= 7 and block[z, y, x]
        z, y, x, positive = challenge_click(layer, block, _rng(seed))  # the same error as a missed block
        assert positive is True and (y, x) == (18, 18) and 4 <= z <= 7


def test_challenge_click_goes_to_the_distance_transform_maximum():
    gt = _box((20, 30, 30), (5, 4, 4), (9, 9, 9))  # thick block, centre (9, 8, 8): 5 voxels from outside
    gt |= _box(gt.shape, (8, 13, 6), (3, 15, 3))  # thin arm along y, longer than the block is wide
    pred = np.zeros_like(gt)
    pred[9, 8, 8] = True  # a hole in the error at the centre moves the maximum off it
    z, y, x, positive = challenge_click(np.zeros_like(gt), gt, _rng())
    assert (z, y, x, positive) == (9, 8, 8, True)
    z, y, x, positive = challenge_click(pred, gt, _rng())
    assert positive is True and gt[z, y, x] and not pred[z, y, x] and (z, y, x) != (9, 8, 8)
    assert 5 <= z <= 13 and 4 <= y <= 12 and 4 <= x <= 12  # still in the block, not the arm


def test_challenge_ties_are_broken_by_the_seed_and_are_reproducible():
    gt = _box((12, 12, 12), (1, 1, 1), (10, 10, 10))
    pred = gt.copy()
    pred[2:6, 2:6, 2:6] = False  # two equal 4^3 missed cubes: ties in size and in distance
    pred[6:10, 6:10, 6:10] = False
    clicks = [challenge_click(pred, gt, _rng(seed)) for seed in range(24)]
    assert clicks == [challenge_click(pred, gt, _rng(seed)) for seed in range(24)]
    assert all(c[3] is True and gt[c[:3]] and not pred[c[:3]] for c in clicks)
    assert {c[0] < 6 for c in clicks} == {True, False} and len(set(clicks)) > 4


def test_no_error_no_challenge_click_and_no_draw():
    gt = _box((8, 8, 8), (2, 2, 2), (3, 3, 3))
    rng = _rng(5)
    state = rng.bit_generator.state
    assert challenge_click(gt.copy(), gt, rng) is None
    assert rng.bit_generator.state == state


def test_challenge_round_corrects_the_prediction_of_every_class_in_the_ground_truth():
    pred, gt = _labels()
    clicks = challenge_round(pred, gt, 5, _rng(4), frame="working")
    # class 2 is only predicted (not in the ground truth: the challenge does not click it); class 3 is perfect
    assert [(c.class_index, c.positive, c.frame) for c in clicks] == [(0, True, "working"), (1, False, "working")]
    rng = _rng(4)
    for c in clicks:
        z, y, x, positive = challenge_click(pred == c.class_index + 1, gt == c.class_index + 1, rng)
        assert c == Click(c.class_index, (z, y, x), "working", positive)
        assert all(type(v) is int for v in c.position)
    assert clicks == challenge_round(pred, gt, 5, _rng(4), frame="working")


# ------------------------------------------------------------------------------------------
# CVPR 2025 challenge protocol: scores
# ------------------------------------------------------------------------------------------


def test_auc_is_the_trapezoid_over_the_steps():
    # (0.5 + 0.6) / 2 + (0.6 + 0.8) / 2 + (0.8 + 0.9) / 2 + (0.9 + 0.9) / 2 = 0.55 + 0.7 + 0.85 + 0.9
    assert trapezoid_auc([0.5, 0.6, 0.8, 0.9, 0.9]) == pytest.approx(3.0)
    assert trapezoid_auc([1.0] * 5) == pytest.approx(4.0) and trapezoid_auc([0.0] * 5) == 0.0
    assert trapezoid_auc([0.2, 0.4]) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        trapezoid_auc([0.7])


def test_nsd_counts_zero_where_dsc_is_at_most_0_2():
    assert challenge_nsd(0.2, 0.9) == 0.0
    assert challenge_nsd(0.0, 1.0) == 0.0
    assert challenge_nsd(0.2001, 0.9) == 0.9


def _rows(case, step, scores):
    return [
        {"case": case, "class": name, "clicks": step, "dice": d, "nsd": n, "gt_voxels": g}
        for name, (d, n, g) in scores.items()
    ]


def test_case_scores_are_class_means_with_the_nsd_rule_on_the_case_dsc():
    rows = []
    # class "c" is absent from the ground truth: skipped; step 1 mean DSC 0.2 -> NSD 0 (not 0.6)
    rows += _rows("a", 1, {"a": (0.1, 0.4, 9), "b": (0.3, 0.8, 9), "c": (0.0, 0.0, 0)})
    rows += _rows("a", 2, {"a": (0.1, 0.4, 9), "b": (0.5, 0.8, 9), "c": (1.0, 1.0, 0)})  # mean 0.3: NSD 0.6 kept
    rows += _rows("a", 3, {"a": (0.9, 1.0, 9), "b": (0.9, 0.9, 9), "c": (1.0, 1.0, 0)})
    scores = challenge_case_scores(rows)
    assert scores["dsc"] == pytest.approx([0.2, 0.3, 0.9]) and scores["nsd"] == pytest.approx([0.0, 0.6, 0.95])
    assert scores["dsc_auc"] == pytest.approx((0.2 + 0.3) / 2 + (0.3 + 0.9) / 2)
    assert scores["nsd_auc"] == pytest.approx((0.0 + 0.6) / 2 + (0.6 + 0.95) / 2)
    assert (scores["final_dsc"], scores["final_nsd"]) == pytest.approx((0.9, 0.95))


def test_dataset_scores_are_means_over_cases():
    rows = []
    for step, (da, db) in enumerate([(0.5, 0.1), (0.6, 0.3), (0.8, 0.5), (0.9, 0.7), (0.9, 0.9)], start=1):
        rows += _rows("a", step, {"x": (da, 1.0, 5)}) + _rows("b", step, {"x": (db, 1.0, 5)})
    rows += _rows("empty", 1, {"x": (1.0, 1.0, 0)})  # no class in its ground truth: no scores
    scores = challenge_scores(rows, noc_cap=20)
    assert set(scores["per_case"]) == {"a", "b"}
    assert scores["per_case"]["a"]["dsc_auc"] == pytest.approx(3.0)
    assert scores["per_case"]["b"]["dsc_auc"] == pytest.approx(0.2 + 0.4 + 0.6 + 0.8)
    assert scores["per_case"]["b"]["nsd"] == [0.0, 1.0, 1.0, 1.0, 1.0]  # step 1: DSC 0.1
    assert scores["dsc_auc"] == pytest.approx((3.0 + 2.0) / 2) and scores["final_dsc"] == pytest.approx(0.9)
    assert scores["nsd_auc"] == pytest.approx((4.0 + 3.5) / 2) and scores["per_step"]["dsc"][0] == pytest.approx(0.3)


def test_nsd_rule_on_hand_made_volumes():
    gt = np.zeros((8, 12, 12), dtype=np.uint8)
    gt[3, 2:10, 2:10] = 1  # a one-slice plate
    shifted = np.roll(gt, 1, axis=0)  # no overlap (DSC 0) but every surface within 1 mm
    steps = [shifted, gt]
    rows = []
    for step, pred in enumerate(steps, start=1):
        metrics = per_class_metrics(pred, gt, (1.0, 1.0, 1.0), 1, 2.0)
        rows += [{"case": "plate", "clicks": step, **m} for m in metrics]
    assert rows[0]["dice"] == 0.0 and rows[0]["nsd"] == pytest.approx(1.0)
    scores = challenge_case_scores(rows)
    assert scores["nsd"] == [0.0, 1.0] and scores["dsc"] == [0.0, 1.0]
    assert scores["nsd_auc"] == pytest.approx(0.5)


# ------------------------------------------------------------------------------------------
# the registry
# ------------------------------------------------------------------------------------------


def test_protocol_registry():
    assert CLICK_PROTOCOLS["cvpr25"].num_rounds(15) == 5 and CLICK_PROTOCOLS["paper"].num_rounds(15) == 15
    assert CLICK_PROTOCOLS["cvpr25"].nsd_tolerance_mm == 2.0
    assert [p.name for p in protocols_named("cvpr25")] == ["cvpr25"]
    assert [p.name for p in protocols_named(["cvpr25", "paper"])] == ["cvpr25", "paper"]
    for bad in (["paper", "nope"], [], ["paper", "paper"]):
        with pytest.raises(InputError, match="TEST.S2VNET.PROTOCOL"):
            protocols_named(bad)


def test_every_protocol_places_working_frame_clicks_on_the_current_errors():
    pred, gt = _labels()
    for protocol in CLICK_PROTOCOLS.values():
        for round_index in (0, 1):
            clicks = protocol.place(pred, gt, 5, _rng(1), (2.0, 1.0, 1.0), round_index, frame="working")
            assert clicks and all(isinstance(c, Click) and c.frame == "working" for c in clicks)
            for c in clicks:
                on_class = gt[c.position] == c.class_index + 1
                assert on_class == c.positive
                if round_index > 0 or protocol.name == "cvpr25":  # corrective: at an error of the class
                    assert (pred[c.position] == c.class_index + 1) != on_class
