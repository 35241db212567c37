"""Evaluation with several click protocols: the runner's rounds, the evaluator's outputs, the table tool, montages."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from synthetic import TempDatasets, organ_phantom, tiny_model, write_image

from s2vnet.data.clicks import Click
from s2vnet.evaluation.clicks import challenge_round
from s2vnet.evaluation.evaluator import VolumeSegEvaluator
from s2vnet.evaluation.metrics import per_class_metrics
from s2vnet.evaluation.protocols import CLICK_PROTOCOLS
from s2vnet.evaluation.runner import evaluation_plan, protocol_rng, run_case
from s2vnet.inference import VolumeInference
from s2vnet.utils import visualize

PAPER, CVPR25 = CLICK_PROTOCOLS["paper"], CLICK_PROTOCOLS["cvpr25"]


# ------------------------------------------------------------------------------------------
# runner
# ------------------------------------------------------------------------------------------


class OracleEngine:
    """Stand-in for VolumeInference whose state is a label volume: a round makes each clicked class exact."""

    num_classes = 3

    def __init__(self, automatic: np.ndarray, truth: np.ndarray) -> None:
        self.automatic, self.truth = automatic, truth
        self.encoded, self.calls = 0, []

    def encode(self, image):
        self.encoded += 1
        return SimpleNamespace(image_hw=image.shape[1:], padded_hw=image.shape[1:])

    def start(self, features):
        return SimpleNamespace(fused=self.automatic.copy())

    def labels(self, fused, image_hw, padded_hw):
        return fused.copy()

    def state_labels(self, state, features, since=None):
        return state.fused.copy()

    def interactive_round(self, features, state, clicks):
        self.calls.append((state, list(clicks)))
        fused = state.fused.copy()
        for k in {c.class_index for c in clicks}:
            fused[fused == k + 1] = 0
            fused[self.truth == k + 1] = k + 1
        return SimpleNamespace(fused=fused)


def _case():
    truth = np.zeros((10, 16, 16), dtype=np.uint8)
    truth[2:7, 3:10, 3:10] = 1
    truth[4:9, 9:14, 10:15] = 2
    automatic = truth.copy()
    automatic[2:4] = 0  # class 0 under-segmented; class 1 exact; class 2 absent everywhere
    automatic[8:10, 0:4, 0:4] = 2  # class 1 over-segmented
    return SimpleNamespace(image=np.zeros(truth.shape, np.uint8), label=truth, spacing=(2.0, 1.0, 1.0)), automatic


def test_each_protocol_runs_its_rounds_from_the_automatic_result_on_one_encoding():
    prepared, automatic = _case()
    engine = OracleEngine(automatic, prepared.label)
    plan = evaluation_plan(SimpleNamespace(MODE="both", ROUNDS=3, PROTOCOL=["paper", "cvpr25"]))
    assert [(p.name, n) for p, n in plan] == [("paper", 3), ("cvpr25", 5)]
    result = run_case(engine, prepared, plan, lambda name: protocol_rng(0, "case", name))
    assert engine.encoded == 1
    np.testing.assert_array_equal(result["automatic"], automatic)
    paper, cvpr = result["protocols"]["paper"], result["protocols"]["cvpr25"]
    assert len(paper["rounds"]) == 3 and len(cvpr["rounds"]) == 5
    # paper: first clicks on every class of the ground truth, then nothing is left to correct
    assert [(c.class_index, c.positive) for c in paper["clicks"][0]] == [(0, True), (1, True)]
    assert paper["clicks"][1:] == [[], []]
    # cvpr25 starts again from the automatic labels (the paper rounds made them exact): errors of classes 0 and 1
    expected = challenge_round(automatic, prepared.label, 3, protocol_rng(0, "case", "cvpr25"), frame="working")
    assert cvpr["clicks"][0] == expected and [c.positive for c in expected] == [True, False]
    assert cvpr["clicks"][1:] == [[]] * 4
    assert all(
        isinstance(c, Click) and c.frame == "working" for run in (paper, cvpr) for cs in run["clicks"] for c in cs
    )
    first_states = [state for state, _ in engine.calls]
    assert len(first_states) == 2 and np.array_equal(first_states[1].fused, automatic)
    for run in (paper, cvpr):
        np.testing.assert_array_equal(run["rounds"][-1], prepared.label)


def test_automatic_mode_runs_no_protocol():
    assert evaluation_plan(SimpleNamespace(MODE="automatic", ROUNDS=3, PROTOCOL=["nope"])) == []
    assert [p.name for p, _ in evaluation_plan(SimpleNamespace(MODE="interactive", ROUNDS=2, PROTOCOL="cvpr25"))] == [
        "cvpr25"
    ]


def test_the_engine_takes_working_frame_clicks_from_the_runner():
    torch.manual_seed(0)
    engine = VolumeInference(tiny_model(), 8, round_fusion="latest")
    image, label = organ_phantom((4, 64, 64))
    volume = np.clip((image.astype(float) + 175) / 425 * 255, 0, 255).astype(np.uint8)
    prepared = SimpleNamespace(image=volume, label=label, spacing=(3.0, 0.9, 0.7))
    result = run_case(engine, prepared, [(CVPR25, 2)], lambda name: protocol_rng(1, "phantom", name))
    clicks = result["protocols"]["cvpr25"]["clicks"][0]
    assert clicks and all(c.frame == "working" for c in clicks)
    features = engine.encode(volume)
    direct = engine.interactive_round(features, engine.start(features), clicks)
    np.testing.assert_array_equal(
        result["protocols"]["cvpr25"]["rounds"][0], engine.labels(direct.fused, features.image_hw, features.padded_hw)
    )


# ------------------------------------------------------------------------------------------
# evaluator and table tool
# ------------------------------------------------------------------------------------------


@pytest.fixture
def evaluated(tmp_path):
    registry = TempDatasets()
    try:
        _, label = organ_phantom((6, 48, 40))
        lbl = write_image(tmp_path / "lbl.nii.gz", label, spacing_zyx=(2.0, 1.0, 1.0))
        name = registry.register([(str(lbl), str(lbl))])
        from detectron2.data import DatasetCatalog

        record = DatasetCatalog.get(name)[0]
        shifted = np.zeros_like(label)
        shifted[1:] = label[:-1]  # one slice (2 mm) off along z
        evaluator = VolumeSegEvaluator(name, tmp_path / "eval", tolerance_mm=1.0, noc_cap=20)
        evaluator.reset()
        outputs = {
            "automatic": shifted,
            "protocols": {"paper": [shifted, label], "cvpr25": [shifted, shifted, label, label, label]},
        }
        evaluator.process([record], [outputs])
        flat = evaluator.evaluate()["volume_seg"]
        yield SimpleNamespace(flat=flat, folder=tmp_path / "eval", case=record["case_id"], label=label, shifted=shifted)
    finally:
        registry.close()


def test_metrics_json_holds_both_protocols(evaluated):
    summary = json.loads((evaluated.folder / "metrics.json").read_text())
    paper, cvpr = summary["interactive"]["paper"], summary["interactive"]["cvpr25"]
    assert paper["clicks"] == [1, 2] and cvpr["clicks"] == [1, 2, 3, 4, 5]
    at_2mm = per_class_metrics(evaluated.shifted, evaluated.label, (2.0, 1.0, 1.0), 2, 2.0)
    dsc, nsd = np.mean([r["dice"] for r in at_2mm]), np.mean([r["nsd"] for r in at_2mm])
    assert dsc > 0.2 and nsd > np.mean(
        [r["nsd"] for r in per_class_metrics(evaluated.shifted, evaluated.label, (2.0, 1.0, 1.0), 2, 1.0)]
    )  # cvpr25 scores NSD at 2 mm, not 1 mm
    case = cvpr["per_case"][evaluated.case]
    assert case["dsc"] == pytest.approx([dsc, dsc, 1, 1, 1]) and case["nsd"] == pytest.approx([nsd, nsd, 1, 1, 1])
    assert cvpr["dsc_auc"] == pytest.approx(dsc + (dsc + 1) / 2 + 2) and cvpr["final_dsc"] == 1.0
    assert cvpr["nsd_auc"] == pytest.approx(nsd + (nsd + 1) / 2 + 2) and cvpr["final_nsd"] == 1.0
    assert paper["noc90"] == pytest.approx(evaluated.flat["noc90"]) and "dsc_auc" not in paper
    assert evaluated.flat["cvpr25_dsc_auc"] == pytest.approx(cvpr["dsc_auc"])
    assert evaluated.flat["dice_2click"] == 1.0 and evaluated.flat["cvpr25_dice_2click"] == pytest.approx(dsc)
    assert (evaluated.folder / "dice_vs_clicks.png").read_bytes()[:4] == b"\x89PNG"


def test_per_case_csv_has_a_protocol_column(evaluated):
    with (evaluated.folder / "per_case.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    counts = {p: sum(r["protocol"] == p for r in rows) for p in ("", "paper", "cvpr25")}
    assert counts == {"": 2, "paper": 2 * 2, "cvpr25": 2 * 5} and len(rows) == 16
    assert {r["stage"] for r in rows if r["protocol"] == ""} == {"automatic"}
    first = [r for r in rows if r["protocol"] == "cvpr25" and r["clicks"] == "1"]
    paper = [r for r in rows if r["protocol"] == "paper" and r["clicks"] == "1"]
    assert [float(r["nsd"]) for r in first] != [float(r["nsd"]) for r in paper]  # 2 mm vs the configured 1 mm


def test_demo_table_reports_both_protocols(evaluated, capsys):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "demo_table", Path(__file__).resolve().parents[1] / "tools" / "demo_table.py"
    )
    demo_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo_table)
    saved = evaluated.folder / "table.md"
    assert (
        demo_table.main(
            [str(evaluated.folder / "metrics.json"), "--clicks", "1", "5", "--protocol", "cvpr25", "--save", str(saved)]
        )
        == 0
    )
    text = saved.read_text()
    assert "| cvpr25 DSC 1 click | cvpr25 DSC 5 clicks |" in text
    # organ_a (DSC 0.857 shifted) reaches 0.85 with 1 click, organ_b (0.667) with 2; neither 0.9 before 2
    assert "NoC@85 (3D Dice) 1.500, NoC@90 (3D Dice) 2.000" in text
    summary = json.loads((evaluated.folder / "metrics.json").read_text())
    assert f"DSC_AUC (0-4) {summary['interactive']['cvpr25']['dsc_auc']:.3f}" in text
    assert capsys.readouterr().out.strip() == text.strip()


# ------------------------------------------------------------------------------------------
# montage
# ------------------------------------------------------------------------------------------


def test_montage_draws_each_columns_clicks_on_their_slice(tmp_path, monkeypatch):
    drawn = []
    monkeypatch.setattr(
        visualize,
        "draw_clicks",
        lambda ax, coords, classes, positive, colors: drawn.append(
            (coords.tolist(), classes.tolist(), positive.tolist())
        ),
    )
    _, label = organ_phantom((6, 48, 40))
    image = np.zeros(label.shape, np.uint8)
    clicks = [
        Click(0, (3, 18.0, 14.0), "working", True),
        Click(1, (3, 30, 28), "working", False),
        Click(1, (0, 5, 5), "working", True),
    ]  # slice 0 holds no foreground: not drawn
    columns = [("ground truth", label, []), ("after", label, clicks)]
    visualize.save_montage(str(tmp_path / "m.png"), image, columns, ["a", "b"], "t", num_slices=6)
    assert drawn == [([[18.0, 14.0], [30, 28]], [0, 1], [True, False])]
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="frame"):
        visualize.save_montage(
            str(tmp_path / "m.png"), image, [("x", label, [Click(0, (1, 2, 3), "ijk")])], ["a", "b"], "t"
        )
