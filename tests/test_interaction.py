"""Click-initialised centroids (Eq. 7), adaptive sampling (Eq. 8), propagation and aggregation (Eq. 5-6, 10-11)."""

from __future__ import annotations

import torch
from torch import nn

from s2vnet.modeling.interaction import CentroidBank, ClickMemory, accumulate, sample_features
from s2vnet.modeling.propagation import PropagationState, RecurrentAggregator, next_state


def _bank(**kw) -> CentroidBank:
    torch.manual_seed(0)
    return CentroidBank(
        **{**dict(num_classes=3, per_class=2, hidden_dim=8, feature_dim=6, beta=0.8, slots="shared"), **kw}
    )


def _by_class(placed) -> dict:
    """The last centroid placed for each class."""
    return {c.class_index: c.centroid for c in placed}


def _clicks(coords, classes, positive=None):
    n = len(coords)
    return {
        "coords": torch.tensor(coords, dtype=torch.float32),
        "classes": torch.tensor(classes),
        "positive": torch.tensor(positive if positive is not None else [True] * n),
    }


def test_sample_features_reads_the_clicked_pixel():
    features = torch.arange(2 * 4 * 5, dtype=torch.float32).view(2, 4, 5)
    # stride 4: input pixel (y, x) = (4*i + 1.5, 4*j + 1.5) is the centre of feature cell (i, j)
    out = sample_features(features, torch.tensor([[4 * 2 + 1.5, 4 * 3 + 1.5]]), (16, 20))
    torch.testing.assert_close(out[0], features[:, 2, 3])


def test_beta_accumulation_equals_closed_form():
    feats = torch.randn(4, 6)
    beta = 0.8
    closed = sum(beta ** (3 - i) * feats[i] for i in range(4))
    torch.testing.assert_close(accumulate(feats, beta), closed)
    prior = torch.randn(6)  # earlier rounds continue the same series
    torch.testing.assert_close(accumulate(feats, beta, prior), closed + beta**4 * prior)


def test_click_centroid_depends_on_the_clicked_pixel_only():
    bank = _bank()
    features = torch.randn(6, 8, 8)
    clicks = _clicks([[10.0, 10.0]], [1])
    base = _by_class(bank.click_centroids(features, clicks, (32, 32), ClickMemory())[0])
    near = features.clone()
    near[:, 2, 2] += 1.0  # the feature cell under the click
    changed = _by_class(bank.click_centroids(near, clicks, (32, 32), ClickMemory())[0])
    far = features.clone()
    far[:, 7, 7] += 1.0
    unchanged = _by_class(bank.click_centroids(far, clicks, (32, 32), ClickMemory())[0])
    assert not torch.allclose(base[1], changed[1])
    torch.testing.assert_close(base[1], unchanged[1])


def test_several_classes_in_one_pass_give_one_centroid_each():
    bank = _bank()
    clicks = _clicks([[3.0, 3.0], [20.0, 9.0], [12.0, 30.0], [5.0, 25.0]], [0, 2, 2, 1])
    placed, memory = bank.click_centroids(torch.randn(6, 8, 8), clicks, (32, 32), ClickMemory())
    centroids = _by_class(placed)
    assert sorted(centroids) == [0, 1, 2] and len(placed) == 3
    assert all(c.shape == (8,) for c in centroids.values())
    assert [bank.click_slot(k) for k in (0, 1, 2)] == [0, 2, 4]
    assert sorted(memory.positive) == [0, 1, 2]


def test_adaptive_sampling_switch_keeps_only_the_latest_click():
    features = torch.randn(6, 8, 8)
    clicks = _clicks([[3.0, 3.0], [20.0, 9.0]], [0, 0])
    off = _by_class(_bank(adaptive=False).click_centroids(features, clicks, (32, 32), ClickMemory())[0])
    last = _by_class(
        _bank(adaptive=False).click_centroids(features, _clicks([[20.0, 9.0]], [0]), (32, 32), ClickMemory())[0]
    )
    on = _by_class(_bank(adaptive=True).click_centroids(features, clicks, (32, 32), ClickMemory())[0])
    torch.testing.assert_close(off[0], last[0])
    assert not torch.allclose(on[0], off[0])


def test_negative_clicks_start_neutral_and_learn():
    bank = _bank()
    features = torch.randn(6, 8, 8)
    pos = _clicks([[10.0, 10.0]], [0])
    both = _clicks([[10.0, 10.0], [28.0, 28.0]], [0, 0], [True, False])
    only_pos = _by_class(bank.click_centroids(features, pos, (32, 32), ClickMemory())[0])
    placed, memory = bank.click_centroids(features, both, (32, 32), ClickMemory())
    with_neg = _by_class(placed)
    torch.testing.assert_close(only_pos[0], with_neg[0])  # zero-initialised negative branch
    assert 0 in memory.negative
    with_neg[0].sum().backward()
    assert bank.negative_ffn.layers[-1].weight.grad.abs().sum() > 0  # ... but it receives gradient
    negative_only, _ = bank.click_centroids(features, _clicks([[28.0, 28.0]], [0], [False]), (32, 32), ClickMemory())
    assert negative_only == []


