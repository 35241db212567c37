"""projects/S2VNet/reproduce.py: data checks, tables from metrics files, missing runs, the kit end to end (--tiny)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
KIT = REPO / "projects" / "S2VNet"
sys.path.insert(0, str(KIT))

from repro import paper  # noqa: E402
from repro.runs import Kit, run_missing  # noqa: E402
from repro.synthetic import write_synthetic  # noqa: E402


def load_kit():
    spec = importlib.util.spec_from_file_location("reproduce", KIT / "reproduce.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["reproduce"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def kit():
    return load_kit()


# ---------------------------------------------------------------- check-data


@pytest.fixture
def btcv_root(tmp_path, monkeypatch) -> Path:
    """The paper's BTCV split (24 + 6 cases) as tiny synthetic volumes, where the catalog looks."""
    root = tmp_path / "datasets"
    write_synthetic("btcv", root, {"train": 24, "val": 6}, shape=(2, 16, 16))
    monkeypatch.setenv("DETECTRON2_DATASETS", str(root))
    return root / "btcv" / "RawData" / "Training"


def test_check_data_passes_the_papers_split(kit, btcv_root, tmp_path, capsys):
    assert kit.main(["check-data", "btcv", "--results", str(tmp_path / "out")]) == 0
    report = (tmp_path / "out" / "check_data_btcv.md").read_text()
    assert "| btcv_train | 24 | 24 | 2 | 16 x 16 | 2.5 | 0.8, 0.8 | RAS 24 |" in report
    assert "| btcv_val | 6 | 6 |" in report and "## Problems (0)" in report
    assert capsys.readouterr().err == ""


def _rewrite_label(path: Path, change) -> None:
    label = sitk.ReadImage(str(path))
    out = change(label)
    sitk.WriteImage(out, str(path))


def test_check_data_names_each_problem(kit, btcv_root, tmp_path, capsys):
    (btcv_root / "img" / "img0010.nii.gz").unlink()
    (btcv_root / "label" / "label0010.nii.gz").unlink()
    (btcv_root / "label" / "label0004.nii.gz").unlink()

    def outside(label):
        array = sitk.GetArrayFromImage(label)
        array[0, 0, 0] = 20
        out = sitk.GetImageFromArray(array)
        out.CopyInformation(label)
        return out

    def respaced(label):
        label.SetSpacing((1.0, 1.0, 2.5))
        return label

    _rewrite_label(btcv_root / "label" / "label0002.nii.gz", outside)
    _rewrite_label(btcv_root / "label" / "label0005.nii.gz", respaced)
    assert kit.main(["check-data", "btcv", "--results", str(tmp_path / "out")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors == [
        "error: btcv_train: 23 cases, the paper's split has 24",
        f"error: {btcv_root / 'label' / 'label0002.nii.gz'}: label ids [20] are not in the class list "
        f"(ids {list(range(14))})",
        f"error: {btcv_root / 'label' / 'label0004.nii.gz'}: missing (label of case img0004.nii.gz)",
        f"error: {btcv_root / 'label' / 'label0005.nii.gz'}: not on its image's grid: "
        "spacing (z, y, x) (2.5, 1, 1) != (2.5, 0.8, 0.8)",
    ]
    assert "## Problems (4)" in (tmp_path / "out" / "check_data_btcv.md").read_text()


# ---------------------------------------------------------------- tables from metrics files


def metrics(per_class: dict[str, float], clicks: int = 3) -> dict:
    """A metrics.json with the given per-class DSC (HD95 = 10 * DSC, NSD = DSC / 2) for both settings."""
    scores = {c: {"dice": d, "hd95": 10 * d, "nsd": d / 2} for c, d in per_class.items()}
    pooled = {"dice": 0.0, "hd95": 0.0, "nsd": 0.0}  # never read: the kit averages the classes itself
    rounds = {
        str(k): {
            "mean": pooled,
            "per_class": {c: {m: v * (1 + k / 100) for m, v in s.items()} for c, s in scores.items()},
        }
        for k in range(1, clicks + 1)
    }
    return {
        "automatic": {"mean": pooled, "per_class": scores},
        "interactive": {"paper": {"clicks": list(range(1, clicks + 1)), "per_click": rounds}},
    }


def place(results: Path, evaluation: str, test: str, content: dict) -> None:
    path = results / "evals" / evaluation / "inference" / test / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))


