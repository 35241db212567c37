"""CLI output is one line, and a killed run leaves nothing half-written (issue #12 items 10 and 11)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from synthetic import REPO, TempDatasets, make_cases

from s2vnet.utils.atomic import atomic_write, remove_leftovers
from s2vnet.utils.checkpointer import AtomicCheckpointer

JIT_NOTICE = "`torch.jit.script` is deprecated"


def _python(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="2", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


# ---------------------------------------------------------------- 10. one line


OTHER_WARNINGS = textwrap.dedent("""
    import warnings
    import s2vnet
    warnings.warn_explicit(
        "`torch.jit.script` is deprecated. Again.", FutureWarning, "_script.py", 1, module="torch.jit._script"
    )
    warnings.warn_explicit("`torch.jit.trace` changes", FutureWarning, "_script.py", 2, module="torch.jit._script")
    warnings.warn_explicit("`torch.jit.script` is deprecated", FutureWarning, "mine.py", 3, module="mypackage")
""")


def test_importing_s2vnet_prints_nothing_and_only_the_jit_notice_is_silenced(tmp_path):
    result = _python("-c", OTHER_WARNINGS, cwd=tmp_path)  # outside pytest, whose own filters would hide them
    assert result.returncode == 0
    assert result.stderr.splitlines() == [  # nothing from the import itself
        "_script.py:2: FutureWarning: `torch.jit.trace` changes",
        "mine.py:3: FutureWarning: `torch.jit.script` is deprecated",
    ]


def test_a_cli_error_is_the_only_line_on_stderr(tmp_path):
    result = _python(
        "-m",
        "s2vnet.predict",
        "--config-file",
        "missing.yaml",
        "--weights",
        "w.pth",
        "--input",
        "x.nii.gz",
        "--output",
        "seg.nii.gz",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["error: missing.yaml: no such config file"]


def test_train_net_config_error_is_one_line(tmp_path):
    (tmp_path / "bad.yaml").write_text("MODEL:\n  DEVICE: [cpu\n")
    result = _python(str(REPO / "train_net.py"), "--config-file", "bad.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: bad.yaml: is not valid YAML at line 3, column 1: expected ',' or ']', but got '<stream end>'"
    ]


# ---------------------------------------------------------------- 11. atomic writes and leftovers


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = atomic_write(tmp_path / "f.bin", lambda h: h.write(b"old"))

    def crash(handle):
        handle.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, crash)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def _checkpointer(folder: Path) -> AtomicCheckpointer:
    torch.manual_seed(0)
    return AtomicCheckpointer(torch.nn.Linear(3, 2), str(folder))


def test_a_failed_save_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    checkpointer = _checkpointer(tmp_path)
    checkpointer.save("model_0000001", iteration=1)
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    import s2vnet.utils.checkpointer as module

    def crash(data, handle):
        handle.write(b"\x80partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(module.torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        checkpointer.save("model_0000002", iteration=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_0000001.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    assert checkpointer.resume_or_load("", resume=True)["iteration"] == 1


KILLED_SAVE = textwrap.dedent("""
    import os, signal, sys
    import torch
    import s2vnet.utils.checkpointer as module

    torch.manual_seed(0)
    checkpointer = module.AtomicCheckpointer(torch.nn.Linear(3, 2), sys.argv[1])
    checkpointer.save("model_0000001", iteration=1)

    def killed(data, handle):
        handle.write(b"\\x80partial")
        handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    module.torch.save = killed
    checkpointer.save("model_0000002", iteration=2)
