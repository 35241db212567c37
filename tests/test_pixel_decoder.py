"""Multi-scale deformable attention against an explicit bilinear reference; both pixel decoders' contracts."""

from __future__ import annotations

import math

import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone

from s2vnet.config import get_s2vnet_cfg
from s2vnet.modeling.pixel_decoder import (
    PIXEL_DECODER_REGISTRY,
    LightFPNPixelDecoder,
    MSDeformAttn,
    MSDeformAttnPixelDecoder,
    build_pixel_decoder,
)

SHAPES = [(3, 4), (2, 5)]  # (H, W) of two tiny levels


def _bilinear(grid: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """Explicit bilinear interpolation of ``grid`` ``(H, W, C)`` at normalised (x, y); zero outside; pixel
    (i, j) has its centre at ((j + 0.5) / W, (i + 0.5) / H)."""
    h, w, c = grid.shape
    px, py = x * w - 0.5, y * h - 0.5
    x0, y0 = math.floor(px), math.floor(py)
    out = torch.zeros(c, dtype=grid.dtype)
    for yi, wy in ((y0, 1 - (py - y0)), (y0 + 1, py - y0)):
        for xi, wx in ((x0, 1 - (px - x0)), (x0 + 1, px - x0)):
            if 0 <= yi < h and 0 <= xi < w:
                out += wy * wx * grid[yi, xi]
    return out


def _flat_inputs(shapes, b: int, c: int):
    sizes = [h * w for h, w in shapes]
    spatial = torch.tensor(shapes, dtype=torch.long)
    start = torch.tensor([sum(sizes[:i]) for i in range(len(sizes))], dtype=torch.long)
    return torch.randn(b, sum(sizes), c, dtype=torch.float64), spatial, start


def _zero_offsets_uniform_weights(attn: MSDeformAttn) -> None:
    for layer in (attn.sampling_offsets, attn.attention_weights):
        torch.nn.init.zeros_(layer.weight)
        torch.nn.init.zeros_(layer.bias)


def test_msdeform_attn_equals_explicit_bilinear_average():
    torch.manual_seed(0)
    attn = MSDeformAttn(d_model=4, n_levels=2, n_heads=2, n_points=1).double()
    _zero_offsets_uniform_weights(attn)
    value, spatial, start = _flat_inputs(SHAPES, b=2, c=4)
    query = torch.randn(2, 5, 4, dtype=torch.float64)
    ref = torch.rand(2, 5, 2, 2, dtype=torch.float64)
    ref[0, 0] = torch.tensor([[0.01, 0.99], [0.999, 0.02]])  # near the borders: zero padding matters
    out = attn(query, ref, value, spatial, start)
    projected = attn.value_proj(value)
    levels = projected.split([h * w for h, w in SHAPES], dim=1)
    expected = torch.zeros(2, 5, 4, dtype=torch.float64)
    for b in range(2):
        for q in range(5):
            samples = [
                _bilinear(levels[lv][b].view(h, w, 4), *ref[b, q, lv].tolist()) for lv, (h, w) in enumerate(SHAPES)
            ]
            expected[b, q] = torch.stack(samples).mean(0)
    assert torch.allclose(out, attn.output_proj(expected), atol=1e-10)


def test_msdeform_attn_at_a_pixel_centre_returns_that_pixel():
    attn = MSDeformAttn(d_model=4, n_levels=1, n_heads=2, n_points=1).double()
    _zero_offsets_uniform_weights(attn)
    for proj in (attn.value_proj, attn.output_proj):
        torch.nn.init.eye_(proj.weight)
        torch.nn.init.zeros_(proj.bias)
    torch.manual_seed(0)
    h, w = 3, 4
    value, spatial, start = _flat_inputs([(h, w)], b=1, c=4)
    i, j = 2, 1
    ref = torch.tensor([[[[(j + 0.5) / w, (i + 0.5) / h]]]], dtype=torch.float64)
    out = attn(torch.randn(1, 1, 4, dtype=torch.float64), ref, value, spatial, start)
    assert torch.allclose(out[0, 0], value[0, i * w + j], atol=1e-12)


def test_msdeform_attn_padding_mask_zeroes_values():
    torch.manual_seed(0)
    attn = MSDeformAttn(d_model=8, n_levels=2, n_heads=2, n_points=2).double()
    value, spatial, start = _flat_inputs(SHAPES, b=1, c=8)
    mask = torch.ones(1, value.shape[1], dtype=torch.bool)
    out = attn(
        torch.randn(1, 3, 8, dtype=torch.float64),
        torch.rand(1, 3, 2, 2, dtype=torch.float64),
        value,
        spatial,
        start,
        mask,
    )
    assert torch.allclose(out, attn.output_proj.bias.expand_as(out))


def test_msdeform_attn_init_and_gradients():
    torch.manual_seed(0)
    attn = MSDeformAttn(d_model=16, n_levels=2, n_heads=4, n_points=3)
    offsets = attn.sampling_offsets.bias.view(4, 2, 3, 2)
    assert torch.equal(offsets[:, :, 2], 3 * offsets[:, :, 0])  # point p at distance p + 1
    assert torch.allclose(offsets[:, 0, 0].abs().amax(-1), torch.ones(4))  # on the unit square, one per head
    assert not attn.attention_weights.weight.any() and not attn.attention_weights.bias.any()
    value, spatial, start = _flat_inputs(SHAPES, b=2, c=16)
    out = attn(torch.randn(2, 6, 16), torch.rand(2, 6, 2, 2), value.float(), spatial, start)
    assert out.shape == (2, 6, 16)
    out.square().sum().backward()
    for layer in (attn.sampling_offsets, attn.attention_weights):
        assert layer.weight.grad.abs().sum() > 0 and layer.bias.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="level_start_index"):
        attn(torch.randn(2, 6, 16), torch.rand(2, 6, 2, 2), value.float(), spatial, start.flip(0))


