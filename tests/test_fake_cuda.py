"""Device bugs without a GPU: the models on a fake CUDA device, under fp16 autocast, on the CPU.

PyTorch's ``FakeTensorMode`` runs every operator on metadata only (shape, dtype, device), so a tensor created
on the CPU and mixed with the model's "cuda" tensors raises ``FakeTensorDeviceMismatchError``, and a value
read back to the host (``.item()``, ``.tolist()``, ``nonzero``, ``bool(tensor)``) raises
``DataDependentOutputException``: each such read would be a device-to-host synchronisation on a real GPU.
The demo model (both modes) and the Swin-B paper config encode slices and run an automatic sweep this way, and
the demo model runs click rounds (positive and negative clicks, both round fusions): click classes and signs stay
host-side lists (``click_tensors``), so the click path never reads the device.
"""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from torch._subclasses.fake_tensor import FakeTensorMode

from s2vnet.config import setup_cfg
from s2vnet.data.clicks import Click
from s2vnet.inference.volume import VolumeInference

REPO = Path(__file__).resolve().parents[1]
DEMO = ["MODEL.S2VNET.CENTROIDS_PER_CLASS", "2"]


def to_fake_cuda(model: torch.nn.Module, mode: FakeTensorMode) -> torch.nn.Module:
    """Replace every parameter and buffer (persistent or not) by a fake tensor on "cuda"."""
    for module in model.modules():
        for name, p in module._parameters.items():
            if p is not None:
                fake = mode.from_tensor(p.detach()).to("cuda")
                module._parameters[name] = torch.nn.Parameter(fake, requires_grad=p.requires_grad)
        for name, b in module._buffers.items():
            if b is not None:
                module._buffers[name] = mode.from_tensor(b).to("cuda")
    return model


def fp16_autocast() -> torch.autocast:
    """CUDA fp16 autocast; constructed while CUDA claims to be available (it refuses to enable otherwise)."""
    with mock.patch.object(torch.cuda, "is_available", return_value=True):
        return torch.autocast("cuda", dtype=torch.float16)


def cpu_model(config: str, opts: list[str]) -> torch.nn.Module:
    """The model of ``config`` built (randomly initialised) on the CPU."""
    torch.manual_seed(0)
    return build_model(setup_cfg(str(REPO / config), opts + ["MODEL.DEVICE", "cpu"]))


@pytest.mark.parametrize(
    "config, opts, size",
    [
        ("configs/demo/s2vnet_r18_demo_paper.yaml", DEMO, 64),
        ("configs/demo/s2vnet_r18_demo.yaml", DEMO, 64),
        ("configs/btcv/s2vnet_swinb.yaml", ["MODEL.SWIN_TIMM.PRETRAINED", ""], 96),
    ],
    ids=["demo_paper_mode", "demo_clicked_class", "swin_b"],
)
def test_encoder_and_automatic_sweep_stay_on_the_device_under_fp16(config, opts, size):
    image, model = np.zeros((3, size, size), dtype=np.uint8), cpu_model(config, opts)
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        engine = VolumeInference(to_fake_cuda(model, mode), slice_batch_size=2)
        assert engine.model.device.type == "cuda" and engine.feature_dtype == torch.float16
        with fp16_autocast():
            features = engine.encode(image)
            scores = engine.automatic(features)
    assert features.mask_features.device.type == "cuda" and features.mask_features.dtype == torch.float16
    assert all(f.device.type == "cuda" for f in features.multi_scale)
    assert scores.shape == (engine.num_classes, 3, size // 4, size // 4) and scores.device.type == "cuda"


@pytest.mark.parametrize(
    "config, fusion",
    [("configs/demo/s2vnet_r18_demo_paper.yaml", "max"), ("configs/demo/s2vnet_r18_demo.yaml", "latest")],
    ids=["paper_mode_max", "demo_latest"],
)
def test_an_interactive_round_stays_on_the_device(config, fusion):
    image, model = np.zeros((3, 64, 64), dtype=np.uint8), cpu_model(config, DEMO)
    clicks = [Click(0, (1.0, 20.0, 20.0), "working"), Click(2, (2.0, 30.0, 9.0), "working", positive=False)]
    with FakeTensorMode(allow_non_fake_inputs=True) as mode:
        engine = VolumeInference(to_fake_cuda(model, mode), slice_batch_size=2, round_fusion=fusion)
        with fp16_autocast():
            features = engine.encode(image)
            state = engine.interactive_round(features, engine.start(features), clicks)
            state = engine.interactive_round(features, state, clicks[:1])
    assert state.fused.device.type == "cuda" and state.rounds == 2
