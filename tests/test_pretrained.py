"""Swin starting weights: training needs a file or an explicit "scratch", which every model build reads as no file;
every key layout loads through the config."""

from __future__ import annotations

import re
import socket

import pytest
import torch
from detectron2.modeling import build_backbone

from s2vnet.config import get_s2vnet_cfg
from s2vnet.errors import InputError
from s2vnet.modeling.backbone import TimmSwinBackbone
from s2vnet.pretrained import HOW_TO_GET, SCRATCH, check_pretrained, pretrained_file

TINY = "swin_tiny_patch4_window7_224"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any connection attempt (e.g. a weight download) fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def swin_cfg(pretrained: str = "", weights: str = "", backbone: str = "build_timm_swin_backbone"):
    cfg = get_s2vnet_cfg()
    cfg.MODEL.BACKBONE.NAME = backbone
    cfg.MODEL.SWIN_TIMM.NAME = TINY
    cfg.MODEL.SWIN_TIMM.PRETRAINED = pretrained
    cfg.MODEL.WEIGHTS = weights
    cfg.freeze()
    return cfg


def test_training_a_swin_without_weights_says_how_to_get_them():
    with pytest.raises(InputError) as err:
        check_pretrained(swin_cfg(), training=True)
    assert str(err.value) == f"MODEL.SWIN_TIMM.PRETRAINED: no pretrained backbone weights given: {HOW_TO_GET}"
    assert "\n" not in str(err.value) and "'scratch'" in HOW_TO_GET


def test_a_missing_weights_file_is_refused_before_training(tmp_path):
    with pytest.raises(InputError, match="absent.pth: no such pretrained weights file: download"):
        check_pretrained(swin_cfg(str(tmp_path / "absent.pth")), training=True)


def test_scratch_is_explicit_and_the_backbone_reads_no_file():
    cfg = swin_cfg(SCRATCH)
    check_pretrained(cfg, training=True)
    assert cfg.MODEL.SWIN_TIMM.PRETRAINED == SCRATCH
    build_backbone(cfg)  # random initialisation, nothing read


@pytest.mark.parametrize("value", ["", SCRATCH, f" {SCRATCH} "])
def test_empty_and_scratch_name_no_file(value):
    assert pretrained_file(value) == ""


@pytest.mark.parametrize(
    "cfg",
    [
        swin_cfg(),  # inference: the checkpoint brings every weight
        swin_cfg(weights="model_final.pth"),  # fine-tuning from a full S2VNet checkpoint
        swin_cfg(backbone="build_resnet_backbone"),  # not a Swin
    ],
    ids=["inference", "full-checkpoint", "resnet"],
)
def test_no_pretrained_file_is_needed(cfg):
    training = cfg.MODEL.WEIGHTS != "" or cfg.MODEL.BACKBONE.NAME != "build_timm_swin_backbone"
    check_pretrained(cfg, training=training)


@pytest.fixture(scope="module")
def source() -> dict[str, torch.Tensor]:
    """A randomly initialised Swin-T's weights in timm's key layout."""
    torch.manual_seed(0)
    return TimmSwinBackbone(name=TINY).swin.state_dict()


def microsoft_layout(state: dict) -> dict:
    """Microsoft's original checkpoints keep each stage's patch merging at the end of the previous stage."""
    return {
        re.sub(r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) - 1}.downsample", k): v
        for k, v in state.items()
    }


def write_layout(layout: str, state: dict, folder) -> str:
    if layout == "safetensors":
        from safetensors.torch import save_file

        path = folder / "w.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
        return str(path)
    wrapped = {
        "timm": state,
        "timm-model": {"model": state},
        "timm-state_dict": {"state_dict": state, "epoch": 1},
        "microsoft": {"model": microsoft_layout(state)},
    }[layout]
    torch.save(wrapped, folder / "w.pth")
    return str(folder / "w.pth")


@pytest.mark.parametrize("layout", ["timm", "timm-model", "timm-state_dict", "safetensors", "microsoft"])
def test_every_key_layout_loads_through_the_config(tmp_path, source, layout):
    cfg = swin_cfg(write_layout(layout, source, tmp_path))
    check_pretrained(cfg, training=True)
    torch.manual_seed(1)
    loaded = build_backbone(cfg).swin.state_dict()
    different = [k for k, v in source.items() if "relative_position_index" not in k and not torch.equal(loaded[k], v)]
    assert not different


def test_a_scratch_config_builds_for_prediction_without_train_net():
    """predict / the viewer build the model straight from the config: "scratch" must not be read as a file."""
    from s2vnet.inference.api import Predictor

    opts = ["MODEL.SWIN_TIMM.NAME", TINY, "MODEL.SWIN_TIMM.PRETRAINED", SCRATCH]
    predictor = Predictor.from_files("configs/btcv/s2vnet_swinb.yaml", None, opts, device="cpu")
    assert predictor.cfg.MODEL.SWIN_TIMM.PRETRAINED == SCRATCH
    assert isinstance(predictor.model.backbone, TimmSwinBackbone)