FAKE_SHAPE = {
    "res2": ShapeSpec(channels=16, stride=4),
    "res3": ShapeSpec(channels=32, stride=8),
    "res4": ShapeSpec(channels=48, stride=16),
    "res5": ShapeSpec(channels=64, stride=32),
}


def _features(shape, b: int = 2, h: int = 128, w: int = 96):
    return {n: torch.randn(b, s.channels, h // s.stride, w // s.stride) for n, s in shape.items()}


def _check_contract(decoder, features, conv_dim: int, mask_dim: int, b: int = 2, h: int = 128, w: int = 96):
    mask_features, multi_scale = decoder(features)
    assert mask_features.shape == (b, mask_dim, h // 4, w // 4)
    assert [tuple(m.shape) for m in multi_scale] == [(b, conv_dim, h // s, w // s) for s in (32, 16, 8)]
    return mask_features, multi_scale


def _build(kind: str):
    common = dict(input_shape=FAKE_SHAPE, conv_dim=32, mask_dim=24, norm="GN")
    if kind == "fpn":
        return LightFPNPixelDecoder(**common)
    return MSDeformAttnPixelDecoder(
        **common,
        deformable_in_features=["res3", "res4", "res5"],
        transformer_enc_layers=2,
        nheads=4,
        n_points=2,
        dim_feedforward=64,
    )


@pytest.mark.parametrize("kind", ["fpn", "msdeform"])
def test_pixel_decoder_from_kwargs_contract_determinism_backprop(kind):
    torch.manual_seed(0)
    features = _features(FAKE_SHAPE)
    torch.manual_seed(1)
    decoder = _build(kind)
    torch.manual_seed(1)
    twin = _build(kind)
    mask_features, multi_scale = _check_contract(decoder, features, conv_dim=32, mask_dim=24)
    again, again_ms = twin(features)
    assert torch.equal(again, mask_features) and all(torch.equal(a, b) for a, b in zip(again_ms, multi_scale))
    (mask_features.square().mean() + sum(m.mean() for m in multi_scale)).backward()
    assert all(p.grad is not None for p in decoder.parameters())
    # level_embed only reaches the output through the offset/weight layers, whose weights start at zero
    zero = [n for n, p in decoder.named_parameters() if not p.grad.abs().sum() > 0]
    assert zero == ([] if kind == "fpn" else ["level_embed"])


def _r18_cfg(decoder_name: str):
    cfg = get_s2vnet_cfg()
    cfg.MODEL.BACKBONE.NAME = "build_resnet_backbone"
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.RESNETS.NORM = "FrozenBN"
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False
    pix = cfg.MODEL.PIXEL_DECODER
    pix.NAME, pix.CONVS_DIM, pix.MASK_DIM = decoder_name, 64, 32
    pix.TRANSFORMER_ENC_LAYERS, pix.DIM_FEEDFORWARD = 2, 128
    return cfg


@pytest.mark.parametrize("name", ["LightFPNPixelDecoder", "MSDeformAttnPixelDecoder"])
def test_pixel_decoder_from_cfg_on_resnet18(name):
    assert name in PIXEL_DECODER_REGISTRY
    cfg = _r18_cfg(name)
    torch.manual_seed(0)
    backbone = build_backbone(cfg).eval()
    decoder = build_pixel_decoder(cfg, backbone.output_shape())
    assert type(decoder).__name__ == name
    decoder.eval()
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, 128, 96))
        first = _check_contract(decoder, features, conv_dim=64, mask_dim=32, b=1)
        second = decoder(features)
    assert torch.equal(first[0], second[0])


def test_pixel_decoder_rejects_missing_features():
    cfg = _r18_cfg("MSDeformAttnPixelDecoder")
    shape = {n: s for n, s in FAKE_SHAPE.items() if n != "res4"}
    with pytest.raises(KeyError, match="res4"):
        build_pixel_decoder(cfg, shape)