def test_each_click_takes_its_own_slot_and_the_count_carries_over_rounds():
    bank = _bank(slots="per_click", per_class=3)
    features = torch.randn(6, 8, 8)
    first, memory = bank.click_centroids(
        features, _clicks([[3.0, 3.0], [9.0, 9.0], [5.0, 5.0]], [1, 1, 2]), (32, 32), ClickMemory()
    )
    assert [(c.slot, c.class_index) for c in first] == [(3, 1), (4, 1), (6, 2)]  # class k's slots are 3k..3k+2
    second, memory = bank.click_centroids(
        features, _clicks([[7.0, 7.0], [1.0, 1.0]], [1, 1], [False, True]), (32, 32), memory
    )
    assert [c.slot for c in second] == [5, 3]  # the 3rd and 4th click of class 1: slot 5, then the oldest again
    assert memory.count == {1: 4, 2: 1}
    assert not torch.allclose(first[1].centroid, first[0].centroid)  # Eq. 8: the second click adds to the first
    shared, _ = _bank(slots="shared", per_class=3).click_centroids(
        features, _clicks([[3.0, 3.0], [9.0, 9.0]], [1, 1]), (32, 32), ClickMemory()
    )
    assert [c.slot for c in shared] == [3]


def _identity_bank(norm: str) -> CentroidBank:
    bank = _bank(slots="per_click", per_class=4, hidden_dim=6, feature_norm=norm)
    bank.positive_ffn = nn.Identity()  # the centroid is then the Eq. 8 feature itself
    return bank


def test_eq8_unnormalised_and_normalised_give_their_closed_forms():
    features = torch.randn(6, 8, 8)
    coords = [[3.0, 3.0], [9.0, 20.0], [30.0, 5.0]]
    sampled = sample_features(features, torch.tensor(coords), (32, 32))
    beta = 0.8
    weights = [beta**2, beta, 1.0]
    raw = sum(w * f for w, f in zip(weights, sampled))
    placed, _ = _identity_bank("none").click_centroids(features, _clicks(coords, [0, 0, 0]), (32, 32), ClickMemory())
    torch.testing.assert_close(placed[-1].centroid, raw)
    placed, memory = _identity_bank("weights").click_centroids(
        features, _clicks(coords, [0, 0, 0]), (32, 32), ClickMemory()
    )
    torch.testing.assert_close(placed[-1].centroid, raw / sum(weights))
    assert memory.positive_weight[0] == sum(weights)
    torch.testing.assert_close(placed[0].centroid, sampled[0])  # one click: the mean is the feature itself


def test_propagation_passes_exactly_the_kept_slots():
    state = PropagationState.empty(6, 8)
    centroids = torch.randn(6, 8)
    keep = torch.tensor([True, False, True, False, False, True])
    click_class = torch.tensor([0, 1, -1, -1, -1, -1])
    new = next_state(state, centroids, keep, click_class, aggregator=None)
    assert torch.equal(new.active, keep)
    torch.testing.assert_close(new.centroids[keep], centroids[keep])
    assert torch.count_nonzero(new.centroids[~keep]) == 0
    assert new.click_class.tolist() == [0, -1, -1, -1, -1, -1]  # a dropped click slot forgets its class


def test_aggregation_reads_history_and_writes_it():
    torch.manual_seed(3)
    agg = RecurrentAggregator(8, 2, 16)
    state = PropagationState.empty(4, 8)
    keep = torch.tensor([True, True, False, True])
    first = next_state(state, torch.randn(4, 8), keep, torch.full((4,), -1), agg)
    assert torch.equal(first.history_valid, keep)
    c2 = torch.randn(4, 8)
    second = next_state(first, c2, torch.ones(4, dtype=torch.bool), torch.full((4,), -1), agg)
    torch.testing.assert_close(second.centroids, agg.read(c2, first.history, first.history_valid))
    assert not torch.allclose(second.centroids, c2)  # Eq. 11 adds what the history says
    no_history = next_state(state, c2, keep, torch.full((4,), -1), agg)
    torch.testing.assert_close(no_history.centroids[keep], c2[keep])  # nothing to read before the first write


def test_inference_aggregates_only_the_kept_slots_with_the_same_result():
    torch.manual_seed(4)
    agg = RecurrentAggregator(8, 2, 16)
    state = PropagationState.empty(6, 8)
    state = next_state(
        state, torch.randn(6, 8), torch.tensor([1, 1, 0, 1, 0, 1], dtype=torch.bool), state.click_class, agg
    )
    c2 = torch.randn(6, 8)
    for keep in (torch.tensor([1, 0, 1, 1, 0, 0], dtype=torch.bool), torch.zeros(6, dtype=torch.bool)):
        full = next_state(state, c2, keep, state.click_class, agg.train())  # every row, as training computes it
        calls: list[int] = []
        handle = agg.ffn.register_forward_hook(lambda _m, inputs, _o, seen=calls: seen.append(inputs[0].shape[0]))
        kept = next_state(state, c2, keep, state.click_class, agg.eval())
        handle.remove()
        assert calls == ([int(keep.sum())] if keep.any() else [])  # the write ran on the kept rows alone
        torch.testing.assert_close(kept.centroids, full.centroids, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(kept.history, full.history, rtol=1e-5, atol=1e-6)
        assert torch.equal(kept.history_valid, full.history_valid) and torch.equal(kept.active, full.active)
