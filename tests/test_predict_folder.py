"""The predict CLI's clinical side: DICOM-SEG / Slicer outputs, folder and list runs, statistics, several
processes, output-path checks before any network work, Ctrl-C (s2vnet/predict.py, s2vnet/inference/batch.py).

Runs that need no second process call ``main`` in this process; errors that must come before the model is
built are checked with ``Predictor.from_files`` replaced by a function that fails the test.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
import slicerio
import torch
from dicom_series import write_ct_series
from synthetic import REPO, TINY, organ_phantom, tiny_model, write_image

from s2vnet import predict
from s2vnet.data.volume_io import read_label, read_volume

SHAPE = (5, 64, 64)  # in-plane 2 mm: no resampling; smaller slices are too small for the FPN's group norm
CONFIG = str(REPO / "configs/demo/s2vnet_r18_demo.yaml")


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """tiny.pth, two NIfTI scans, one DICOM series folder, in ``scans/``; a second DICOM series alone."""
    root = tmp_path_factory.mktemp("clinical")
    torch.save({"model": tiny_model().state_dict()}, root / "tiny.pth")
    scans = root / "scans"
    scans.mkdir()
    for i in range(2):
        image, _ = organ_phantom(SHAPE, seed=i)
        write_image(scans / f"ct{i}.nii.gz", image, spacing_zyx=(3.0, 2.0, 2.0))
    hu, _ = organ_phantom(SHAPE, seed=5)
    write_ct_series(scans / "dicom_case", hu, spacing_zyx=(2.5, 2.0, 2.0))
    (scans / "notes.md").write_text("not a scan")
    sagittal, _ = organ_phantom((40, 64, 48), seed=6)
    write_ct_series(root / "dicom_only", sagittal, spacing_zyx=(2.0, 2.0, 2.5), orientation=(0, 1, 0, 0, 0, -1))
    return root


def cli(root: Path, *args: str, weights: str = "tiny.pth", opts: tuple[str, ...] = ()) -> list[str]:
    return ["--config-file", CONFIG, "--weights", str(root / weights), "--device", "cpu", *args, *TINY, *opts]


EVERYWHERE = ("MODEL.S2VNET.FOREGROUND_THRESHOLD", "0.0")  # random weights: every voxel gets its best class


@pytest.fixture
def no_model(monkeypatch):
    """Building the model fails the test: the error under test must come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was built before the error")

    monkeypatch.setattr(predict.Predictor, "__init__", refuse)


def run_error(capsys, argv: list[str]) -> str:
    """Run ``main`` expecting a one-line error and exit status 2; return that line."""
    with pytest.raises(SystemExit) as info:
        predict.main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


# ---------------------------------------------------------------------------------------------- one scan


