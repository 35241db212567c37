"""Click edits (TEST.S2VNET.CLICK_PRIOR): a click's label holds in its region, whatever the decoder says."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from synthetic import tiny_cfg, tiny_model

from s2vnet.data.clicks import Click
from s2vnet.inference.click_prior import ClickEdits, ClickPrior, Seed, _edit_box, feature_seed, seed_agreement
from s2vnet.inference.volume import VolumeInference


def _two_region_features() -> SimpleNamespace:
    """Stride-1 features of a ``(5, 12, 12)`` volume: embedding (1, 0) on the left half, (0, 1) on the right,
    plus an island of the left's embedding at the far right that no path of similar voxels joins to the left."""
    feats = torch.zeros(5, 2, 12, 12)
    feats[:, 0, :, :6] = 1.0
    feats[:, 1, :, 6:] = 1.0
    feats[:, :, 5:7, 10:12] = torch.tensor([1.0, 0.0])[None, :, None, None]
    return SimpleNamespace(mask_features=feats, image=np.full((5, 12, 12), 100, np.uint8))


def _region(seed) -> np.ndarray:
    full = np.zeros((5, 12, 12), bool)
    full[seed.box] = np.isfinite(seed.distance)
    return full


def test_a_click_region_is_the_connected_similar_embedding_within_the_radius():
    prior = ClickPrior(feature_seed, similarity=0.9, radius=20, slices=1)
    region = _region(feature_seed(Click(0, (2, 6, 2), "working"), _two_region_features(), 1, prior))
    assert region[1:4, :, :6].all()  # the clicked half, on the clicked slice and one slice either side
    assert not region[:, :, 6:].any()  # neither the other half nor the disconnected island of the same embedding
    assert not region[0].any() and not region[4].any()  # beyond SLICES


def test_the_radius_and_the_intensity_bound_the_region():
    features = _two_region_features()
    small = _region(feature_seed(Click(0, (2, 6, 2), "working"), features, 1, ClickPrior(feature_seed, 0.9, 2, 0)))
    assert small[2, 6, 2] and small[2, 4, 2] and not small[2, 6, 5] and not small[2, 1, 2]
    assert small.sum() == small[2].sum()
    features.image[:, :, 3:] = 180  # an edge in intensity inside the left half
    sharp = ClickPrior(feature_seed, 0.9, 20, 0, intensity=30)
    region = _region(feature_seed(Click(0, (2, 6, 1), "working"), features, 1, sharp))
    assert region[2, :, :3].all() and not region[2, :, 3:].any()


def test_the_embedding_is_upsampled_from_mask_resolution():
    cells = torch.zeros(1, 2, 4, 4)
    cells[:, 0, :, :2], cells[:, 1, :, 2:] = 1.0, 1.0  # left / right halves at stride 4: 16 x 16 pixels
    features = SimpleNamespace(mask_features=cells, image=np.zeros((1, 16, 16), np.uint8))
    region = feature_seed(Click(0, (0, 8, 2), "working"), features, 4, ClickPrior(feature_seed, 0.9, 20, 0))
    full = np.zeros((1, 16, 16), bool)
    full[region.box] = np.isfinite(region.distance)
    assert full[0, :, :6].all() and not full[0, :, 10:].any()  # the boundary falls between cells 1 and 2


def test_a_negative_click_lowers_its_class_near_it_and_a_positive_click_keeps_its_side():
    features = _two_region_features()
    prior = ClickPrior(feature_seed, similarity=-1.0, radius=20, slices=1)  # one region: the whole box
    scores = torch.full((2, 12, 12), 0.3)
    scores[0] = 0.9  # class 0 everywhere
    negative = prior.update(None, features, [Click(0, (2, 6, 10), "working", positive=False)], 1)
    after = negative.apply(scores, 2)
    assert after[0].max() == 0.0 and torch.equal(after[1], scores[1])  # class 0 removed, the others untouched
    both = prior.update(negative, features, [Click(0, (2, 6, 1), "working")], 1).apply(scores, 2)
    assert both[0, 6, 0] == 1.0 and both[1, 6, 0] == 0.0  # the positive click's side: class 0, and only it
    assert both[0, 6, 11] == 0.0  # the negative click's side stays removed
    assert negative.apply(scores, 2)[0, 6, 0] == 0.0  # the earlier edits are unchanged (undo keeps them)
    assert torch.equal(negative.apply(scores, 4), scores)  # beyond the seeds' slices: no edit


def test_where_two_classes_claim_a_voxel_the_nearest_click_wins():
    features = _two_region_features()
    prior = ClickPrior(feature_seed, similarity=-1.0, radius=20, slices=0)
    clicks = [Click(0, (2, 6, 0), "working"), Click(1, (2, 6, 9), "working")]
    out = prior.update(None, features, clicks, 1).apply(torch.full((2, 12, 12), 0.7), 2)
    assert out[:, 6, 2].tolist() == [1.0, 0.0] and out[:, 6, 7].tolist() == [0.0, 1.0]


def test_no_prior_means_no_edits():
    assert ClickPrior().update(None, _two_region_features(), [Click(0, (2, 6, 1), "working")], 1) is None
    assert ClickEdits().apply(torch.ones(2, 3, 3), 0).eq(1).all()


