"""The paper configs (Swin-B) run end to end on the CPU, on small synthetic datasets in the public folder layouts.

BTCV is covered fully with ``configs/btcv/s2vnet_swinb.yaml`` as it is, only the crop (64 x 64), the iteration
count and the batch size overridden, and the backbone trained from scratch: slice cache, one iteration with a
checkpoint, ``--resume`` for a second, and ``--eval-only`` on ``btcv_val`` with the config's own click protocols
(its slices are 48 x 56, so ``INPUT.VOLUME.TEST_RESIZE`` resizes them to 64 x 64 and the predictions must come
back on their grid). The training runs skip the end-of-training evaluation (``DATASETS.TEST ()``), which
``--eval-only`` covers. A Swin-B iteration of the paper recipe costs about 30 s of CPU on 2 cores (deep
supervision of 260 queries on 12544 points), so WORD and AMOS MRI get a lighter check, in one process: their
config's classes against the catalog, the slice cache on their layout, the Swin-B model built from the config,
and an automatic evaluation whose predictions land on the input grid. Bad data and a missing pretrained file
are refused in one line.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "projects" / "S2VNet"))

from repro.synthetic import write_synthetic  # noqa: E402

pytestmark = pytest.mark.timeout(900)  # a Swin-B process on 2 loaded cores
SMALL = ["INPUT.VOLUME.CROP_SIZE", "(64, 64)", "SOLVER.IMS_PER_BATCH", "1", "MODEL.SWIN_TIMM.PRETRAINED", "scratch"]
TRAIN_SHAPE, TEST_SHAPE = (6, 48, 56), (2, 48, 56)
BTCV = "configs/btcv/s2vnet_swinb.yaml"


def make_root(root: Path, layout: str, test_split: str) -> Path:
    """Two training cases and one evaluation case of ``layout`` under ``root``."""
    write_synthetic(layout, root, {"train": 2}, TRAIN_SHAPE, seed=0)
    write_synthetic(layout, root, {test_split: 1}, TEST_SHAPE, seed=1)
    return root


def train_net(root: Path, config: str, out: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DETECTRON2_DATASETS=str(root), OMP_NUM_THREADS="2")
    cmd = [
        sys.executable,
        str(REPO / "train_net.py"),
        "--config-file",
        str(REPO / config),
        *args,
        "OUTPUT_DIR",
        str(out),
        "INPUT.VOLUME.CACHE_DIR",
        str(out.parent / "cache"),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=out.parent, env=env, timeout=900)


def iterations(out: Path) -> list[int]:
    rows = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines() if line.strip()]
    return [r["iteration"] for r in rows if "total_loss" in r]


def last_line(result: subprocess.CompletedProcess) -> str:
    return result.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def btcv(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """The BTCV config trained one iteration: (data root, output folder, the run)."""
    base = tmp_path_factory.mktemp("btcv")
    root, out = make_root(base / "data", "btcv", "val"), base / "out"
    return root, out, train_net(root, BTCV, out, *SMALL, "SOLVER.MAX_ITER", "1", "DATASETS.TEST", "()")


def test_btcv_config_builds_the_cache_and_trains_with_a_checkpoint(btcv):
    root, out, first = btcv
    assert first.returncode == 0, first.stderr[-3000:]
    assert (out / "model_final.pth").is_file() and iterations(out) == [0]
    manifest = json.loads((out.parent / "cache" / "btcv_train" / "manifest.json").read_text())
    assert set(manifest["cases"]) == {"img0001", "img0002"}
    assert "PRETRAINED: scratch" in (out / "config.yaml").read_text()  # the saved config keeps the user's value


def test_btcv_config_resumes(btcv):
    root, out, _ = btcv
    again = train_net(root, BTCV, out, "--resume", *SMALL, "SOLVER.MAX_ITER", "2", "DATASETS.TEST", "()")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Starting training from iteration 1" in (out / "log.txt").read_text() and iterations(out)[-1] == 1


def test_btcv_config_evaluates_on_the_input_grid(btcv):
    root, out, _ = btcv
    evaluated = train_net(root, BTCV, out, "--eval-only", *SMALL, "MODEL.WEIGHTS", str(out / "model_final.pth"))
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    folder = out / "inference" / "btcv_val"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["interactive"]["paper"]["clicks"] == list(range(1, 16))  # the config's 15 rounds
    assert metrics["interactive"]["cvpr25"]["clicks"] == [1, 2, 3, 4, 5]
    prediction = sitk.ReadImage(str(folder / "img0035_automatic.nii.gz"))
    label = sitk.ReadImage(str(root / "btcv" / "RawData" / "Training" / "label" / "label0035.nii.gz"))
    assert prediction.GetSize() == label.GetSize() == (56, 48, 2)  # resized to 64 x 64 and back
    assert prediction.GetDirection() == label.GetDirection()


def load_train_net():
    spec = importlib.util.spec_from_file_location("train_net", REPO / "train_net.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "config, layout, split",
    [
        ("configs/word/s2vnet_swinb.yaml", "word", "test"),
        ("configs/amos/s2vnet_swinb_mri.yaml", "amos_mri", "val"),
    ],
    ids=["word", "amos_mri"],
)
def test_paper_config_fits_its_layout_and_evaluates(tmp_path, monkeypatch, config, layout, split):
    """The lighter check: classes, slice cache, the Swin-B model of the config, an automatic evaluation."""
    from detectron2.modeling import build_model

    from s2vnet.config import setup_cfg
    from s2vnet.data.slice_cache import cached_dataset_dicts
    from s2vnet.evaluation.runner import evaluate_dataset
    from s2vnet.pretrained import check_pretrained

    root = make_root(tmp_path / "data", layout, split)
    monkeypatch.setenv("DETECTRON2_DATASETS", str(root))
    cfg = setup_cfg(
        str(REPO / config),
        SMALL
        + ["INPUT.VOLUME.CACHE_DIR", str(tmp_path / "cache"), "TEST.S2VNET.MODE", "automatic", "MODEL.DEVICE", "cpu"],
    )
    check_pretrained(cfg, training=True)
    load_train_net().check_classes(cfg)
    assert len(cached_dataset_dicts(cfg, cfg.DATASETS.TRAIN, progress=False)) == 2
    model = build_model(cfg)
    test_name = cfg.DATASETS.TEST[0]
    evaluate_dataset(cfg, model, test_name, tmp_path / "eval")
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert len(metrics["automatic"]["per_class"]) == cfg.MODEL.S2VNET.NUM_CLASSES
    (prediction,) = (tmp_path / "eval").glob("*_automatic.nii.gz")
    assert sitk.ReadImage(str(prediction)).GetSize() == (56, 48, 2)


def test_swin_training_without_pretrained_weights_is_refused(tmp_path):
    root = make_root(tmp_path / "data", "btcv", "val")
    result = train_net(root, BTCV, tmp_path / "out", "SOLVER.MAX_ITER", "1")
    assert result.returncode == 2
    assert last_line(result).startswith(
        "error: MODEL.SWIN_TIMM.PRETRAINED: no pretrained backbone weights given: download Swin-B ImageNet-22k weights"
    )
    assert "Traceback" not in result.stderr


def test_training_refuses_a_label_outside_the_class_list(tmp_path):
    root = make_root(tmp_path / "data", "btcv", "val")
    path = root / "btcv" / "RawData" / "Training" / "label" / "label0002.nii.gz"
    label = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(label)
    array[0, 0, 0] = 20
    bad = sitk.GetImageFromArray(array.astype(np.uint8))
    bad.CopyInformation(label)
    sitk.WriteImage(bad, str(path))
    result = train_net(root, BTCV, tmp_path / "out", *SMALL, "SOLVER.MAX_ITER", "1")
    assert result.returncode == 2
    assert (
        last_line(result)
        == f"error: {path}: label values [20] are not in the class list (ids {', '.join(map(str, range(14)))})"
    )