def test_word_table_puts_the_paper_next_to_the_run(kit, tmp_path):
    dice = {c: 0.5 + 0.01 * i for i, c in enumerate(paper.WORD_COLUMNS)}
    dice["adrenal"] = float("nan")  # absent from every case: left out of the means
    for setting in ("automatic", "interactive"):
        place(tmp_path, f"word_full_{setting}", "word_test", metrics(dice))
    assert kit.main(["table", "word", "--results", str(tmp_path)]) == 0
    text = (tmp_path / "table_word.md").read_text()
    mean = np.mean([v for v in dice.values() if v == v])
    assert "| automatic | Table 1, S2VNet, automatic setup | 4.64 | 87.36 | - | 96.72 | 96.01 |" in text
    assert f"| automatic | this run | {10 * mean:.2f} | {100 * mean:.2f} | {50 * mean:.2f} | 50.00 | 51.00 |" in text
    assert f"| interactive (3 clicks/class) | this run | {10.3 * mean:.2f} | {103 * mean:.2f} |" in text
    assert "word_metrics_computing.py" in text


def test_paper_means_are_class_means():
    for key in (("word", "automatic"), ("word", "interactive")):
        row = paper.TABLES[key]
        assert np.mean(list(row.per_class.values())) == pytest.approx(row.mean["dice"], abs=0.005)


def test_amos_table_averages_ct_and_mri(kit, tmp_path):
    for part, value in (("amos_ct", 0.8), ("amos_mri", 0.6)):
        for setting in ("automatic", "interactive"):
            place(tmp_path, f"{part}_full_{setting}", f"{part}_val", metrics({"spleen": value, "liver": value}))
    assert kit.main(["table", "amos", "--results", str(tmp_path)]) == 0
    text = (tmp_path / "table_amos.md").read_text()
    assert "| automatic | Table 3, S2VNet, automatic | 87.80 | 82.89 | 84.64 | 71.57 | 86.22 | 77.23 |" in text
    assert "| automatic | this run | 80.00 | 40.00 | 60.00 | 30.00 | 70.00 | 35.00 |" in text