""")


def test_kill_during_a_save_leaves_only_a_temporary_file_which_the_next_start_removes(tmp_path):
    out = tmp_path / "out"
    result = _python("-c", KILLED_SAVE, str(out), cwd=tmp_path)
    assert result.returncode == -9, result.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names[1:] == ["last_checkpoint", "model_0000001.pth"]  # no zero-byte model_0000002.pth
    assert names[0].startswith(".tmp-") and names[0].endswith("-model_0000002.pth")
    assert [p.name for p in remove_leftovers(out)] == [names[0]]
    assert _checkpointer(out).resume_or_load("", resume=True)["iteration"] == 1


def test_remove_leftovers_takes_only_temporary_files(tmp_path):
    (tmp_path / "inference" / "ds").mkdir(parents=True)
    keep = [tmp_path / "model_final.pth", tmp_path / "inference" / "ds" / "metrics.json", tmp_path / "tmp-notes.txt"]
    drop = [tmp_path / ".tmp-1a2b3c4d-model_0000499.pth", tmp_path / "inference" / "ds" / ".tmp-per_case.csv"]
    for path in keep + drop:
        path.write_bytes(b"x")
    assert remove_leftovers(tmp_path, recursive=False) == [drop[0]]
    assert remove_leftovers(tmp_path) == [drop[1]]
    assert all(p.exists() for p in keep) and not any(p.exists() for p in drop)
    assert remove_leftovers(tmp_path / "missing") == []


def test_the_slice_cache_cli_removes_a_killed_builds_leftovers(tmp_path):
    from s2vnet.data.slice_cache import main

    registry = TempDatasets()
    try:
        name = registry.register(make_cases(tmp_path / "src", count=1, shape=(3, 16, 16)))
        orphan = tmp_path / "cache" / name / "case0_img" / ".tmp-0123abcd.npy"
        orphan.parent.mkdir(parents=True)
        orphan.write_bytes(b"")
        assert main(["--dataset", name, "INPUT.VOLUME.CACHE_DIR", str(tmp_path / "cache")]) == 0
    finally:
        registry.close()
    assert not orphan.exists() and (orphan.parent / "image.npy").exists()


def test_the_trainer_saves_through_the_atomic_checkpointer(tmp_path, demo_reference_files, monkeypatch):
    import importlib.util

    from detectron2.engine.hooks import PeriodicCheckpointer

    from s2vnet.config import setup_cfg

    monkeypatch.setenv("S2VNET_DEMO_DATA", str(demo_reference_files.parent))
    spec = importlib.util.spec_from_file_location("train_net", REPO / "train_net.py")
    train_net = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_net)
    cfg = setup_cfg(
        str(REPO / "configs/demo/s2vnet_r18_demo.yaml"),
        [
            "OUTPUT_DIR",
            str(tmp_path / "out"),
            "INPUT.VOLUME.CACHE_DIR",
            str(tmp_path / "cache"),
            "DATASETS.TEST",
            "()",
            "INPUT.VOLUME.CROP_SIZE",
            "(64, 64)",
            "MODEL.S2VNET.CENTROIDS_PER_CLASS",
            "2",
        ],
    )
    trainer = train_net.Trainer(cfg)
    assert isinstance(trainer.checkpointer, AtomicCheckpointer)
    periodic = [h for h in trainer._hooks if isinstance(h, PeriodicCheckpointer)]
    assert periodic and periodic[0].checkpointer is trainer.checkpointer


def test_train_net_removes_leftovers_in_its_output_dir(tmp_path, demo_reference_files):
    out = tmp_path / "out"
    leftovers = [out / ".tmp-1a2b3c4d-model_0000001.pth", out / "inference" / "demo_ct_test" / ".tmp-metrics.json"]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    env_root = str(demo_reference_files.parent)
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "train_net.py"),
            "--config-file",
            str(REPO / "configs/demo/s2vnet_r18_demo.yaml"),
            "SOLVER.MAX_ITER",
            "1",
            "DATASETS.TEST",
            "()",
            "OUTPUT_DIR",
            str(out),
            "INPUT.VOLUME.CACHE_DIR",
            str(tmp_path / "cache"),
            "INPUT.VOLUME.CROP_SIZE",
            "(64, 64)",
            "SOLVER.IMS_PER_BATCH",
            "1",
            "MODEL.S2VNET.TRAIN_NUM_POINTS",
            "512",
            "MODEL.S2VNET.CENTROIDS_PER_CLASS",
            "2",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
        env=dict(os.environ, S2VNET_DEMO_DATA=env_root, OMP_NUM_THREADS="2", PYTHONPATH=str(REPO)),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert not any(p.exists() for p in leftovers)
    assert (out / "model_final.pth").stat().st_size > 0 and JIT_NOTICE not in result.stderr
