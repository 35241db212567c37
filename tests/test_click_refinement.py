"""Click refinement mechanisms: obeyed clicks, removable corrections, error-driven training clicks."""

from __future__ import annotations

import numpy as np
import torch
from synthetic import phantom_clip, tiny_model

from s2vnet.data.click_simulation import ClickSettings
from s2vnet.inference.volume import ROUND_FUSIONS
from s2vnet.modeling.error_clicks import largest_error_click
from s2vnet.modeling.meta_arch import forced_pairs
from s2vnet.modeling.semantic import SEMANTIC_INFERENCE


def _outputs(logits, masks, click_class, here) -> dict:
    return {
        "pred_logits": torch.tensor(logits, dtype=torch.float32)[None],
        "pred_masks": torch.tensor(masks, dtype=torch.float32)[None],
        "click_class": torch.tensor(click_class),
        "clicked_here": torch.tensor(here),
    }


def test_a_positive_click_produces_its_class_whatever_the_head_says():
    # Slot 0 was clicked as class 0 on this slice, but the class head calls it class 1 with confidence.
    masks = np.full((2, 4, 4), -10.0)
    masks[0, 1:3, 1:3] = 10.0
    outputs = _outputs([[-5.0, 5.0, 0.0], [0.0, 0.0, 9.0]], masks, [0, -1], [True, False])
    head = tiny_model("MODEL.S2VNET.CLICK_CLASS_SCORE", "head")
    clicked = tiny_model("MODEL.S2VNET.CLICK_CLASS_SCORE", "clicked")
    assert head.labels_from_scores(head.class_scores(outputs))[1, 1] == 2  # the head's class 1 (label 2)
    assert clicked.labels_from_scores(clicked.class_scores(outputs))[1, 1] == 1  # the clicked class 0 (label 1)


def test_a_propagated_click_slot_is_its_class_or_nothing():
    masks = np.full((1, 2, 2), 10.0)
    model = tiny_model("MODEL.S2VNET.CLICK_CLASS_SCORE", "clicked")
    confident_other = _outputs([[-5.0, 5.0, -5.0]], masks, [0], [False])  # head: class 1, not no-object
    assert model.class_probabilities(confident_other)[0, 0] > 0.99  # all foreground mass goes to class 0
    says_nothing = _outputs([[0.0, 0.0, 8.0]], masks, [0], [False])
    assert model.class_probabilities(says_nothing)[0, 2] > 0.99  # no-object can still stop it off the clicked slice
    on_the_clicked_slice = _outputs([[0.0, 0.0, 8.0]], masks, [0], [True])
    assert model.class_probabilities(on_the_clicked_slice)[0, 0] == 1.0


def test_a_round_contributes_only_its_click_centroids_with_click_round_scores():
    masks = np.full((3, 2, 2), -10.0)
    masks[0] = 10.0  # slot 0: an automatic centroid of class 1 covering the slice
    masks[1, 0, 0] = 10.0  # slot 1: the click centroid of class 0, one pixel
    outputs = _outputs(
        [[-9.0, 9.0, -9.0], [9.0, -9.0, -9.0], [0.0, 0.0, 9.0]], masks, [-1, 0, -1], [False, True, False]
    )
    model = tiny_model()
    scores, reached = model.click_scores(outputs)
    assert reached.tolist() == [True, False]  # class 1 has no click centroid on this slice
    assert scores[0, 0, 0] > 0.99 and scores[0, 1, 1] < 0.01 and scores[1].max() == 0.0


def test_semantic_inference_sums_or_takes_the_best_centroid():
    probs = torch.tensor([[0.4, 0.0], [0.4, 0.0]])
    masks = torch.ones(2, 1, 1)
    assert SEMANTIC_INFERENCE["sum"](probs, masks)[0, 0, 0] == torch.tensor(0.8)
    assert SEMANTIC_INFERENCE["max"](probs, masks)[0, 0, 0] == torch.tensor(0.4)


def test_only_the_latest_fusion_lets_a_round_remove_a_region():
    fused = torch.zeros(2, 1, 2, 2)
    fused[0, 0, 0, 0] = 0.9  # a false positive of class 0
    round_scores = fused.clone()
    round_scores[0, 0, 0, 0] = 0.1  # the round after a negative click there
    reached = torch.ones(2, 1, dtype=torch.bool)
    assert ROUND_FUSIONS["max"](fused, round_scores, [0], reached)[0, 0, 0, 0] == 0.9  # Eq. 9 can only add
    assert ROUND_FUSIONS["latest"](fused, round_scores, [0], reached)[0, 0, 0, 0] == torch.tensor(0.1)
    unreached = torch.zeros(2, 1, dtype=torch.bool)  # where the round's click centroid never got, nothing changes
    assert ROUND_FUSIONS["latest"](fused, round_scores, [0], unreached)[0, 0, 0, 0] == torch.tensor(0.9)


