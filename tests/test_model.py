"""The S2VNet meta-architecture: propagation rules, aggregation, empty slices, configs, learning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from synthetic import phantom_clip, tiny_model

from s2vnet.config import setup_cfg

REPO = Path(__file__).resolve().parents[1]


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


CONFIGS = sorted(
    p.relative_to(REPO).as_posix() for p in (REPO / "configs").rglob("*.yaml") if not p.name.startswith("Base-")
)


@pytest.mark.parametrize("path", CONFIGS)
def test_every_config_builds(path):
    cfg = setup_cfg(str(REPO / path), ["MODEL.DEVICE", "cpu"])
    model = build_model(cfg)
    assert model.num_classes == cfg.MODEL.S2VNET.NUM_CLASSES
    assert model.bank.num_slots == cfg.MODEL.S2VNET.NUM_CLASSES * cfg.MODEL.S2VNET.CENTROIDS_PER_CLASS
    if "swinb" in path:
        backbone = sum(p.numel() for p in model.backbone.parameters())
        assert 85e6 < backbone < 90e6  # Swin-B
