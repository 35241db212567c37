"""Whole-volume inference, interactive sessions and the evaluator (tiny untrained model, CPU)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from synthetic import TempDatasets, organ_phantom, tiny_cfg, tiny_model, write_image

from s2vnet import InteractiveSession, Predictor
from s2vnet.evaluation.evaluator import VolumeSegEvaluator
from s2vnet.evaluation.metrics import per_class_metrics
from s2vnet.inference import Click, VolumeInference

SHAPE = (6, 48, 40)
VISIBLE = ("MODEL.S2VNET.FOREGROUND_THRESHOLD", "0.0", "MODEL.S2VNET.SEMANTIC_INFERENCE", "max")  # clicks show
ROTATED = (0, 1, 0, -1, 0, 0, 0, 0, 1)  # a 90-degree in-plane rotation: exercises reorientation


@pytest.fixture
def scan(tmp_path):
    image, label = organ_phantom(SHAPE)
    path = write_image(
        tmp_path / "scan.nrrd", image, spacing_zyx=(3.0, 0.9, 0.7), origin=(5.0, -2.0, 1.0), direction=ROTATED
    )
    return path, image, label


def predictor(*overrides: str) -> Predictor:
    torch.manual_seed(0)
    return Predictor(tiny_cfg(*overrides), weights=None, device="cpu")


def test_volume_inference_shapes_and_repeatability(scan):
    path, image, _ = scan
    p = predictor()
    first = p.segment(path)
    second = p.segment(path)
    assert first.labels.shape == SHAPE and first.labels.dtype == np.uint8
    np.testing.assert_array_equal(first.labels, second.labels)
    assert first.geometry.spacing == pytest.approx((3.0, 0.9, 0.7))
    assert first.geometry.direction == pytest.approx(ROTATED)
    assert set(np.unique(first.labels)) <= {0, 1, 2}


def test_array_input_is_segmented_on_its_own_grid():
    image, _ = organ_phantom(SHAPE)
    result = predictor().segment(image, spacing=(3.0, 0.9, 0.7))
    assert result.labels.shape == SHAPE


def test_session_reuses_features_for_every_round(scan, monkeypatch):
    path, _, label = scan
    p = predictor("TEST.S2VNET.SLICE_BATCH_SIZE", "16")
    calls = []
    forward = p.model.backbone.forward
    monkeypatch.setattr(p.model.backbone, "forward", lambda x: calls.append(x.shape[0]) or forward(x))
    session = InteractiveSession(p, path)
    z, y, x = np.argwhere(label == 1)[0]
    for _ in range(3):
        session.add_clicks([{"class": "a", "voxel": [int(x), int(y), int(z)]}])
    assert calls == [SHAPE[0]]  # one backbone call for the whole volume, none per click
    assert session.rounds == 3
    session.undo()
    assert session.rounds == 2
    auto = session.reset()
    assert session.rounds == 0
    np.testing.assert_array_equal(auto, p.segment(path).labels)


def test_clicks_change_only_the_clicked_class():
    torch.manual_seed(0)
    model = tiny_model()
    engine = VolumeInference(model, 8, round_fusion="latest")
    image, label = organ_phantom((4, 64, 64))
    volume = np.clip((image.astype(float) + 175) / 425 * 255, 0, 255).astype(np.uint8)
    features = engine.encode(volume)
    state = engine.start(features)
    z, y, x = np.argwhere(label == 1)[len(np.argwhere(label == 1)) // 2]
    after = engine.interactive_round(features, state, [Click(0, (int(z), float(y), float(x)), "working")])
    assert not torch.allclose(after.fused[0], state.fused[0])  # the clicked class changed
    torch.testing.assert_close(after.fused[1], state.fused[1])  # the other did not
    assert after.rounds == 1 and 0 in after.memory.positive


def test_several_classes_clicked_in_one_round_all_change():
    torch.manual_seed(0)
    engine = VolumeInference(tiny_model(), 8, round_fusion="latest")
    image, label = organ_phantom((6, 64, 64))
    volume = np.clip((image.astype(float) + 175) / 425 * 255, 0, 255).astype(np.uint8)
    features = engine.encode(volume)
    state = engine.start(features)
    clicks = [Click(0, (4, 18.0, 14.0), "working"), Click(1, (5, 30.0, 28.0), "working")]
    after = engine.interactive_round(features, state, clicks)
    for k in (0, 1):
        assert not torch.allclose(after.fused[k], state.fused[k])


def test_max_fusion_never_lowers_a_score():
    torch.manual_seed(0)
    engine = VolumeInference(tiny_model(), 8, round_fusion="max")
    image, _ = organ_phantom((4, 64, 64))
    features = engine.encode(np.clip(image + 100, 0, 255).astype(np.uint8))
    state = engine.start(features)
    after = engine.interactive_round(features, state, [Click(1, (2, 30.0, 28.0), "working", positive=True)])
    assert torch.all(after.fused >= state.fused)


def test_evaluator_with_stand_in_predictions(tmp_path):
    registry = TempDatasets()
    try:
        _, label = organ_phantom(SHAPE)
        img = write_image(tmp_path / "img.nii.gz", label.astype(np.int16), spacing_zyx=(2.0, 1.0, 1.0))
        lbl = write_image(tmp_path / "lbl.nii.gz", label, spacing_zyx=(2.0, 1.0, 1.0))
        name = registry.register([(str(img), str(lbl))])
        from detectron2.data import DatasetCatalog

        record = DatasetCatalog.get(name)[0]
        shifted = np.zeros_like(label)
        shifted[1:] = label[:-1]  # one slice (2 mm) off along z
        evaluator = VolumeSegEvaluator(name, tmp_path / "eval", tolerance_mm=1.0, noc_cap=20)
        evaluator.reset()
        evaluator.process([record], [{"automatic": shifted, "protocols": {"paper": [shifted, label]}}])
        results = evaluator.evaluate()["volume_seg"]
        expected = per_class_metrics(shifted, label, (2.0, 1.0, 1.0), 2, 1.0)
        assert (
            results["auto_dice"] == pytest.approx(np.mean([r["dice"] for r in expected])) and results["auto_dice"] < 1
        )
        assert (
            results["auto_hd95"] == pytest.approx(np.mean([r["hd95"] for r in expected]))
            and results["auto_hd95"] >= 2.0
        )
        assert results["dice_1click"] == pytest.approx(results["auto_dice"]) and results["dice_2click"] == 1.0
        expected_noc = np.mean([1 if d >= 0.9 else 2 for d in _dice_per_class(shifted, label)])
        assert results["noc90"] == pytest.approx(expected_noc)
        summary = json.loads((tmp_path / "eval" / "metrics.json").read_text())
        assert summary["interactive"]["paper"]["clicks"] == [1, 2]
        rows = (tmp_path / "eval" / "per_case.csv").read_text().splitlines()
        assert rows[0].startswith("case,class,stage,protocol,clicks,dice") and len(rows) == 1 + 3 * 2
        assert (tmp_path / "eval" / "dice_vs_clicks.png").read_bytes()[:4] == b"\x89PNG"
    finally:
        registry.close()


def _dice_per_class(pred, gt):
    return [2 * np.sum((pred == c) & (gt == c)) / (np.sum(pred == c) + np.sum(gt == c)) for c in (1, 2)]


def test_batched_and_one_slice_at_a_time_give_the_same_scores():
    """Encoding 6 slices in one batch equals encoding them one by one (fp32 tolerance)."""
    torch.manual_seed(0)
    model = tiny_model().eval()
    image, _ = organ_phantom((6, 64, 64))
    volume = np.clip(image + 100, 0, 255).astype(np.uint8)
    batched = VolumeInference(model, slice_batch_size=6)
    single = VolumeInference(model, slice_batch_size=1)
    a, b = batched.automatic(batched.encode(volume)), single.automatic(single.encode(volume))
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    np.testing.assert_array_equal(batched.labels(a, (64, 64), (64, 64)), single.labels(b, (64, 64), (64, 64)))


def test_cached_round_equals_a_full_recompute():
    torch.manual_seed(0)
    engine = VolumeInference(tiny_model(), 8)
    image, _ = organ_phantom((6, 64, 64))
    volume = np.clip(image + 100, 0, 255).astype(np.uint8)
    clicks = [Click(0, (3, 18.0, 14.0), "working"), Click(1, (4, 30.0, 28.0), "working", positive=False)]
    cached_features = engine.encode(volume)
    cached = engine.interactive_round(cached_features, engine.start(cached_features), clicks)
    fresh_features = engine.encode(volume)  # everything recomputed from the image
    fresh = engine.interactive_round(fresh_features, engine.start(fresh_features), clicks)
    torch.testing.assert_close(cached.fused, fresh.fused)


def test_a_round_decodes_only_the_slices_clicks_can_reach(monkeypatch):
    torch.manual_seed(0)
    engine = VolumeInference(tiny_model(), 8, round_scores="all")  # "click" may stop earlier (next tests)
    image, _ = organ_phantom((8, 64, 64))
    features = engine.encode(np.clip(image + 100, 0, 255).astype(np.uint8))
    state = engine.start(features)
    visited = []
    step = engine.model.step
    monkeypatch.setattr(engine.model, "step", lambda f, s, c=None, hw=None: visited.append(1) or step(f, s, c, hw))
    engine.interactive_round(
        features, state, [Click(0, (5, 18.0, 14.0), "working"), Click(1, (6, 30.0, 28.0), "working")]
    )
    assert len(visited) == (8 - 5) + (6 + 1)  # forward from the first clicked slice, backward from the last


def test_benchmark_ratios_compare_like_with_like():
    import importlib.util

    from synthetic import REPO

    spec = importlib.util.spec_from_file_location("benchmark", REPO / "projects" / "S2VNet" / "benchmark.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = [
        {
            "method": "s2vnet:demo",
            "tag": "",
            "volume": "lung1",
            "automatic": 2.0,
            "click_cached": 1.0,
            "click_recompute": 4.0,
        },
        {"method": "naive:demo", "tag": "", "volume": "lung1", "automatic_and_round": 6.0},
        {"method": "s2vnet:demo", "tag": "same crop as 3D peers", "volume": "lung1", "automatic": 0.5},
        {"method": "s2vnet:swinb", "tag": "same crop as 3D peers", "volume": "lung1", "automatic": 4.0},
        {"method": "s2vnet:swinb-bf16-compile", "tag": "same crop as 3D peers", "volume": "lung1", "automatic": 2.0},
        {"method": "swinunetr", "tag": "", "volume": "lung1", "automatic": 10.0},
    ]
    assert bench.ratios(rows) == {
        "s2vnet_swinb_vs_swinunetr_volumes_per_min": 2.5,
        "s2vnet_swinb-bf16-compile_vs_swinunetr_volumes_per_min": 5.0,
        "s2vnet_demo_vs_swinunetr_volumes_per_min": 20.0,
        "batched_vs_naive_demo": 2.0,
        "click_cached_vs_recompute_demo": 4.0,
    }


def test_benchmark_projection_scales_measured_slices_and_windows():
    import importlib.util

    from synthetic import REPO

    spec = importlib.util.spec_from_file_location("benchmark", REPO / "projects" / "S2VNet" / "benchmark.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.sliding_windows((192, 192, 48)) == 3 * 3 * 1  # the 48-slice crop is padded to one window deep
    assert bench.sliding_windows((512, 512, 200)) == 10 * 10 * 4
    rows = [
        {"method": "s2vnet:swinb", "tag": "", "volume": "lung1", "shape": [4, 512, 512], "automatic": 8.0},
        {"method": "s2vnet:swinb", "tag": "", "volume": "lung2", "shape": [4, 512, 512], "automatic": 12.0},
        {"method": "s2vnet:swinb", "tag": "same crop as 3D peers", "shape": [48, 192, 192], "automatic": 1.0},
        {"method": "swinunetr", "tag": "", "volume": "lung1", "shape": [48, 192, 192], "automatic": 9.0},
    ]
    projected = bench.projection(rows)
    assert projected["s2vnet:swinb"]["seconds"] == pytest.approx(2.5 * 200)  # mean 2.5 s/slice, crops not used
    assert projected["swinunetr"]["seconds"] == pytest.approx(1.0 * 400)  # 1 s/window


def test_encode_batches_follow_the_memory_budget(monkeypatch):
    from s2vnet.inference.volume import activation_mb_per_slice

    torch.manual_seed(0)
    model = tiny_model().eval()
    per_slice = activation_mb_per_slice(model, (64, 64))
    assert per_slice > 0
    assert activation_mb_per_slice(model, (128, 128)) == pytest.approx(4 * per_slice, rel=0.05)  # scales with pixels
    engine = VolumeInference(model, slice_batch_size=16, budget_mb=3.5 * per_slice)
    assert engine.batch_size((64, 64)) == 3
    assert VolumeInference(model, slice_batch_size=2, budget_mb=100 * per_slice).batch_size((64, 64)) == 2  # capped
    assert VolumeInference(model, slice_batch_size=16, budget_mb=per_slice / 10).batch_size((64, 64)) == 1
    sizes = []
    encode = model.encode
    monkeypatch.setattr(model, "encode", lambda x: sizes.append(x.shape[0]) or encode(x))
    image, _ = organ_phantom((7, 64, 64))
    budgeted = engine.encode(np.clip(image + 100, 0, 255).astype(np.uint8))
    assert sizes == [1, 3, 3, 1]  # the one-slice probe, then batches of 3
    reference = VolumeInference(model, slice_batch_size=7).encode(np.clip(image + 100, 0, 255).astype(np.uint8))
    torch.testing.assert_close(budgeted.mask_features, reference.mask_features, atol=1e-4, rtol=1e-4)


def test_changed_slices_are_where_scores_or_unshared_click_edits_differ():
    from s2vnet.inference.click_prior import ClickEdits, Seed
    from s2vnet.inference.volume import InteractionState

    before = InteractionState(torch.zeros(2, 8, 4, 4))
    after = InteractionState(before.fused.clone())
    after.fused[1, 2, 3, 3] = 0.5
    assert VolumeInference.changed_slices(before, after).tolist() == [2]
    shared = Seed(0, True, (slice(0, 1), slice(0, 2), slice(0, 2)), np.zeros((1, 2, 2), np.float32), (0, 0, 0))
    new = Seed(1, False, (slice(5, 8), slice(0, 2), slice(0, 2)), np.zeros((3, 2, 2), np.float32), (6, 0, 0))
    before.edits, after.edits = ClickEdits((shared,)), ClickEdits((shared, new))
    assert VolumeInference.changed_slices(before, after).tolist() == [2, 5, 6, 7]  # the shared seed is not a change
    assert VolumeInference.changed_slices(after, before).tolist() == [2, 5, 6, 7]  # an undo changes the same slices


@pytest.mark.parametrize("prior", ["none", "feature"])
def test_a_session_relabels_only_changed_slices_and_equals_a_full_relabel(scan, monkeypatch, prior):
    path, _, label = scan
    p = predictor("TEST.S2VNET.CLICK_PRIOR", prior, "TEST.S2VNET.CLICK_PRIOR_AGREEMENT", "0.0")  # its test labels too
    session = InteractiveSession(p, path)
    labelled = []
    upsample = p.model.upsample_scores
    monkeypatch.setattr(p.model, "upsample_scores", lambda s, *a: labelled.append(1) or upsample(s, *a))
    z, y, x = np.argwhere(label == 1)[0]
    rounds = [
        [{"class": "a", "voxel": [int(x), int(y), int(z)]}],
        [{"class": "b", "voxel": [int(x), int(y), int(z)], "positive": False}, {"class": "a", "voxel": [1, 1, 5]}],
    ]
    states = [session._history[-1]]
    for clicks in rounds:
        labelled.clear()
        labels = session.add_clicks(clicks)
        relabelled = len(labelled)
        changed = VolumeInference.changed_slices(states[-1], session._history[-1])
        states.append(session._history[-1])
        full = session.prepared.to_input_grid(p.engine.state_labels(states[-1], session.features))
        np.testing.assert_array_equal(labels, full)
        assert relabelled == len(changed)  # one post-process per changed slice, none for the others
    np.testing.assert_array_equal(
        session.undo(), session.prepared.to_input_grid(p.engine.state_labels(states[1], session.features))
    )


@torch.no_grad()
def _full_click_sweep(engine, features, order, clicks):
    """The click-only sweep without its early stop: every slice of ``order`` decoded."""
    scores = torch.zeros(engine.num_classes, len(features), *features.mask_features.shape[-2:])
    reached = torch.zeros(engine.num_classes, len(features), dtype=torch.bool)
    state = engine.model.initial_state()
    for z in order:
        outputs, state = engine.model.step(features.slice(z, torch.float32), state, clicks.get(z), features.padded_hw)
        scores[:, z], reached[:, z] = engine.model.click_scores(outputs)
    return scores, reached


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_click_sweep_stops_early_only_where_nothing_is_left_to_follow(seed):
    from s2vnet.inference.volume import group_clicks

    torch.manual_seed(seed)
    engine = VolumeInference(tiny_model(), 8)
    image, _ = organ_phantom((10, 64, 64))
    features = engine.encode(np.clip(image + 100, 0, 255).astype(np.uint8))
    clicks = group_clicks([Click(0, (2, 18.0, 14.0), "working"), Click(1, (5, 30.0, 28.0), "working")], "cpu")
    for order in (range(2, 10), range(5, -1, -1)):
        fast, _, fast_reached = engine.sweep(features, order, clicks, click_only=True)
        full, full_reached = _full_click_sweep(engine, features, order, clicks)
        torch.testing.assert_close(fast, full, rtol=0, atol=0)
        assert torch.equal(fast_reached, full_reached)


def test_the_click_sweep_stops_after_the_last_click_once_no_click_slot_is_alive(monkeypatch):
    torch.manual_seed(0)
    engine = VolumeInference(tiny_model(), 8)
    image, _ = organ_phantom((10, 64, 64))
    features = engine.encode(np.clip(image + 100, 0, 255).astype(np.uint8))
    start = engine.start(features)
    visited, step = [], engine.model.step

    def dropping_step(f, s, c=None, hw=None):  # the propagation drops every click slot after each slice
        outputs, state = step(f, s, c, hw)
        visited.append(1)
        return outputs, dataclasses.replace(state, click_class=torch.full_like(state.click_class, -1))

    monkeypatch.setattr(engine.model, "step", dropping_step)
    engine.interactive_round(
        features, start, [Click(0, (3, 18.0, 14.0), "working"), Click(1, (6, 30.0, 28.0), "working")]
    )
    assert len(visited) == (6 - 3 + 1) + (6 - 3 + 1)  # each sweep ends on the last clicked slice it meets


@pytest.mark.parametrize(
    "overrides, dtype, tolerance",
    [
        (("TEST.S2VNET.CHANNELS_LAST", "True"), torch.float32, 1e-5),
        (("TEST.S2VNET.ENCODE_DTYPE", "bfloat16"), torch.float32, 5e-2),
        (("TEST.S2VNET.FEATURE_DTYPE", "float16"), torch.float16, 1e-3),
        (("TEST.S2VNET.FEATURE_DTYPE", "bfloat16", "TEST.S2VNET.ENCODE_DTYPE", "bfloat16"), torch.bfloat16, 5e-2),
    ],
)
def test_encoder_fast_paths_keep_the_features_close_to_float32(overrides, dtype, tolerance):
    image, _ = organ_phantom((3, 64, 64))
    volume = np.clip(image + 100, 0, 255).astype(np.uint8)
    torch.manual_seed(0)
    reference = VolumeInference.from_cfg(tiny_model(), tiny_cfg()).encode(volume)
    torch.manual_seed(0)
    fast = VolumeInference.from_cfg(tiny_model(), tiny_cfg(*overrides)).encode(volume)
    assert fast.mask_features.dtype == dtype and all(f.dtype == dtype for f in fast.multi_scale)
    assert fast.mask_features.is_contiguous()
    for a, b in zip([fast.mask_features, *fast.multi_scale], [reference.mask_features, *reference.multi_scale]):
        assert ((a.float() - b).norm() / b.norm()).item() < tolerance


def test_a_bfloat16_decoder_step_keeps_the_state_float32_and_the_scores_close(monkeypatch):
    image, _ = organ_phantom((4, 64, 64))
    volume = np.clip(image + 100, 0, 255).astype(np.uint8)
    reference = VolumeInference.from_cfg(tiny_model(), tiny_cfg())
    fast = VolumeInference.from_cfg(tiny_model(), tiny_cfg("TEST.S2VNET.DECODE_DTYPE", "bfloat16"))
    assert fast.decode_dtype == torch.bfloat16 and reference.decode_dtype is None
    features = reference.encode(volume)
    expected = reference.automatic(features)
    scores = fast.automatic(features)
    assert scores.dtype == torch.float32 and not torch.equal(scores, expected)  # the autocast did run
    assert ((scores - expected).norm() / expected.norm()).item() < 5e-2
    states, step = [], fast.model.step

    def recording_step(*args):
        outputs, state = step(*args)
        states.append(state)
        return outputs, state

    monkeypatch.setattr(fast.model, "step", recording_step)
    fast.automatic(features)
    assert states and all(s.centroids.dtype == s.history.dtype == torch.float32 for s in states)


def test_a_bfloat16_sweep_steps_under_the_autocast_and_scores_in_float32(monkeypatch):
    image, _ = organ_phantom((3, 64, 64))
    engine = VolumeInference.from_cfg(tiny_model(), tiny_cfg("TEST.S2VNET.DECODE_DTYPE", "bfloat16"))
    features = engine.encode(np.clip(image + 100, 0, 255).astype(np.uint8))
    seen: list[tuple[str, bool]] = []
    step, class_scores = engine.model.step, engine.model.class_scores

    def recording_step(*args):
        seen.append(("step", torch.is_autocast_enabled("cpu")))
        return step(*args)

    def recording_scores(*args):
        seen.append(("scores", torch.is_autocast_enabled("cpu")))
        return class_scores(*args)

    monkeypatch.setattr(engine.model, "step", recording_step)
    monkeypatch.setattr(engine.model, "class_scores", recording_scores)
    scores = engine.automatic(features)
    assert seen == [("step", True), ("scores", False)] * 3 and scores.dtype == torch.float32
    assert not torch.is_autocast_enabled("cpu")


@pytest.mark.parametrize("key", ["ENCODE_DTYPE", "DECODE_DTYPE", "FEATURE_DTYPE"])
def test_an_unknown_encoder_dtype_is_refused(key):
    with pytest.raises(ValueError, match="unknown"):
        VolumeInference.from_cfg(tiny_model(), tiny_cfg(f"TEST.S2VNET.{key}", "float8"))


ACCEPT = ("TEST.S2VNET.CLICK_PRIOR_AGREEMENT", "0.0")  # every round's decoding is taken (its scores show)


@pytest.mark.parametrize(
    "overrides",
    [
        (),  # the default click-region check: this round's decoding of the tiny model is rejected
        ACCEPT,
        (*ACCEPT, "TEST.S2VNET.CLICK_PRIOR", "feature"),
        (*ACCEPT, "TEST.S2VNET.ROUND_FUSION", "latest", "TEST.S2VNET.ROUND_SCORES", "all"),
    ],
)
def test_a_one_slice_round_previews_that_slice_exactly_as_the_round_ends(overrides):
    engine = predictor(*VISIBLE, *overrides).engine
    image, label = organ_phantom((6, 48, 40))
    features = engine.encode(np.clip(image + 100, 0, 255).astype(np.uint8))
    state = engine.start(features)
    z, y, x = (int(v) for v in np.argwhere(label == 1)[0])
    clicks = [Click(1, (z, float(y), float(x)), "working"), Click(0, (z, 30.0, 28.0), "working", positive=False)]
    shown = []
    after = engine.interactive_round(features, state, clicks, preview=lambda s, labels: shown.append((s, labels)))
    assert [s for s, _ in shown] == [z]  # once, for the clicked slice
    np.testing.assert_array_equal(shown[0][1], engine.state_labels(after, features)[z])
    hw = (features.image_hw, features.padded_hw)
    scores_changed = (engine.labels(after.fused, *hw)[z] != engine.labels(state.fused, *hw)[z]).any()
    assert scores_changed == (overrides != ())  # the preview covers the fused scores, not only the click edits
    untouched = engine.interactive_round(features, state, clicks)  # the preview changes nothing in the round
    torch.testing.assert_close(untouched.fused, after.fused, rtol=0, atol=0)


def test_a_round_over_several_slices_has_no_preview():
    engine = predictor().engine
    image, _ = organ_phantom((6, 48, 40))
    features = engine.encode(np.clip(image + 100, 0, 255).astype(np.uint8))
    clicks = [Click(0, (2, 18.0, 14.0), "working"), Click(1, (4, 30.0, 28.0), "working")]
    shown = []
    engine.interactive_round(features, engine.start(features), clicks, preview=lambda *a: shown.append(a))
    assert shown == []


def test_a_session_preview_is_the_previous_labels_with_the_clicked_slice_final(scan):
    path, _, label = scan
    session = InteractiveSession(predictor(*VISIBLE), path)
    before = session.labels
    z, y, x = (int(v) for v in np.argwhere(label == 1)[0])
    click = {"class": "b", "voxel": [x, y, z]}
    (working,) = session.predictor.working_clicks(session.prepared, [click])
    shown = []
    final = session.add_clicks([click], preview=shown.append)
    assert len(shown) == 1 and shown[0].shape == final.shape == SHAPE
    mask = np.zeros_like(session._working[0])
    mask[working.slice_index] = 1
    on_slice = session.prepared.to_input_grid(mask).astype(bool)  # the clicked working slice, on the input grid
    np.testing.assert_array_equal(shown[0][on_slice], final[on_slice])
    np.testing.assert_array_equal(shown[0][~on_slice], before[~on_slice])
    assert (final[on_slice] != before[on_slice]).any()