@pytest.mark.parametrize("prior", ["none", "feature"])
def test_the_engine_obeys_clicks_with_a_click_prior(prior):
    overrides = ("TEST.S2VNET.CLICK_PRIOR", prior)
    engine = VolumeInference.from_cfg(tiny_model(*overrides), tiny_cfg(*overrides))  # random weights
    image = np.zeros((4, 40, 36), np.uint8)
    image[:, 8:24, 8:24] = 200
    features = engine.encode(image)
    start = engine.start(features)
    positive = engine.interactive_round(features, start, [Click(1, (2, 16.0, 16.0), "working")])
    negative = engine.interactive_round(features, positive, [Click(1, (2, 16.0, 16.0), "working", positive=False)])
    added, removed = engine.state_labels(positive, features), engine.state_labels(negative, features)
    if prior == "feature":
        assert added[2, 16, 16] == 2 and removed[2, 16, 16] != 2
        assert engine.state_labels(positive, features)[2, 16, 16] == 2  # the earlier state is unchanged
    else:
        assert positive.edits is None and negative.edits is None


def test_a_round_of_only_negative_clicks_is_not_fused_with_negative_rounds_skip():
    overrides = ("TEST.S2VNET.NEGATIVE_ROUNDS", "skip")
    engine = VolumeInference.from_cfg(tiny_model(*overrides), tiny_cfg(*overrides))
    features = engine.encode(np.full((3, 40, 36), 90, np.uint8))
    first = engine.interactive_round(features, engine.start(features), [Click(0, (1, 20.0, 20.0), "working")])
    second = engine.interactive_round(features, first, [Click(0, (1, 10.0, 10.0), "working", positive=False)])
    assert torch.equal(second.fused, first.fused)  # max fusion could only have added the rejected class
    assert second.memory.count == {0: 2} and 0 in second.memory.negative  # the click is still remembered


def test_seed_agreement_is_the_iou_with_the_region_on_the_clicked_slice():
    prior = ClickPrior(feature_seed, similarity=0.9, radius=20, slices=1)
    seed = feature_seed(Click(0, (2, 6, 2), "working"), _two_region_features(), 1, prior)
    left = np.zeros((12, 12), bool)
    left[:, :6] = True
    assert seed_agreement(seed, left) == 1.0
    assert seed_agreement(seed, ~left) == 0.0
    half = left.copy()
    half[6:] = False
    assert seed_agreement(seed, half) == pytest.approx(0.5)


def test_a_round_that_disagrees_with_its_click_region_is_not_fused():
    overrides = ("TEST.S2VNET.CLICK_PRIOR", "feature", "TEST.S2VNET.CLICK_PRIOR_AGREEMENT", "1.01")  # never agrees
    engine = VolumeInference.from_cfg(tiny_model(*overrides), tiny_cfg(*overrides))
    features = engine.encode(np.full((3, 40, 36), 90, np.uint8))
    start = engine.start(features)
    state = engine.interactive_round(features, start, [Click(0, (1, 20.0, 20.0), "working")])
    assert torch.equal(state.fused, start.fused) and len(state.edits.seeds) == 1  # the edit still holds
    assert engine.state_labels(state, features)[1, 20, 20] == 1


def _whole_slice_edits(edits: ClickEdits, scores: torch.Tensor, z: int) -> torch.Tensor:
    """Reference: the edits computed over the whole slice (distances inf outside each seed's box)."""
    dist = np.full(scores.shape, np.inf, np.float32)
    positive = np.zeros(scores.shape, bool)
    for seed in [s for s in edits.seeds if s.box[0].start <= z < s.box[0].stop]:
        _, ys, xs = seed.box
        d, current = seed.distance[z - seed.box[0].start], dist[seed.class_index, ys, xs]
        better = d <= current
        dist[seed.class_index, ys, xs] = np.where(better, d, current)
        positive[seed.class_index, ys, xs] = np.where(better, seed.positive, positive[seed.class_index, ys, xs])
    return _edit_box(scores, dist, positive)


def test_edits_on_the_seeds_bounding_box_equal_edits_over_the_whole_slice():
    rng = np.random.default_rng(7)
    for _ in range(20):
        seeds = []
        for _ in range(rng.integers(1, 5)):
            z0, y0, x0 = rng.integers(0, 3), rng.integers(0, 20), rng.integers(0, 20)
            dz, dy, dx = rng.integers(1, 4), rng.integers(1, 12), rng.integers(1, 12)
            distance = rng.random((dz, dy, dx)).astype(np.float32)
            distance[rng.random(distance.shape) < 0.3] = np.inf  # outside the seed's region
            box = (slice(z0, z0 + dz), slice(y0, y0 + dy), slice(x0, x0 + dx))
            seeds.append(Seed(int(rng.integers(0, 3)), bool(rng.random() < 0.6), box, distance, (z0, y0, x0)))
        edits = ClickEdits(tuple(seeds))
        scores = torch.rand(3, 32, 32)
        for z in range(6):
            assert torch.equal(edits.apply(scores, z), _whole_slice_edits(edits, scores, z))
