"""Click edits (TEST.S2VNET.CLICK_PRIOR): a click's label holds in its embedding region, whatever the decoder says."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from synthetic import tiny_cfg, tiny_model

from s2vnet.data.clicks import Click
from s2vnet.inference.click_prior import ClickEdits, ClickPrior, click_cell, feature_region
from s2vnet.inference.volume import VolumeInference


def _two_region_features() -> torch.Tensor:
    """``(Z=5, D=2, 12, 12)`` embeddings: direction (1, 0) on the left half, (0, 1) on the right, plus an island of
    the left's direction at the far right that no path of similar cells joins to the left half."""
    feats = torch.zeros(5, 2, 12, 12)
    feats[:, 0, :, :6] = 1.0
    feats[:, 1, :, 6:] = 1.0
    feats[:, :, 5:7, 10:12] = torch.tensor([1.0, 0.0])[None, :, None, None]
    return feats


def test_a_click_region_is_the_connected_similar_embedding_within_the_radius():
    zs, ys, xs, region = feature_region(_two_region_features(), (2, 6, 2), similarity=0.9, radius=20, slices=1)
    full = np.zeros((5, 12, 12), bool)
    full[zs, ys, xs] = region
    assert full[1:4, :, :6].all()  # the clicked half, on the clicked slice and one slice either side
    assert not full[:, :, 6:].any()  # neither the other half nor the disconnected island of the same embedding
    assert not full[0].any() and not full[4].any()  # beyond SLICES


def test_the_radius_bounds_the_region_in_plane():
    zs, ys, xs, region = feature_region(_two_region_features(), (2, 6, 2), similarity=0.9, radius=2, slices=0)
    full = np.zeros((5, 12, 12), bool)
    full[zs, ys, xs] = region
    assert full[2, 6, 2] and full[2, 4, 2] and not full[2, 6, 5] and not full[2, 1, 2]
    assert full.sum() == full[2].sum()


def test_a_negative_click_lowers_its_class_near_it_and_a_later_positive_click_raises_it_again():
    feats = _two_region_features()
    scores = torch.zeros(2, 5, 12, 12)
    scores[0] = 0.9  # class 0 everywhere: a false positive on the right half
    prior = ClickPrior(feature_region, similarity=0.9, radius=20, slices=1)
    edits = prior.update(None, feats, scores, [Click(0, (2, 6 * 4, 9 * 4), "working", positive=False)], stride=4)
    after = edits.apply(scores)
    assert after[0, 2, :, 6:10].max() == 0.0  # removed where the negative click's region is ...
    assert after[0, 2, 5, 11] == pytest.approx(0.9)  # ... not on the island of another embedding
    assert torch.equal(after[0, 2, :, :6], scores[0, 2, :, :6])  # untouched elsewhere
    again = prior.update(edits, feats, after, [Click(0, (2, 6 * 4, 9 * 4), "working")], stride=4).apply(after)
    assert again[0, 2, 6, 9] == 1.0 and again[1, 2, 6, 9] == 0.0  # the later click wins; other classes lose it
    assert edits.apply(scores)[0, 2, 6, 9] == 0.0  # the earlier edits were copied, not changed (undo keeps them)


def test_a_positive_click_takes_the_region_from_another_class():
    edits = ClickEdits.empty(torch.zeros(3, 1, 4, 4))
    region = np.zeros((1, 4, 4), bool)
    region[0, :2, :2] = True
    edits.add(0, (slice(0, 1), slice(0, 4), slice(0, 4)), region, positive=True)
    edits.add(2, (slice(0, 1), slice(0, 4), slice(0, 4)), region[:, :, ::-1].copy(), positive=True)
    scores = torch.full((3, 1, 4, 4), 0.7)
    out = edits.apply(scores)
    assert out[:, 0, 0, 0].tolist() == [1.0, 0.0, 0.0] and out[:, 0, 0, 3].tolist() == [0.0, 0.0, 1.0]
    assert out[:, 0, 3, 3].tolist() == pytest.approx([0.7, 0.7, 0.7])  # no click there


def test_click_cell_maps_working_pixels_to_mask_cells_inside_the_grid():
    assert click_cell(Click(1, (3.0, 9.0, 15.9), "working"), 4, (5, 8, 8)) == (3, 2, 3)
    assert click_cell(Click(1, (9.0, 99.0, 0.0), "working"), 4, (5, 8, 8)) == (4, 7, 0)


@pytest.mark.parametrize("prior", ["none", "feature"])
def test_the_engine_obeys_clicks_only_with_a_click_prior(prior):
    model = tiny_model("TEST.S2VNET.CLICK_PRIOR", prior)  # random weights: the decoder alone obeys nothing
    engine = VolumeInference.from_cfg(model, tiny_cfg("TEST.S2VNET.CLICK_PRIOR", prior))
    image = np.zeros((4, 40, 36), np.uint8)
    image[:, 8:24, 8:24] = 200
    features = engine.encode(image)
    start = engine.start(features)
    positive = engine.interactive_round(features, start, [Click(1, (2, 16.0, 16.0), "working")])
    labels = engine.labels(positive.fused, features.image_hw, features.padded_hw)
    negative = engine.interactive_round(features, positive, [Click(1, (2, 16.0, 16.0), "working", positive=False)])
    removed = engine.labels(negative.fused, features.image_hw, features.padded_hw)
    if prior == "feature":
        assert labels[2, 16, 16] == 2 and removed[2, 16, 16] != 2
    else:
        assert positive.edits is None and negative.edits is None
