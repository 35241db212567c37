"""Point sampling, the Hungarian matcher with forced pairs, and the set criterion (CPU, small sizes)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from s2vnet.config import get_s2vnet_cfg
from s2vnet.modeling.criterion import SetCriterion
from s2vnet.modeling.matcher import HungarianMatcher
from s2vnet.modeling.point_sampling import point_sample, uncertain_point_coords

K = 4  # foreground classes
H = W = 64  # target (input) resolution
NUM_POINTS = 256


def _rect_masks(count: int, size: int = H) -> torch.Tensor:
    """(count, size, size) bool, distinct non-overlapping rectangles aligned to multiples of 8 pixels."""
    masks = torch.zeros(count, size, size, dtype=torch.bool)
    for i in range(count):
        row, col = divmod(i, 3)
        masks[i, 8 + 16 * row : 16 + 16 * row + 8 * (i % 2), 8 + 16 * col : 24 + 16 * col] = True
    return masks


def _target(labels: list[int]) -> dict:
    return {"labels": torch.tensor(labels, dtype=torch.int64), "masks": _rect_masks(len(labels))}


def _empty_target() -> dict:
    return {"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, H, W, dtype=torch.bool)}


def _mask_logits(masks: torch.Tensor, size: int) -> torch.Tensor:
    """(n, H, W) bool -> (n, size, size) logits of +-10, by average pooling (exact for 8-pixel aligned targets)."""
    pooled = F.adaptive_avg_pool2d(masks.float().unsqueeze(0), size)[0]
    return 20.0 * pooled - 10.0


def _layer(
    targets: list[dict], num_queries: int, assign: list[dict[int, int]], size: int = H // 4, kmeans_size: int = H // 8
) -> dict:
    """Outputs where query q predicts target assign[b][q] perfectly (class and mask); others predict no-object."""
    batch = len(targets)
    logits = torch.full((batch, num_queries, K + 1), -10.0)
    logits[:, :, K] = 10.0
    masks = torch.full((batch, num_queries, size, size), -10.0)
    kmeans = torch.full((batch, num_queries, kmeans_size, kmeans_size), -10.0)
    for b, mapping in enumerate(assign):
        for q, t in mapping.items():
            logits[b, q] = -10.0
            logits[b, q, targets[b]["labels"][t]] = 10.0
            masks[b, q] = _mask_logits(targets[b]["masks"][t : t + 1], size)[0]
            kmeans[b, q] = _mask_logits(targets[b]["masks"][t : t + 1], kmeans_size)[0]
    return {"pred_logits": logits, "pred_masks": masks, "kmeans_logits": kmeans}


def _matcher() -> HungarianMatcher:
    return HungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=NUM_POINTS)


def _criterion(**overrides) -> SetCriterion:
    args = dict(
        num_classes=K,
        matcher=_matcher(),
        class_weight=2.0,
        mask_weight=5.0,
        dice_weight=5.0,
        no_object_weight=0.1,
        kmeans_logit_weight=1.0,
        deep_supervision=True,
        num_points=NUM_POINTS,
        oversample_ratio=3.0,
        importance_sample_ratio=0.75,
    )
    args.update(overrides)
    return SetCriterion(**args)


def _pairs(indices: tuple[torch.Tensor, torch.Tensor]) -> set[tuple[int, int]]:
    return set(zip(indices[0].tolist(), indices[1].tolist()))


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _random_layer(batch: int, num_queries: int, seed: int, requires_grad: bool = False) -> dict:
    g = _gen(seed)
    layer = {
        "pred_logits": torch.randn(batch, num_queries, K + 1, generator=g),
        "pred_masks": torch.randn(batch, num_queries, H // 4, H // 4, generator=g),
        "kmeans_logits": torch.randn(batch, num_queries, H // 8, H // 8, generator=g),
    }
    return {k: v.requires_grad_(requires_grad) for k, v in layer.items()}


# ---------------------------------------------------------------- point sampling


def test_point_sample_matches_bilinear_interpolation():
    g = _gen(1)
    image = torch.randn(2, 3, 5, 7, generator=g)
    # pixel centres read the pixel exactly
    ys, xs = torch.tensor([0, 2, 4]), torch.tensor([0, 3, 6])
    centres = torch.stack([(xs + 0.5) / 7, (ys + 0.5) / 5], dim=-1).expand(2, -1, -1)
    assert torch.allclose(point_sample(image, centres), image[:, :, ys, xs], atol=1e-6)
    # arbitrary interior points: manual bilinear interpolation in pixel-centre coordinates
    coords = torch.rand(2, 10, 2, generator=g) * torch.tensor([6 / 7, 4 / 5]) + torch.tensor([0.5 / 7, 0.5 / 5])
    px, py = coords[..., 0] * 7 - 0.5, coords[..., 1] * 5 - 0.5
    x0, y0 = px.floor().long().clamp(max=5), py.floor().long().clamp(max=3)
    fx, fy = px - x0, py - y0
    expected = torch.empty(2, 3, 10)
    for b in range(2):
        v = image[b]
        top = v[:, y0[b], x0[b]] * (1 - fx[b]) + v[:, y0[b], x0[b] + 1] * fx[b]
        bottom = v[:, y0[b] + 1, x0[b]] * (1 - fx[b]) + v[:, y0[b] + 1, x0[b] + 1] * fx[b]
        expected[b] = top * (1 - fy[b]) + bottom * fy[b]
    assert torch.allclose(point_sample(image, coords), expected, atol=1e-5)


def test_point_sample_same_points_any_resolution():
    fine = torch.zeros(1, 1, 32, 32)
    fine[..., :, 16:] = 1.0
    coarse = F.avg_pool2d(fine, 4)
    coords = torch.tensor([[[0.1, 0.3], [0.9, 0.7]]])
    assert torch.allclose(point_sample(fine, coords), torch.tensor([[[0.0, 1.0]]]))
    assert torch.allclose(point_sample(coarse, coords), torch.tensor([[[0.0, 1.0]]]))


def test_uncertain_point_coords_deterministic_and_focused():
    logits = torch.full((3, 1, 16, 16), 8.0)
    logits[..., 4:12] = 0.0  # an uncertain vertical band: |logit| < 8 for x in (3.5/16, 12.5/16)
    a = uncertain_point_coords(logits, 200, 3.0, 0.75, _gen(5))
    b = uncertain_point_coords(logits, 200, 3.0, 0.75, _gen(5))
    c = uncertain_point_coords(logits, 200, 3.0, 0.75, _gen(6))
    assert a.shape == (3, 200, 2) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert (a >= 0).all() and (a < 1).all()
    important = a[:, :150, 0]  # the 150 most uncertain of 600 candidates (~340 in the band) ...
    assert ((important > 3.5 / 16) & (important < 12.5 / 16)).all()
    rest = a[:, 150:, 0]  # ... and 50 uniform ones
    assert ((rest < 3.5 / 16) | (rest > 12.5 / 16)).any()
    assert uncertain_point_coords(logits[:0], 50, 3.0, 0.75, _gen()).shape == (0, 50, 2)


# ---------------------------------------------------------------- matcher


def test_matcher_recovers_permutation():
    targets = [_target([0, 1, 2, 3, 1]), _target([2, 0, 3])]
    perm0 = {6: 0, 2: 1, 0: 2, 7: 3, 3: 4}
    perm1 = {5: 0, 1: 1, 4: 2}
    outputs = _layer(targets, 8, [perm0, perm1])
    indices = _matcher()(outputs, targets, generator=_gen())
    assert _pairs(indices[0]) == set(perm0.items())
    assert _pairs(indices[1]) == set(perm1.items())
    for query_idx, target_idx in indices:
        assert query_idx.dtype == target_idx.dtype == torch.int64
        assert torch.equal(query_idx, query_idx.sort().values)


def test_forced_pairs_override_costs():
    targets = [_target([0, 1, 2])]
    outputs = _layer(targets, 6, [{0: 0, 1: 1, 2: 2}])
    forced = [torch.tensor([[4, 0]])]  # query 4 predicts nothing, yet must take target 0
    indices = _matcher()(outputs, targets, forced=forced, generator=_gen())
    pairs = _pairs(indices[0])
    assert (4, 0) in pairs and (1, 1) in pairs and (2, 2) in pairs
    assert all(q != 0 or t != 0 for q, t in pairs) and len(pairs) == 3


def test_forced_absent_class_leaves_query_unmatched():
    targets = [_target([0, 1, 2])]
    outputs = _layer(targets, 6, [{0: 0, 1: 1, 2: 2}])
    forced = [torch.tensor([[1, -1], [3, 2]])]
    query_idx, target_idx = _matcher()(outputs, targets, forced=forced, generator=_gen())[0]
    assert 1 not in query_idx.tolist()
    assert (3, 2) in _pairs((query_idx, target_idx))
    assert sorted(target_idx.tolist()) == [0, 1, 2]  # target 1 went to another free query


def test_matcher_without_targets_and_with_few_queries():
    matcher = _matcher()
    layer = _random_layer(2, 3, seed=0)
    few = [_target([0, 1, 2, 3, 0]), _empty_target()]
    (q0, t0), (q1, t1) = matcher(layer, few, forced=[None, torch.tensor([[0, -1]])], generator=_gen())
    assert q0.numel() == t0.numel() == 3 and len(set(t0.tolist())) == 3
    assert q1.numel() == t1.numel() == 0


def test_matcher_rejects_bad_forced_pairs():
    targets = [_target([0, 1])]
    layer = _random_layer(1, 4, seed=0)
    for bad in ([[0, 0], [1, 0]], [[0, 0], [0, 1]], [[4, 0]], [[0, 2]], [[0, -2]]):
        with pytest.raises(ValueError):
            _matcher()(layer, targets, forced=[torch.tensor(bad)])


# ---------------------------------------------------------------- criterion


def test_loss_keys_and_deep_supervision():
    targets = [_target([0, 1]), _target([3])]
    outputs = dict(_random_layer(2, 6, seed=1))
    outputs["aux_outputs"] = [_random_layer(2, 6, seed=2), _random_layer(2, 6, seed=3)]
    base = {"loss_ce", "loss_mask", "loss_dice", "loss_kmeans_mask", "loss_kmeans_dice"}
    losses, indices = _criterion()(outputs, targets, generator=_gen())
    assert set(losses) == base | {f"{k}_{i}" for k in base for i in (0, 1)}
    assert all(v.dim() == 0 and v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    assert len(indices) == 2 and indices[0][0].numel() == 2 and indices[1][0].numel() == 1
    losses, _ = _criterion(deep_supervision=False)(outputs, targets, generator=_gen())
    assert set(losses) == base


def test_perfect_predictions_have_lower_losses():
    targets = [_target([0, 1, 2]), _target([3, 1])]
    good = _layer(targets, 6, [{0: 0, 1: 1, 2: 2}, {4: 0, 5: 1}])
    wrong = _layer(targets, 6, [{0: 1, 1: 2, 2: 0}, {4: 1, 5: 0}])  # masks and classes of other targets
    criterion = _criterion(deep_supervision=False)
    good_losses, _ = criterion(
        good, targets, forced=[torch.tensor([[0, 0], [1, 1], [2, 2]]), torch.tensor([[4, 0], [5, 1]])], generator=_gen()
    )
    wrong_losses, _ = criterion(
        wrong,
        targets,
        forced=[torch.tensor([[0, 0], [1, 1], [2, 2]]), torch.tensor([[4, 0], [5, 1]])],
        generator=_gen(),
    )
    assert set(good_losses) == set(wrong_losses)
    for key, value in good_losses.items():
        assert value < 0.25 * wrong_losses[key], key
    assert good_losses["loss_ce"] < 1e-3


def test_empty_slice_gives_class_loss_and_zero_mask_losses():
    targets = [_empty_target(), _empty_target()]
    outputs = dict(_random_layer(2, 5, seed=4, requires_grad=True))
    outputs["aux_outputs"] = [_random_layer(2, 5, seed=5, requires_grad=True)]
    losses, indices = _criterion()(outputs, targets, generator=_gen())
    assert all(q.numel() == 0 for q, _ in indices)
    assert losses["loss_ce"] > 0 and losses["loss_ce_0"] > 0
    for key, value in losses.items():
        assert torch.isfinite(value)
        if "ce" not in key:
            assert value.item() == 0.0 and value.requires_grad, key
    sum(losses.values()).backward()
    assert outputs["pred_logits"].grad.abs().sum() > 0
    for key in ("pred_masks", "kmeans_logits"):
        assert outputs[key].grad is not None and outputs[key].grad.abs().sum() == 0


def test_unmatched_and_absent_queries_learn_no_object():
    targets = [_target([0, 1])]
    criterion = _criterion()
    # query 2 predicts class 1 confidently, but it is forced absent: its target class is no-object
    logits = torch.full((1, 4, K + 1), -10.0)
    logits[0, 0, 0] = logits[0, 1, 1] = logits[0, 2, 1] = logits[0, 3, K] = 10.0
    indices = [(torch.tensor([0, 1]), torch.tensor([0, 1]))]
    loss_absent = criterion.class_loss(logits, targets, indices)
    logits[0, 2, 1], logits[0, 2, K] = -10.0, 10.0
    assert criterion.class_loss(logits, targets, indices) < 1e-3 < loss_absent


def test_weights_scale_losses_linearly():
    targets = [_target([0, 2]), _target([1])]
    outputs = _random_layer(2, 5, seed=6)
    forced = [torch.tensor([[3, 1]]), None]
    base, _ = _criterion(deep_supervision=False)(outputs, targets, forced=forced, generator=_gen(7))
    scaled, _ = _criterion(
        deep_supervision=False, class_weight=4.0, mask_weight=15.0, dice_weight=1.0, kmeans_logit_weight=0.5
    )(outputs, targets, forced=forced, generator=_gen(7))
    factors = {"loss_ce": 2.0, "loss_mask": 3.0, "loss_dice": 0.2, "loss_kmeans_mask": 1.5, "loss_kmeans_dice": 0.1}
    for key, factor in factors.items():
        assert torch.allclose(scaled[key], base[key] * factor, rtol=1e-5), key


def test_gradients_reach_all_outputs_and_forced_pairs_hold_in_aux_layers():
    targets = [_target([0, 1, 2])]
    outputs = dict(_random_layer(1, 6, seed=8, requires_grad=True))
    aux = _random_layer(1, 6, seed=9, requires_grad=True)
    outputs["aux_outputs"] = [aux]
    forced = [torch.tensor([[5, 0], [4, -1]])]
    losses, indices = _criterion()(outputs, targets, forced=forced, generator=_gen())
    assert (5, 0) in _pairs(indices[0]) and 4 not in indices[0][0].tolist()
    sum(losses.values()).backward()
    for layer in (outputs, aux):
        for key in ("pred_logits", "pred_masks", "kmeans_logits"):
            assert layer[key].grad is not None and layer[key].grad.abs().sum() > 0, key
    aux_indices = _matcher()(aux, targets, forced=forced, generator=_gen())
    assert (5, 0) in _pairs(aux_indices[0]) and 4 not in aux_indices[0][0].tolist()


def test_layer_without_kmeans_logits_skips_kmeans_losses():
    targets = [_target([0])]
    outputs = _random_layer(1, 3, seed=10)
    outputs["aux_outputs"] = [{k: v for k, v in _random_layer(1, 3, seed=11).items() if k != "kmeans_logits"}]
    losses, _ = _criterion()(outputs, targets, generator=_gen())
    assert "loss_kmeans_mask" in losses and "loss_kmeans_mask_0" not in losses and "loss_mask_0" in losses


def test_losses_are_fp32_under_autocast():
    targets = [_target([0, 1])]
    outputs = {k: v.to(torch.bfloat16).requires_grad_() for k, v in _random_layer(1, 4, seed=12).items()}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses, _ = _criterion()(outputs, targets, generator=_gen())
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert outputs["pred_masks"].grad.dtype == torch.bfloat16


def test_same_generator_seed_gives_same_losses():
    targets = [_target([0, 1, 3])]
    outputs = _random_layer(1, 5, seed=13)
    a, ia = _criterion()(outputs, targets, generator=_gen(3))
    b, ib = _criterion()(outputs, targets, generator=_gen(3))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(x, y) for pa, pb in zip(ia, ib) for x, y in zip(pa, pb))


def test_built_from_config():
    cfg = get_s2vnet_cfg()
    cfg.MODEL.S2VNET.NUM_CLASSES = K
    cfg.MODEL.S2VNET.TRAIN_NUM_POINTS = 64
    cfg.MODEL.S2VNET.DEEP_SUPERVISION = False
    criterion = SetCriterion(cfg)
    assert criterion.num_classes == K and criterion.num_points == 64 and not criterion.deep_supervision
    assert criterion.matcher.num_points == 64 and criterion.matcher.cost_class == cfg.MODEL.S2VNET.CLASS_WEIGHT
    assert criterion.class_loss_weight.tolist() == [1.0] * K + [pytest.approx(cfg.MODEL.S2VNET.NO_OBJECT_WEIGHT)]
    assert "class_loss_weight" not in criterion.state_dict()
    losses, _ = criterion(_random_layer(1, 4, seed=14), [_target([0])], generator=_gen())
    assert set(losses) == {"loss_ce", "loss_mask", "loss_dice", "loss_kmeans_mask", "loss_kmeans_dice"}