def test_dicom_input_to_dicom_seg_and_statistics_end_to_end(assets, capsys):
    out = assets / "one"
    assert (
        predict.main(
            cli(
                assets,
                "--input",
                str(assets / "dicom_only"),
                "--output",
                str(out / "SEG.DCM"),
                "--statistics",
                opts=EVERYWHERE,
            )
        )
        == 0
    )
    seg = hd.seg.segread(out / "SEG.DCM")
    volume = read_volume(assets / "dicom_only")
    assert volume.geometry.direction != (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    assert seg.Rows == volume.geometry.shape[1] and seg.Columns == volume.geometry.shape[2]
    names = {s.SegmentLabel for s in seg.SegmentSequence}
    assert names and names <= {"a", "b"}
    rows = list(csv.DictReader(open(out / "SEG_statistics.csv")))
    assert [r["class"] for r in rows] == ["a", "b"] and all(r["case"] == "dicom_only" for r in rows)
    assert not list(out.glob(".tmp-*"))


def test_upper_case_slicer_output_end_to_end(assets):
    out = assets / "upper" / "CASE.SEG.NRRD"
    assert predict.main(cli(assets, "--input", str(assets / "scans" / "ct0.nii.gz"), "--output", str(out))) == 0
    seg = slicerio.read_segmentation(str(out))
    assert [s["name"] for s in seg["segments"]] == ["a", "b"]
    assert seg["voxels"].shape == SHAPE[::-1]


# ---------------------------------------------------------------------------------------------- errors before the model


def _several_series(root: Path) -> Path:
    folder = root / "two_series"
    if not folder.exists():
        write_ct_series(
            folder, np.zeros((2, 8, 8), np.int16), series_uid="1.2.3.4.1", description="first", prefix="first"
        )
        write_ct_series(
            folder, np.zeros((3, 8, 8), np.int16), series_uid="1.2.3.4.2", description="second", prefix="second"
        )
    return folder


def test_bad_outputs_and_inputs_are_one_line_before_the_model(assets, capsys, no_model):
    scan = assets / "scans" / "ct0.nii.gz"
    (assets / "a_file").write_text("x")
    (assets / "a_folder.nii.gz").mkdir(exist_ok=True)
    cases = [
        (["--input", str(scan), "--output", str(assets / "a_file" / "seg.nii.gz")], "a_file is a file, not a folder"),
        (["--input", str(scan), "--output", str(assets / "a_folder.nii.gz")], "is an existing folder"),
        (["--input", str(scan), "--output", str(scan)], "is the input scan"),
        (
            ["--input", str(assets / "dicom_only"), "--output", str(assets / "dicom_only" / "seg.dcm")],
            "lies inside the input folder",
        ),
        (["--input", str(scan), "--output", str(assets / "x.seg.dcm")], "is not a DICOM series"),
        (
            ["--input", str(scan), "--output", str(assets / "x.nii.gz"), "--format", "dicom-seg"],
            "--format dicom-seg writes .seg.dcm or .dcm files",
        ),
        (
            ["--input", str(_several_series(assets)), "--output", str(assets / "x.nii.gz")],
            "holds 2 DICOM series: 'second' 1.2.3.4.2 (3 files), 'first' 1.2.3.4.1 (2 files); choose one with "
            "--dicom-series UID",
        ),
        (["--input", str(assets / "scans"), "--output", str(assets / "a_file")], "is a file; a folder or list"),
        (["--input", str(assets / "scans"), "--output", str(assets / "scans")], "is the input folder"),
        (
            ["--input", str(assets / "scans"), "--output", str(assets / "scans" / "segs")],
            "lies inside the input folder",
        ),
        (["--input", str(assets / "scans"), "--output", str(assets / "o.nii.gz")], "is named like a file"),
        (["--input", str(assets / "scans"), "--output", str(assets / "o"), "--clicks", "c.json"], "--clicks"),
        (["--input", str(scan), "--output", str(assets / "y.nii.gz"), "--num-gpus", "2"], "this is one scan"),
    ]
    for argv, expected in cases:
        line = run_error(capsys, cli(assets, *argv))
        assert expected in line, (argv, line)
    assert not list(assets.rglob(".tmp-*")) and not (assets / "x.seg.dcm").exists()


def test_chosen_series_of_a_several_series_folder_is_read(assets):
    out = assets / "chosen.nii.gz"
    assert (
        predict.main(
            cli(assets, "--input", str(_several_series(assets)), "--output", str(out), "--dicom-series", "1.2.3.4.1")
        )
        == 0
    )
    assert read_label(out).array.shape == (2, 8, 8)


def test_empty_folder_and_unwritable_folder(assets, capsys, no_model):
    empty = assets / "empty"
    empty.mkdir(exist_ok=True)
    (empty / "readme.txt").write_text("no scans")
    line = run_error(capsys, cli(assets, "--input", str(empty), "--output", str(assets / "o")))
    assert line == f"error: {empty}: holds no readable scans (NIfTI / NRRD / MHA files or DICOM series sub-folders)"


def test_read_only_output_folder_is_refused_before_the_model(assets):
    """As root the folder is really writable, so the check then runs as the unprivileged user nobody."""
    base = Path(tempfile.mkdtemp(prefix="s2vnet-ro-"))
    try:
        os.chmod(base, 0o755)
        scan, readonly = base / "ct.nii.gz", base / "readonly"
        shutil.copy(assets / "scans" / "ct0.nii.gz", scan)
        os.chmod(scan, 0o644)
        readonly.mkdir(mode=0o555)
        os.chmod(readonly, 0o555)
        command = [
            sys.executable,
            "-m",
            "s2vnet.predict",
            *cli(base, "--input", str(scan), "--output", str(readonly / "seg.nii.gz"), weights="absent.pth"),
        ]
        if os.geteuid() == 0:
            if shutil.which("setpriv") is None:
                pytest.skip("running as root without setpriv: cannot make a folder read-only for this process")
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        env = dict(
            os.environ,
            HOME=str(base),
            MPLCONFIGDIR=str(base),
            PYTHONDONTWRITEBYTECODE="1",
            PYTHONPATH=os.pathsep.join(
                [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
            ),
        )
        result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=base, timeout=300)
        cannot_import = ("ModuleNotFoundError", "ImportError", "PermissionError: [Errno 13]")
        if os.geteuid() == 0 and result.returncode == 1 and any(e in result.stderr for e in cannot_import):
            pytest.skip(
                "user nobody cannot read this checkout or its environment: " + result.stderr.strip().splitlines()[-1]
            )
        assert result.returncode == 2, result.stderr[-2000:]
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith(
            f"error: {readonly / 'seg.nii.gz'}: cannot be written: folder {readonly} is not writable"
        )
        assert os.listdir(readonly) == []
    finally:
        os.chmod(base / "readonly", stat.S_IRWXU)
        shutil.rmtree(base, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- folder and list runs


def test_folder_run_writes_every_case_with_statistics_and_resumes(assets, capsys):
    out = assets / "folder_out"
    argv = cli(assets, "--input", str(assets / "scans"), "--output", str(out), "--format", "slicer", "--statistics")
    assert predict.main(argv) == 0
    names = ["ct0", "ct1", "dicom_case"]
    assert sorted(p.name for p in out.glob("*.seg.nrrd")) == [f"{n}.seg.nrrd" for n in names]
    rows = list(csv.DictReader(open(out / "statistics.csv")))
    assert [(r["case"], r["class"]) for r in rows] == [(n, c) for n in names for c in ("a", "b")]
    voxel_ml = 3.0 * 2.0 * 2.0 / 1000
    for row in rows[:2]:  # ct0: volume = voxels x voxel volume; intensities in HU from the scan
        assert float(row["volume_ml"]) == pytest.approx(int(row["voxels"]) * voxel_ml, abs=1e-4)
    labels = slicerio.read_segmentation(str(out / "ct0.seg.nrrd"))["voxels"].transpose(2, 1, 0)
    image = read_volume(assets / "scans" / "ct0.nii.gz").array
    if (labels == 1).any():
        assert float(rows[0]["mean_intensity"]) == pytest.approx(image[labels == 1].mean(), abs=1e-3)
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*.seg.nrrd")}
    capsys.readouterr()
    assert predict.main(argv) == 0  # resumed: nothing left to do
    assert "3 cases: 0 written, 3 skipped" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.seg.nrrd")} == stamps


def test_list_with_a_missing_path_reports_it_and_runs_the_others(assets, capsys):
    listing = assets / "cases.txt"
    listing.write_text(
        f"# two scans and one that is gone\nscans/ct1.nii.gz\n\n{assets / 'gone.nii.gz'}\nscans/dicom_case\n"
    )
    out = assets / "list_out"
    assert (
        predict.main(
            cli(assets, "--input", str(listing), "--output", str(out), "--format", "dicom-seg", opts=EVERYWHERE)
        )
        == 1
    )
    err = capsys.readouterr().err
    assert f"failed gone: {assets / 'gone.nii.gz'}: no such file or folder" in err
    assert "failed ct1: " in err and "is not a DICOM series; --format dicom-seg needs DICOM input" in err
    assert "error: 2 of 3 cases failed" in err
    assert [p.name for p in out.iterdir()] == ["dicom_case.seg.dcm"]


def _tiny_env(root: Path) -> dict:
    return dict(
        os.environ,
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join([str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]),
    )


@pytest.mark.timeout(1200)  # three interpreters importing torch: minutes on a busy 2-core machine
def test_two_cpu_processes_write_every_case_exactly_once(assets, tmp_path):
    scans = tmp_path / "four"
    scans.mkdir()
    for i in range(4):
        write_image(scans / f"case{i}.nii.gz", organ_phantom(SHAPE, seed=i)[0], spacing_zyx=(3.0, 2.0, 2.0))
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "s2vnet.predict",
        *cli(assets, "--input", str(scans), "--output", str(out), "--num-gpus", "2", "--statistics"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=_tiny_env(assets), timeout=1100)
    assert result.returncode == 0, result.stderr[-3000:]
    wrote = [
        line.split("] wrote ")[1].split()[0]
        for line in (result.stdout + result.stderr).splitlines()
        if "] wrote " in line
    ]
    ranks = {line.split("]")[0] for line in (result.stdout + result.stderr).splitlines() if "] wrote " in line}
    assert sorted(p.name for p in out.glob("*.nii.gz")) == [f"case{i}.nii.gz" for i in range(4)]
    assert sorted(wrote) == [f"case{i}" for i in range(4)] and ranks == {"[rank 0", "[rank 1"}, result.stdout[-3000:]
    assert "4 cases: 4 written, 0 skipped (already done), 0 failed" in result.stdout
    assert sorted({r["case"] for r in csv.DictReader(open(out / "statistics.csv"))}) == [f"case{i}" for i in range(4)]


@pytest.mark.timeout(1200)
def test_ctrl_c_keeps_finished_cases_and_leaves_nothing_half_written(assets, tmp_path):
    scans = tmp_path / "many"
    scans.mkdir()
    for i in range(8):
        write_image(scans / f"c{i}.nii.gz", organ_phantom((8, 64, 64), seed=i)[0], spacing_zyx=(3.0, 2.0, 2.0))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "s2vnet.predict", *cli(assets, "--input", str(scans), "--output", str(out))]
    # Ctrl-C as in a terminal: SIGINT with its default disposition (a background shell would have it ignored).
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_tiny_env(assets),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 300
    while not list(out.glob("c*.json")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before the first case was written"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted: finished results are complete" in err
    assert not list(out.glob(".tmp-*"))
    for seg in out.glob("*.nii.gz"):  # every file there is whole
        assert read_label(seg).array.shape == (8, 64, 64)
    for sidecar in out.glob("*.json"):
        assert json.loads(sidecar.read_text())["labels"]["1"] == "a"
    done = sum(p.with_name(p.name.replace(".nii.gz", ".json")).exists() for p in out.glob("*.nii.gz"))
    result = subprocess.run(command, capture_output=True, text=True, env=_tiny_env(assets), timeout=600)
    assert result.returncode == 0 and f"{8 - done} written" in result.stdout, result.stderr[-2000:]
