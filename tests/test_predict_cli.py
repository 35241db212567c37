"""``python -m s2vnet.predict`` end to end on a tiny model, and its one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from synthetic import REPO, TINY, organ_phantom, tiny_model, write_image

SHAPE = (6, 48, 40)
DIRECTION = (0, 1, 0, -1, 0, 0, 0, 0, 1)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("predict")
    torch.save({"model": tiny_model().state_dict()}, folder / "tiny.pth")
    torch.save(
        {
            "model": tiny_model(
                "MODEL.S2VNET.NUM_CLASSES", "3", "MODEL.S2VNET.CLASS_NAMES", "['a', 'b', 'c']"
            ).state_dict()
        },
        folder / "three_classes.pth",
    )
    image, label = organ_phantom(SHAPE)
    write_image(folder / "scan.nrrd", image, spacing_zyx=(3.0, 0.9, 0.7), origin=(5.0, -2.0, 1.0), direction=DIRECTION)
    return folder, label


def run(folder: Path, *args: str, weights: str = "tiny.pth") -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "s2vnet.predict",
        "--config-file",
        str(REPO / "configs/demo/s2vnet_r18_demo.yaml"),
        "--weights",
        str(folder / weights),
        *args,
        *TINY,
    ]
    return subprocess.run(
        cmd, capture_output=True, text=True, cwd=folder, env=dict(os.environ, OMP_NUM_THREADS="2"), timeout=300
    )


def test_segments_an_nrrd_with_clicks_onto_its_own_grid(assets):
    folder, label = assets
    z, y, x = np.argwhere(label == 2)[0]
    clicks = [
        {"class": "b", "voxel": [int(x), int(y), int(z)]},
        {"class": 1, "positive": False, "voxel": [0, 0, 0]},
        {"class": "a", "point": [5.0, -2.0, 1.0]},
    ]
    (folder / "clicks.json").write_text(json.dumps(clicks))
    result = run(
        folder, "--input", "scan.nrrd", "--output", "out/seg.nii.gz", "--clicks", "clicks.json", "--device", "cpu"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    source, written = sitk.ReadImage(str(folder / "scan.nrrd")), sitk.ReadImage(str(folder / "out/seg.nii.gz"))
    assert written.GetSize() == source.GetSize()
    np.testing.assert_allclose(written.GetSpacing(), source.GetSpacing(), rtol=1e-5)
    np.testing.assert_allclose(written.GetOrigin(), source.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(written.GetDirection(), source.GetDirection(), atol=1e-6)
    sidecar = json.loads((folder / "out/seg.json").read_text())
    assert sidecar["labels"] == {"0": "background", "1": "a", "2": "b"}


@pytest.mark.parametrize(
    ("case", "clicks", "args", "weights", "expected"),
    [
        ("unknown_class", [{"class": "liver", "voxel": [0, 0, 0]}], (), "tiny.pth", "unknown class name 'liver'"),
        ("unknown_id", [{"class": 7, "voxel": [0, 0, 0]}], (), "tiny.pth", "unknown class id 7"),
        ("outside", [{"class": "a", "voxel": [40, 0, 0]}], (), "tiny.pth", "lies outside the volume"),
        ("malformed", "[{not json", (), "tiny.pth", "cannot be parsed as JSON"),
        ("no_position", [{"class": "a"}], (), "tiny.pth", "exactly one of 'voxel' or 'point'"),
        ("unreadable", None, ("--input", "garbage.nii.gz"), "tiny.pth", "cannot be read as an image"),
        ("mismatch", None, (), "three_classes.pth", "weights do not match the config"),
        ("no_weights", None, (), "missing.pth", "no such weights file"),
    ],
)
def test_bad_input_is_one_line_and_leaves_no_output(assets, case, clicks, args, weights, expected):
    folder, _ = assets
    (folder / "garbage.nii.gz").write_bytes(b"not an image at all")
    extra = []
    if clicks is not None:
        path = folder / f"{case}.json"
        path.write_text(clicks if isinstance(clicks, str) else json.dumps(clicks))
        extra = ["--clicks", str(path)]
    output = folder / f"{case}_seg.nii.gz"
    result = run(folder, *(args or ("--input", "scan.nrrd")), "--output", str(output), *extra, weights=weights)
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and expected in last and "Traceback" not in result.stderr
    assert not output.exists() and not list(folder.glob(f".tmp-*{case}*"))