def test_error_click_goes_to_the_largest_error_with_the_right_sign():
    gt = [np.zeros((12, 12), np.int64) for _ in range(3)]
    pred = [np.zeros((12, 12), np.int64) for _ in range(3)]
    gt[0][2:5, 2:5] = 1  # class 0: a 3x3 miss on slice 0 ...
    pred[2][1:8, 1:8] = 1  # ... and a 7x7 extra on slice 2: the largest error, so a negative click in its middle
    assert largest_error_click(pred, gt, 0) == (2, 4, 4, False)
    pred[2][:] = 0
    assert largest_error_click(pred, gt, 0) == (0, 3, 3, True)  # then the miss: positive, at its centre
    gt[1][:, :6] = 255  # padding never counts as an error
    pred[1][:, :6] = 1
    assert largest_error_click(pred, gt, 0) == (0, 3, 3, True)
    assert largest_error_click(gt, gt, 0) is None


def test_forced_matching_takes_the_newest_click_slot_of_each_class():
    click_class = torch.tensor([0, 0, -1, 1])
    order = torch.tensor([0, 2, -1, 1])
    pairs = forced_pairs(click_class, order, torch.tensor([1, 0]))
    assert pairs.tolist() == [[1, 1], [3, 0]]  # class 0 -> slot 1 (newer than slot 0), class 1 -> slot 3


def test_error_rounds_are_drawn_per_clip_with_the_configured_probability():
    rng = np.random.default_rng(0)
    off = ClickSettings(error_prob=0.0)
    assert {off.error_rounds(rng) for _ in range(50)} == {0}
    on = ClickSettings(error_prob=1.0, error_max_rounds=2)
    assert {on.error_rounds(rng) for _ in range(200)} == {0, 1, 2}


def test_training_with_error_rounds_adds_clicks_and_still_trains():
    model = tiny_model("MODEL.S2VNET.CLICK_CLASS_SCORE", "clicked").train()
    clip = phantom_clip(clicks=True)
    clip["error_rounds"] = 2
    features = model.encode(model.preprocess([s["image"] for s in clip["slices"]]))
    before = sum(len(s["clicks"]["coords"]) for s in clip["slices"])
    clicks = model._error_driven_clicks([clip], features, 0)
    after = sum(len(c["coords"]) for c in clicks if c is not None)
    assert before < after <= before + 2 * len(clip["interactive_classes"])  # at most one per class per round
    losses = model([clip])
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())


def test_negative_clicks_on_absent_classes_and_clicks_on_empty_slices_just_work():
    from s2vnet.data.clicks import Click
    from s2vnet.inference.volume import VolumeInference

    model = tiny_model("MODEL.S2VNET.CLICK_CLASS_SCORE", "clicked", "MODEL.S2VNET.CENTROIDS_PER_CLASS", "2")
    engine = VolumeInference(model, slice_batch_size=4)
    features = engine.encode(np.zeros((4, 40, 36), dtype=np.uint8))  # a blank volume: no foreground anywhere
    state = engine.start(features)
    state = engine.interactive_round(features, state, [Click(1, (2, 10.0, 10.0), "working", positive=False)])
    for z in range(4):  # more clicks of one class than it has slots: the slots are reused, nothing is dropped
        state = engine.interactive_round(features, state, [Click(0, (z, 20.0, 20.0), "working")])
    assert state.memory.count == {1: 1, 0: 4} and state.rounds == 5
    assert engine.labels(state.fused, features.image_hw, features.padded_hw).shape == (4, 40, 36)


def test_click_obedience_counts_clicks_that_got_what_they_asked_for():
    import importlib.util
    from pathlib import Path

    from s2vnet.data.clicks import Click

    path = Path(__file__).resolve().parents[1] / "tools" / "click_obedience.py"
    spec = importlib.util.spec_from_file_location("click_obedience", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    labels = np.zeros((2, 4, 4), np.uint8)
    labels[0, 1, 1] = 1
    clicks = [
        Click(0, (0, 1, 1), "working"),
        Click(0, (1, 2, 2), "working"),  # obeyed, not obeyed
        Click(1, (0, 3, 3), "working", positive=False),
        Click(0, (0, 1, 1), "working", positive=False),
    ]
    counts = tool.obedience({"rounds": [labels], "clicks": [clicks]})
    assert counts == {(0, True, True): 1, (0, True, False): 1, (1, False, True): 1, (0, False, False): 1}