def test_a_missing_run_is_one_line_naming_it(kit, tmp_path, capsys):
    place(tmp_path, "btcv_full_automatic", "btcv_val", metrics({"spleen": 0.9}))
    assert kit.main(["table", "btcv", "--results", str(tmp_path)]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    expected = tmp_path / "evals" / "btcv_full_interactive" / "inference" / "btcv_val" / "metrics.json"
    assert errors == [
        f"error: {expected}: missing run 'btcv_full_interactive' (btcv full model, interactive "
        "(btcv_val)); model btcv_full is not trained either; add --run to make it"
    ]
    assert not (tmp_path / "table_btcv.md").exists()


# ---------------------------------------------------------------- the kit end to end (--tiny)


def copy_model(results: Path, source: str, *targets: str) -> None:
    """Give ``targets`` the trained ``source`` model (the same parameters: switches that change no module)."""
    for target in targets:
        folder = results / "models" / target
        folder.mkdir(parents=True)
        for name in ("model_final.pth", "log.txt"):
            shutil.copy(results / "models" / source / name, folder / name)


@pytest.mark.timeout(900)  # 2 trainings and 10 evaluations, each its own process (about 3 minutes on 2 idle cores)
def test_tiny_kit_end_to_end(kit, tmp_path, demo_reference_files, monkeypatch, capsys):
    """Every result command with --run on two trained models: the full one, reused where the switches change no
    module (no adaptive sampling, automatic-only, interactive-only), and one without aggregation for Table 4."""
    monkeypatch.setenv("S2VNET_DEMO_DATA", str(demo_reference_files.parent))
    results = tmp_path / "results"
    sets = [
        "SOLVER.MAX_ITER",
        "2",
        "TEST.S2VNET.ROUNDS",
        "1",
        "INPUT.VOLUME.CROP_SIZE",
        "(64, 64)",
        "MODEL.S2VNET.TRAIN_NUM_POINTS",
        "512",
        "INPUT.VOLUME.CACHE_DIR",
        str(tmp_path / "cache"),
    ]
    common = ["--tiny", "--run", "--results", str(results)] + [
        a for i in range(0, len(sets), 2) for a in ("--set", sets[i], sets[i + 1])
    ]
    assert kit.main(["table", "word", *common]) == 0
    assert "| automatic | this run |" in (results / "table_word.md").read_text()

    copy_model(results, "word_full", "word_no_adaptive", "word_automatic_only", "word_interactive_only")
    assert kit.main(["convergence", *common]) == 0
    assert (results / "convergence.png").read_bytes()[:4] == b"\x89PNG"
    assert kit.main(["unified", *common]) == 0
    unified = (results / "unified.md").read_text()
    assert "| universal | word_full |" in unified and "| task-specific pair (sum) |" in unified

    import repro.ablation as ablation
    from repro.datasets import single_part

    rows = ablation.rows(single_part("word", tiny=True))
    run_missing(Kit(results, extra=tuple(sets)), [rows[1].evaluation])  # trains word_no_aggregation
    copy_model(results, "word_no_aggregation", "word_no_propagation", "word_no_aggregation_no_adaptive")
    assert kit.main(["ablation", *common]) == 0
    table4 = (results / "ablation.md").read_text()
    assert table4.count("| word_full |") == 2 and table4.count("| word_no_aggregation |") == 2
    out = capsys.readouterr().out
    assert "evaluating word_no_propagation_automatic" in out and "training word_no_propagation" not in out


# ---------------------------------------------------------------- helpers of the GPU script


def test_synthetic_data_writes_the_catalogs_layout(kit, tmp_path, monkeypatch):
    from detectron2.data import DatasetCatalog

    assert (
        kit.main(
            [
                "synthetic-data",
                "amos_mri",
                "--root",
                str(tmp_path),
                "--train",
                "1",
                "--val",
                "1",
                "--shape",
                "2",
                "16",
                "16",
            ]
        )
        == 0
    )
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path))
    assert [d["case_id"] for d in DatasetCatalog.get("amos_mri_val")] == ["amos_0501"]
    assert sitk.ReadImage(str(tmp_path / "amos22" / "imagesTr" / "amos_0500.nii.gz")).GetSize() == (16, 16, 2)


def test_training_speed_reads_the_log(kit, tmp_path, capsys):
    (tmp_path / "log.txt").write_text(
        "[12/02 04:15:38 d2.utils.events]:  eta: 0:00:20  iter: 19  total_loss: 9.1  time: 0.8100  max_mem: 30512M\n"
        "[12/02 04:15:58 d2.utils.events]:  eta: 0:00:00  iter: 49  total_loss: 7.3  time: 0.7900  max_mem: 31020M\n"
        "[12/02 04:15:58 d2.engine.hooks]: Overall training speed: 47 iterations in 0:00:37 (0.7921 s / it)\n"
    )
    assert kit.main(["training-speed", str(tmp_path)]) == 0
    expected = {"iterations_timed": 47, "seconds_per_iteration": 0.7921, "peak_memory_mb": 31020}
    assert json.loads((tmp_path / "training_speed.json").read_text()) == expected
    assert json.loads(capsys.readouterr().out) == expected
