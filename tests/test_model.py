"""The S2VNet meta-architecture: propagation rules, aggregation, empty slices, configs, learning."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import Instances

from s2vnet.config import setup_cfg

REPO = Path(__file__).resolve().parents[1]
TINY = ["MODEL.S2VNET.NUM_CLASSES", "2", "MODEL.S2VNET.CLASS_NAMES", "['a', 'b']", "MODEL.S2VNET.CENTROIDS_PER_CLASS", "3",
        "MODEL.S2VNET.HIDDEN_DIM", "32", "MODEL.PIXEL_DECODER.CONVS_DIM", "32", "MODEL.PIXEL_DECODER.MASK_DIM", "32",
        "MODEL.S2VNET.DIM_FEEDFORWARD", "64", "MODEL.S2VNET.TRAIN_NUM_POINTS", "512"]


def tiny_model(*overrides: str, seed: int = 0):
    torch.manual_seed(seed)
    cfg = setup_cfg(str(REPO / "configs" / "demo" / "s2vnet_r18_demo.yaml"), TINY + list(overrides))
    return build_model(cfg)


def phantom_clip(size: int = 64, empty_slice: int | None = None, clicks: bool = False) -> dict:
    """Three slices with a bright disc (class 0) and a dark square (class 1), shifting a little per slice."""
    yy, xx = np.mgrid[:size, :size]
    slices = []
    for t in range(3):
        label = np.zeros((size, size), dtype=np.int64)
        if t != empty_slice:
            label[(yy - 20 - t) ** 2 + (xx - 22) ** 2 < 90] = 1
            label[38 + t:54 + t, 36:54] = 2
        image = np.where(label == 1, 200, np.where(label == 2, 60, 120)).astype(np.uint8)
        inst = Instances((size, size))
        values = [v for v in (1, 2) if (label == v).any()]
        inst.gt_classes = torch.tensor([v - 1 for v in values], dtype=torch.int64)
        inst.gt_masks = torch.stack([torch.from_numpy(label == v) for v in values]) if values else torch.zeros(0, size, size, dtype=torch.bool)
        click = {"coords": torch.zeros(0, 2), "classes": torch.zeros(0, dtype=torch.int64), "positive": torch.zeros(0, dtype=torch.bool)}
        if clicks and t == 0:
            click = {"coords": torch.tensor([[20.0, 22.0]]), "classes": torch.tensor([0]), "positive": torch.tensor([True])}
        slices.append({"image": torch.from_numpy(image)[None], "sem_seg": torch.from_numpy(label), "instances": inst,
                       "clicks": click, "height": size, "width": size})
    return {"case_id": "phantom", "slices": slices, "slice_indices": [0, 1, 2], "interactive_classes": torch.tensor([0])}


def test_training_propagates_exactly_the_matched_foreground_centroids():
    model = tiny_model()
    model.train()
    matched, kept = [], []
    criterion_forward, advance = model.criterion.forward, model.advance

    def spy_criterion(*args, **kwargs):
        losses, indices = criterion_forward(*args, **kwargs)
        matched.append(set(indices[0][0].tolist()))
        return losses, indices

    def spy_advance(state, outputs, keep):
        kept.append(set(torch.nonzero(keep).flatten().tolist()))
        new = advance(state, outputs, keep)
        assert torch.equal(new.active, keep)
        return new

    model.criterion.forward, model.advance = spy_criterion, spy_advance
    model([phantom_clip(clicks=True)])
    assert len(matched) == 3 and matched == kept
    assert all(len(m) == 2 for m in matched)  # two foreground targets per slice -> two centroids travel


def test_click_slot_is_forced_onto_its_class():
    model = tiny_model()
    model.train()
    seen = []
    criterion_forward = model.criterion.forward

    def spy(outputs, targets, forced=None, **kwargs):
        seen.append(forced[0].tolist())
        return criterion_forward(outputs, targets, forced=forced, **kwargs)

    model.criterion.forward = spy
    model([phantom_clip(clicks=True)])
    slot = model.bank.click_slot(0)
    assert seen[0] == [[slot, 0]]  # the clicked class-0 centroid is matched to class 0's target


def test_inference_propagates_the_non_background_centroids():
    model = tiny_model().eval()
    clip = phantom_clip()
    with torch.no_grad():
        features = model.encode(model.preprocess([s["image"] for s in clip["slices"]]))
        outputs, state = model.step(features.select(0), model.initial_state())
    foreground = outputs["pred_logits"][0].argmax(-1) != model.num_classes
    assert torch.equal(state.active, foreground)


def test_aggregation_switch_changes_later_slices_only():
    model = tiny_model().eval()
    clip = phantom_clip()
    with torch.no_grad():
        with_agg = model([clip])[0]
        model.aggregator = None
        without = model([clip])[0]
    torch.testing.assert_close(with_agg[0]["scores"], without[0]["scores"])  # first slice: no history yet
    assert any(not torch.allclose(a["scores"], b["scores"]) for a, b in zip(with_agg[1:], without[1:]))


def test_propagation_switch_resets_every_slice():
    model = tiny_model("MODEL.S2VNET.PROPAGATION", "False").eval()
    clip = phantom_clip()
    clip["slices"][2] = clip["slices"][0]
    with torch.no_grad():
        out = model([clip])[0]
    torch.testing.assert_close(out[0]["scores"], out[2]["scores"])  # same slice, no carried state


def test_empty_target_slice_trains():
    model = tiny_model()
    model.train()
    losses = model([phantom_clip(empty_slice=1, clicks=True)])
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_model_learns_a_tiny_volume():
    """A demo-config model overfits three phantom slices: the loss falls clearly within 40 steps."""
    model = tiny_model()
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    clip, history = phantom_clip(clicks=True), []
    for _ in range(40):
        loss = sum(model([clip]).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    assert np.mean(history[-5:]) < 0.5 * np.mean(history[:5]), history


CONFIGS = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "configs").rglob("*.yaml") if not p.name.startswith("Base-"))


@pytest.mark.parametrize("path", CONFIGS)
def test_every_config_builds(path):
    cfg = setup_cfg(str(REPO / path), ["MODEL.DEVICE", "cpu"])
    model = build_model(cfg)
    assert model.num_classes == cfg.MODEL.S2VNET.NUM_CLASSES
    assert model.bank.num_slots == cfg.MODEL.S2VNET.NUM_CLASSES * cfg.MODEL.S2VNET.CENTROIDS_PER_CLASS
    if "swinb" in path:
        backbone = sum(p.numel() for p in model.backbone.parameters())
        assert 85e6 < backbone < 90e6  # Swin-B
