"""train_net.py end to end on the CPU: a few iterations, checkpoint, resume, two gloo processes, errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SMALL = ["INPUT.VOLUME.CROP_SIZE", "(64, 64)", "SOLVER.IMS_PER_BATCH", "2", "MODEL.S2VNET.TRAIN_NUM_POINTS", "512",
         "MODEL.S2VNET.CENTROIDS_PER_CLASS", "2"]


def run_train(tmp_path: Path, demo_root: Path, *args: str, threads: int = 2) -> subprocess.CompletedProcess:
    env = dict(os.environ, S2VNET_DEMO_DATA=str(demo_root), OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, str(REPO / "train_net.py"), "--config-file", str(REPO / "configs/demo/s2vnet_r18_demo.yaml"),
           *args, "OUTPUT_DIR", str(tmp_path / "out"), "INPUT.VOLUME.CACHE_DIR", str(tmp_path / "cache"), *SMALL]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)


def iterations(out: Path) -> list[int]:
    return [json.loads(line)["iteration"] for line in (out / "metrics.json").read_text().splitlines() if line.strip()]


@pytest.fixture
def demo_root(demo_reference_files) -> Path:
    return demo_reference_files.parent


def test_trains_checkpoints_and_resumes(tmp_path, demo_root):
    first = run_train(tmp_path, demo_root, "SOLVER.MAX_ITER", "4", "SOLVER.CHECKPOINT_PERIOD", "2")
    assert first.returncode == 0, first.stderr[-3000:]
    out = tmp_path / "out"
    assert (out / "model_final.pth").exists() and (out / "model_0000001.pth").exists()
    assert (out / "last_checkpoint").read_text().strip() == "model_final.pth"
    assert iterations(out)[-1] == 3
    assert list(out.glob("events.out.tfevents.*"))  # TensorBoard metrics

    second = run_train(tmp_path, demo_root, "--resume", "SOLVER.MAX_ITER", "6", "SOLVER.CHECKPOINT_PERIOD", "2")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Starting training from iteration 4" in (out / "log.txt").read_text()
    assert iterations(out)[-1] == 5


def test_two_process_gloo_training(tmp_path, demo_root):
    result = run_train(tmp_path, demo_root, "--num-gpus", "2", "SOLVER.MAX_ITER", "2", threads=1)
    assert result.returncode == 0, result.stderr[-3000:]
    log = (tmp_path / "out" / "log.txt").read_text()
    assert "World size: 2" in log
    assert (tmp_path / "out" / "model_final.pth").exists()


def test_eval_only_says_it_is_not_available(tmp_path, demo_root):
    result = run_train(tmp_path, demo_root, "--eval-only")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error:") and "not available yet" in result.stderr
    assert "Traceback" not in result.stderr


def test_class_count_mismatch_is_a_one_line_error(tmp_path, demo_root):
    result = run_train(tmp_path, demo_root, "MODEL.S2VNET.NUM_CLASSES", "3")
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: demo_ct_train: has classes") and "Traceback" not in result.stderr
