"""k-means cross-attention (Eq. 2-3) and the per-slice decoder."""

from __future__ import annotations

import torch

from s2vnet.modeling.transformer_decoder.kmeans_attention import (
    KMeansCrossAttention,
    cluster_means,
    kmeans_assignment,
    kmeans_update,
)
from s2vnet.modeling.transformer_decoder.kmeans_decoder import KMeansTransformerDecoder


def test_assignment_is_one_hot_over_centroids():
    logits = torch.randn(2, 5, 40)
    assign = kmeans_assignment(logits)
    assert assign.shape == (2, 5, 40)
    assert torch.equal(assign.sum(dim=1), torch.ones(2, 40))
    assert set(assign.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(assign.argmax(dim=1), logits.argmax(dim=1))


def test_update_equals_direct_kmeans_step():
    torch.manual_seed(0)
    logits, values = torch.randn(1, 4, 30), torch.randn(1, 30, 8)
    update = kmeans_update(logits, values)
    winner = logits[0].argmax(dim=0)
    for n in range(4):
        members = values[0][winner == n]
        expected = members.mean(dim=0) if len(members) else torch.zeros(8)
        torch.testing.assert_close(update[0, n], expected)


def test_cross_attention_layer_matches_hand_computation():
    torch.manual_seed(1)
    layer = KMeansCrossAttention(8).eval()
    c, cpos, p, ppos = torch.randn(1, 3, 8), torch.randn(1, 3, 8), torch.randn(1, 20, 8), torch.randn(1, 20, 8)
    out, logits = layer(c, cpos, p, ppos)
    q, k, v = layer.q_proj(c + cpos), layer.k_proj(p + ppos), layer.v_proj(p)
    torch.testing.assert_close(logits, q @ k.transpose(1, 2))
    expected = layer.norm(c + layer.out_proj(kmeans_update(logits, v)))
    torch.testing.assert_close(out, expected)


def test_cluster_means_equal_the_one_hot_update_with_empty_clusters_and_batches():
    torch.manual_seed(4)
    logits, values = torch.randn(2, 6, 50), torch.randn(2, 50, 8)
    logits[:, 5] = -1e9  # centroid 5 wins no pixel
    logits[1, 4] = -1e9
    means, filled = cluster_means(logits, values)
    torch.testing.assert_close(means, kmeans_update(logits, values))
    assert filled.shape == (2, 6, 1) and not filled[:, 5].any() and not filled[1, 4] and filled[0, 4]
    assert torch.equal(means[:, 5], torch.zeros(2, 8))


def test_factored_inference_path_equals_eq_2_3_as_written():
    torch.manual_seed(5)
    layer = KMeansCrossAttention(16)
    c, cpos = torch.randn(2, 9, 16), torch.randn(2, 9, 16)
    p, ppos = torch.randn(2, 120, 16), torch.randn(2, 120, 16)
    c[:, 8] = -50.0  # a centroid far from every pixel: an empty cluster, whose update must stay 0
    ref_update, ref_logits = layer.reference(c, cpos, p, ppos)
    fast_update, fast_logits = layer.factored(c, cpos, p, ppos)
    torch.testing.assert_close(fast_logits, ref_logits, rtol=1e-5, atol=1e-4)
    assert torch.equal(fast_logits.argmax(dim=1), ref_logits.argmax(dim=1))
    torch.testing.assert_close(fast_update, ref_update, rtol=1e-5, atol=1e-5)
    empty = (ref_logits.argmax(dim=1)[:, None] != torch.arange(9)[None, :, None]).all(dim=2)  # (B, N)
    assert empty.any() and torch.equal(fast_update[empty], torch.zeros_like(fast_update[empty]))
    out_eval = layer.eval()(c, cpos, p, ppos)[0]
    out_train = layer.train()(c, cpos, p, ppos)[0]
    torch.testing.assert_close(out_eval, out_train, rtol=1e-4, atol=1e-4)


def test_inference_factors_only_levels_with_more_pixels_than_centroids():
    torch.manual_seed(6)
    layer = KMeansCrossAttention(8).eval()
    calls: list[str] = []
    layer.reference = lambda *a, ref=layer.reference: calls.append("reference") or ref(*a)
    layer.factored = lambda *a, fac=layer.factored: calls.append("factored") or fac(*a)
    for pixels in (4, 5, 6):
        layer(torch.randn(1, 5, 8), torch.randn(1, 5, 8), torch.randn(1, pixels, 8), torch.randn(1, pixels, 8))
    layer.train()(torch.randn(1, 5, 8), torch.randn(1, 5, 8), torch.randn(1, 6, 8), torch.randn(1, 6, 8))
    assert calls == ["reference", "reference", "factored", "reference"]


def test_assignment_and_update_stay_fp32_under_autocast():
    layer = KMeansCrossAttention(8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, logits = layer(torch.randn(1, 3, 8), torch.zeros(1, 3, 8), torch.randn(1, 20, 8), torch.zeros(1, 20, 8))
    assert logits.dtype == torch.float32


def test_gradients_reach_query_and_key_projections_through_the_logits():
    layer = KMeansCrossAttention(8)
    _, logits = layer(torch.randn(1, 3, 8), torch.randn(1, 3, 8), torch.randn(1, 20, 8), torch.randn(1, 20, 8))
    target = (torch.rand_like(logits) > 0.5).float()
    torch.nn.functional.binary_cross_entropy_with_logits(logits, target).backward()
    assert layer.q_proj.weight.grad.abs().sum() > 0 and layer.k_proj.weight.grad.abs().sum() > 0


def _decoder(**kw) -> KMeansTransformerDecoder:
    args = dict(in_channels=16, mask_dim=24, num_classes=3, hidden_dim=24, nheads=4, dim_feedforward=32, dec_layers=4)
    return KMeansTransformerDecoder(**{**args, **kw})


def test_decoder_outputs_per_layer():
    torch.manual_seed(2)
    decoder = _decoder()
    ms = [torch.randn(1, 16, 2, 3), torch.randn(1, 16, 4, 6), torch.randn(1, 16, 8, 12)]
    mask_features = torch.randn(1, 24, 16, 24)
    out = decoder(ms, mask_features, torch.randn(1, 7, 24), torch.randn(1, 7, 24))
    assert out["pred_logits"].shape == (1, 7, 4)
    assert out["pred_masks"].shape == (1, 7, 16, 24)
    assert out["centroids"].shape == (1, 7, 24)
    assert len(out["aux_outputs"]) == 3
    sizes = [o["kmeans_logits"].shape[-2:] for o in out["aux_outputs"]] + [out["kmeans_logits"].shape[-2:]]
    assert sizes == [(2, 3), (4, 6), (8, 12), (2, 3)]  # layer i attends to level i % 3


def test_inference_skips_the_deep_supervision_heads_and_gives_the_same_final_prediction():
    torch.manual_seed(3)
    decoder = _decoder()
    ms = [torch.randn(1, 16, 2, 3), torch.randn(1, 16, 4, 6), torch.randn(1, 16, 8, 12)]
    inputs = (ms, torch.randn(1, 24, 16, 24), torch.randn(1, 7, 24), torch.randn(1, 7, 24))
    reference = decoder.train()(*inputs)  # dropout is 0: training mode differs only in the heads it runs
    calls = []
    decoder.class_embed.register_forward_hook(lambda *_: calls.append(1))
    fast = decoder.eval()(*inputs)
    assert len(calls) == 1 and fast["aux_outputs"] == []
    for key in ("pred_logits", "pred_masks", "kmeans_logits", "centroids"):  # eval: factored k-means (rounding)
        torch.testing.assert_close(fast[key], reference[key], rtol=1e-5, atol=1e-5)


def test_decoder_builds_from_cfg():
    from s2vnet.config import get_s2vnet_cfg
    from s2vnet.modeling.transformer_decoder import build_transformer_decoder

    cfg = get_s2vnet_cfg()
    cfg.MODEL.S2VNET.NUM_CLASSES, cfg.MODEL.S2VNET.DEC_LAYERS = 5, 2
    decoder = build_transformer_decoder(cfg)
    assert isinstance(decoder, KMeansTransformerDecoder) and decoder.class_embed.out_features == 6


def test_position_encodings_are_computed_once_per_level_size():
    torch.manual_seed(7)
    decoder = _decoder().eval()
    calls: list[tuple] = []
    decoder.pos_enc.register_forward_hook(lambda _m, inputs, _o: calls.append(tuple(inputs[0].shape[-2:])))
    ms = [torch.randn(2, 16, 2, 3), torch.randn(2, 16, 4, 6), torch.randn(2, 16, 8, 12)]
    inputs = (ms, torch.randn(2, 24, 16, 24), torch.randn(2, 7, 24), torch.randn(2, 7, 24))
    first, second = decoder(*inputs), decoder(*inputs)
    assert calls == [(2, 3), (4, 6), (8, 12)]
    assert torch.equal(first["pred_masks"], second["pred_masks"])
    fresh = _decoder().eval()
    fresh.load_state_dict(decoder.state_dict())
    assert torch.equal(fresh(*inputs)["pred_masks"], first["pred_masks"])  # the kept encodings are the same
    decoder([torch.randn(2, 16, 3, 3)] + ms[1:], *inputs[1:])
    assert calls[-1] == (3, 3) and len(calls) == 4  # a new size is encoded (once)
