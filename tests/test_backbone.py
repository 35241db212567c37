"""Backbones: the timm Swin wrapper (sizes, weights, registry) and Detectron2's ResNet-18 from a cfg."""

from __future__ import annotations

import re
import socket

import pytest
import timm
import torch
from detectron2.modeling import build_backbone
from timm.models.swin_transformer import SwinTransformerBlock

from s2vnet.config import get_s2vnet_cfg
from s2vnet.errors import InputError
from s2vnet.modeling.backbone import TimmSwinBackbone
from s2vnet.modeling.backbone.swin import load_pretrained_swin

TINY = "swin_tiny_patch4_window7_224"
NAMES = ["res2", "res3", "res4", "res5"]
STRIDES = [4, 8, 16, 32]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any connection attempt (e.g. a weight download) fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def tiny() -> TimmSwinBackbone:
    torch.manual_seed(0)
    return TimmSwinBackbone(name=TINY).eval()


@pytest.mark.parametrize("size", [(64, 64), (192, 160)])
def test_swin_outputs_channels_first_at_strides(tiny, size):
    h, w = size
    with torch.no_grad():
        out = tiny(torch.randn(2, 3, h, w))
    assert list(out) == NAMES
    for name, stride, channels in zip(NAMES, STRIDES, (96, 192, 384, 768)):
        assert out[name].shape == (2, channels, h // stride, w // stride)
        assert tiny.output_shape()[name].channels == channels
        assert tiny.output_shape()[name].stride == stride
    assert tiny.size_divisibility == 32


def test_swin_subset_of_stages_prunes_the_rest():
    torch.manual_seed(0)
    backbone = TimmSwinBackbone(name=TINY, out_features=["res3", "res2"], out_norm=False).eval()
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, 64, 96))
    assert list(out) == ["res2", "res3"] and out["res3"].shape == (1, 192, 8, 12)
    assert len(backbone.swin.layers) == 2


def test_swin_rejects_bad_arguments():
    with pytest.raises(InputError, match="unknown timm model"):
        TimmSwinBackbone(name="no_such_swin")
    with pytest.raises(InputError, match="out_features"):
        TimmSwinBackbone(name=TINY, out_features=["res6"])
    with pytest.raises(ValueError, match="multiples of 32"):
        TimmSwinBackbone(name=TINY)(torch.randn(1, 3, 48, 64))


def _save(obj, path):
    torch.save(obj, path)
    return str(path)


@pytest.mark.parametrize("nested", [None, "model", "state_dict"])
def test_swin_loads_local_state_dict_exactly(tiny, tmp_path, nested):
    state = tiny.swin.state_dict()
    path = _save(state if nested is None else {nested: state, "epoch": 3}, tmp_path / "w.pth")
    torch.manual_seed(1)
    other = TimmSwinBackbone(name=TINY, pretrained=path).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for name, value in tiny(x).items():
            assert torch.equal(other(x)[name], value)


def test_swin_loads_safetensors(tiny, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in tiny.swin.state_dict().items()}, str(path))
    torch.manual_seed(2)
    other = TimmSwinBackbone(name=TINY, pretrained=str(path))
    assert all(torch.equal(a, b) for a, b in zip(tiny.swin.state_dict().values(), other.swin.state_dict().values()))


def test_swin_loads_a_full_timm_checkpoint_and_matches_timm(tmp_path):
    """A classifier checkpoint (timm key names) loads; head/norm are the only unexpected keys. At 224 x 224
    every stage is a multiple of the window, so the outputs equal timm's own intermediates."""
    torch.manual_seed(3)
    full = timm.create_model(TINY, pretrained=False).eval()
    backbone = TimmSwinBackbone(name=TINY, out_norm=False).eval()
    counts = load_pretrained_swin(backbone.swin, _save(full.state_dict(), tmp_path / "full.pth"))
    assert counts["missing"] == 0 and counts["mismatched"] == 0
    assert counts["unexpected"] == 4  # norm.weight, norm.bias, head.fc.weight, head.fc.bias
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        ours = list(backbone(x).values())
        theirs = full.forward_intermediates(x, indices=[0, 1, 2, 3], intermediates_only=True)
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, atol=1e-5)


def test_swin_loads_microsoft_key_layout(tiny, tmp_path):
    """Original checkpoints keep ``downsample`` at the end of the previous stage."""
    old = {
        re.sub(r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) - 1}.downsample", k): v
        for k, v in tiny.swin.state_dict().items()
    }
    backbone = TimmSwinBackbone(name=TINY)
    counts = load_pretrained_swin(backbone.swin, _save({"model": old}, tmp_path / "ms.pth"))
    assert counts["missing"] == 0 and counts["unexpected"] == 0


def test_swin_missing_weights_file_is_input_error(tmp_path):
    with pytest.raises(InputError, match="no such pretrained weights file"):
        TimmSwinBackbone(name=TINY, pretrained=str(tmp_path / "absent.pth"))


@pytest.mark.parametrize("size", [14, 16])
def test_shifted_window_keeps_borders_apart(tiny, size):
    """Shifted windows never mix the top and bottom rows (timm 1.0.31 alone does, when padding is needed);
    without padding the block equals timm's."""
    block = tiny.swin.layers[0].blocks[1]
    assert any(block.shift_size) and block.window_size == (7, 7)
    torch.manual_seed(0)
    x = torch.randn(1, size, size, 96)
    poked = x.clone()
    poked[:, 0] += 5 * torch.randn(size, 96)
    with torch.no_grad():
        changed = (block(poked) - block(x)).abs().amax(dim=(0, 2, 3)) > 1e-6
        assert changed.nonzero().flatten().tolist() == [0, 1, 2]
        if size % 7 == 0:
            assert torch.equal(SwinTransformerBlock._attn(block, x), block._attn(x))


def test_swin_base_from_cfg_through_build_backbone():
    cfg = get_s2vnet_cfg()
    cfg.MODEL.BACKBONE.NAME = "build_timm_swin_backbone"
    assert cfg.MODEL.SWIN_TIMM.NAME == "swin_base_patch4_window12_384"
    torch.manual_seed(0)
    backbone = build_backbone(cfg).eval()
    assert isinstance(backbone, TimmSwinBackbone)
    assert 85e6 < sum(p.numel() for p in backbone.parameters()) < 90e6  # 86.88M without the classifier
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, 64, 64))
    assert [tuple(v.shape) for v in out.values()] == [(1, 128, 16, 16), (1, 256, 8, 8), (1, 512, 4, 4), (1, 1024, 2, 2)]


@pytest.mark.parametrize("norm", ["BN", "FrozenBN"])
def test_detectron2_resnet18_from_cfg(norm):
    cfg = get_s2vnet_cfg()
    cfg.MODEL.BACKBONE.NAME = "build_resnet_backbone"
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.OUT_FEATURES = NAMES
    cfg.MODEL.RESNETS.NORM = norm
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False
    torch.manual_seed(0)
    backbone = build_backbone(cfg).eval()
    shapes = backbone.output_shape()
    assert [shapes[n].channels for n in NAMES] == [64, 128, 256, 512]
    assert [shapes[n].stride for n in NAMES] == STRIDES
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, 128, 96))
    expected = [(1, c, 128 // s, 96 // s) for c, s in zip((64, 128, 256, 512), STRIDES)]
    assert [tuple(out[n].shape) for n in NAMES] == expected
