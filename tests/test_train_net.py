"""train_net.py end to end on the CPU: a few iterations, checkpoint, resume, two gloo processes, errors."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
from detectron2.evaluation import DatasetEvaluator

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "configs/demo/s2vnet_r18_demo.yaml"
SMALL = [
    "INPUT.VOLUME.CROP_SIZE",
    "(64, 64)",
    "SOLVER.IMS_PER_BATCH",
    "2",
    "MODEL.S2VNET.TRAIN_NUM_POINTS",
    "512",
    "MODEL.S2VNET.CENTROIDS_PER_CLASS",
    "2",
]


def run_train(tmp_path: Path, demo_root: Path, *args: str, threads: int = 2) -> subprocess.CompletedProcess:
    env = dict(os.environ, S2VNET_DEMO_DATA=str(demo_root), OMP_NUM_THREADS=str(threads))
    cmd = [
        sys.executable,
        str(REPO / "train_net.py"),
        "--config-file",
        str(DEMO_CONFIG),
        *args,
        "OUTPUT_DIR",
        str(tmp_path / "out"),
        "INPUT.VOLUME.CACHE_DIR",
        str(tmp_path / "cache"),
        *SMALL,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)


def iterations(out: Path) -> list[int]:
    """Iterations with training losses in Detectron2's metrics.json."""
    rows = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines() if line.strip()]
    return [r["iteration"] for r in rows if "total_loss" in r]


def load_train_net() -> types.ModuleType:
    """``train_net.py`` (a script, not a package module) loaded as a module."""
    spec = importlib.util.spec_from_file_location("train_net", REPO / "train_net.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def demo_root(demo_reference_files) -> Path:
    return demo_reference_files.parent


def test_trains_checkpoints_and_resumes(tmp_path, demo_root):
    first = run_train(
        tmp_path, demo_root, "SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "2", "DATASETS.TEST", "()"
    )
    assert first.returncode == 0, first.stderr[-3000:]
    out = tmp_path / "out"
    assert (out / "model_final.pth").exists() and (out / "model_0000001.pth").exists()
    assert (out / "last_checkpoint").read_text().strip() == "model_final.pth"
    assert iterations(out)[-1] == 3
    assert list(out.glob("events.out.tfevents.*"))  # TensorBoard metrics

    second = run_train(
        tmp_path, demo_root, "--resume", "SOLVER.MAX_ITER", "6", "SOLVER.CHECKPOINT_PERIOD", "2", "DATASETS.TEST", "()"
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Starting training from iteration 4" in (out / "log.txt").read_text()
    assert iterations(out)[-1] == 5


def test_two_process_gloo_training(tmp_path, demo_root):
    result = run_train(tmp_path, demo_root, "--num-gpus", "2", "SOLVER.MAX_ITER", "2", "DATASETS.TEST", "()", threads=1)
    assert result.returncode == 0, result.stderr[-3000:]
    log = (tmp_path / "out" / "log.txt").read_text()
    assert "World size: 2" in log
    assert (tmp_path / "out" / "model_final.pth").exists()


def test_training_ends_with_evaluation_and_eval_only_reproduces_it(tmp_path, demo_root):
    quick = ("TEST.S2VNET.ROUNDS", "2")
    trained = run_train(tmp_path, demo_root, "SOLVER.MAX_ITER", "2", *quick)
    assert trained.returncode == 0, trained.stderr[-3000:]
    folder = tmp_path / "out" / "inference" / "demo_ct_test"
    after_training = json.loads((folder / "metrics.json").read_text())
    assert {"automatic", "interactive"} <= set(after_training) and after_training["interactive"]["paper"]["clicks"] == [
        1,
        2,
    ]
    assert after_training["interactive"]["cvpr25"]["clicks"] == [1, 2, 3, 4, 5]
    for name in (
        "per_case.csv",
        "dice_vs_clicks.png",
        "example_ct_dicom_automatic.nii.gz",
        "example_ct_dicom_paper_clicks2.nii.gz",
        "example_ct_dicom_cvpr25_clicks5.nii.gz",
        "example_ct_dicom_montage.png",
    ):
        assert (folder / name).exists(), name
    (folder / "metrics.json").unlink()
    again = run_train(
        tmp_path, demo_root, "--eval-only", "MODEL.WEIGHTS", str(tmp_path / "out" / "model_final.pth"), *quick
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((folder / "metrics.json").read_text()) == after_training


def test_eval_only_with_missing_weights_is_a_one_line_error(tmp_path, demo_root):
    result = run_train(tmp_path, demo_root, "--eval-only", "MODEL.WEIGHTS", str(tmp_path / "missing.pth"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'missing.pth'}: no such weights file"


def test_class_count_mismatch_is_a_one_line_error(tmp_path, demo_root):
    result = run_train(tmp_path, demo_root, "MODEL.S2VNET.NUM_CLASSES", "3")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: demo_ct_train: has classes") and "Traceback" not in result.stderr


def test_reference_world_size_rescales_the_schedule(tmp_path, demo_root):
    """REFERENCE_WORLD_SIZE 2 on one process: half the batch, twice the iterations (auto_scale_workers)."""
    result = run_train(
        tmp_path, demo_root, "SOLVER.REFERENCE_WORLD_SIZE", "2", "SOLVER.MAX_ITER", "2", "DATASETS.TEST", "()"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Auto-scaling the config to batch_size=1" in (tmp_path / "out" / "log.txt").read_text()
    assert iterations(tmp_path / "out")[-1] == 3


def check_trainer_ddp(opts: list[str]) -> None:
    """Runs in each of two gloo processes: the Trainer's DDP and AMP follow the config on the CPU."""
    from detectron2.engine import SimpleTrainer
    from torch.nn.parallel import DistributedDataParallel

    from s2vnet.config import setup_cfg

    trainer = load_train_net().Trainer(setup_cfg(str(DEMO_CONFIG), opts))
    assert isinstance(trainer.model, DistributedDataParallel)
    assert trainer.model.find_unused_parameters is False and trainer.model.device_ids is None
    assert type(trainer._trainer) is SimpleTrainer  # SOLVER.AMP.ENABLED is ignored on the CPU


def test_find_unused_parameters_and_amp_reach_the_two_process_trainer(tmp_path, demo_root, monkeypatch):
    from detectron2.engine import launch

    monkeypatch.setenv("S2VNET_DEMO_DATA", str(demo_root))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    opts = [
        "MODEL.S2VNET.FIND_UNUSED_PARAMETERS",
        "False",
        "SOLVER.AMP.ENABLED",
        "True",
        "OUTPUT_DIR",
        str(tmp_path / "out"),
        "INPUT.VOLUME.CACHE_DIR",
        str(tmp_path / "cache"),
        *SMALL,
    ]
    launch(check_trainer_ddp, 2, dist_url="auto", args=(opts,))  # a failed check in a worker raises here


class RecordingEvaluator(DatasetEvaluator):
    """Keeps the case ids and output keys it is given."""

    def __init__(self) -> None:
        self.outputs: list[tuple[str, set]] = []

    def reset(self) -> None:
        self.outputs = []

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        self.outputs += [(record["case_id"], set(output)) for record, output in zip(inputs, outputs)]

    def evaluate(self) -> dict:
        return {"recorded": {"cases": float(len(self.outputs))}}


def test_test_runs_the_given_evaluators(tmp_path, demo_root, monkeypatch):
    from s2vnet.config import setup_cfg

    monkeypatch.setenv("S2VNET_DEMO_DATA", str(demo_root))
    trainer_cls = load_train_net().Trainer
    cfg = setup_cfg(
        str(DEMO_CONFIG),
        [
            "TEST.S2VNET.MODE",
            "automatic",
            "TEST.S2VNET.SAVE_PREDICTIONS",
            "False",
            "OUTPUT_DIR",
            str(tmp_path / "out"),
            *SMALL,
        ],
    )
    model = trainer_cls.build_model(cfg)
    recording = RecordingEvaluator()
    with pytest.raises(ValueError, match="2 evaluators for 1 datasets"):
        trainer_cls.test(cfg, model, [recording, recording])
    results = trainer_cls.test(cfg, model, [recording])
    assert results == {"demo_ct_test": {"recorded": {"cases": 1.0}}}
    assert recording.outputs == [("example_ct_dicom", {"automatic", "protocols"})]
    assert not (tmp_path / "out" / "inference").exists()  # the default evaluator, which writes there, did not run
