"""Shared pieces of the viewer tests: a tiny model, a scan stored in a non-LPS orientation, and a client."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from starlette.testclient import TestClient
from synthetic import organ_phantom, tiny_cfg

from s2vnet.inference.api import Predictor
from s2vnet.serve.app import create_app

# Stored RAS-like: +i towards patient right, +j anterior, +k superior, so display (LPS) flips rows and cols.
RAS_DIRECTION = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
SPACING_ZYX = (2.0, 0.8, 0.7)
ORIGIN = (12.5, -30.0, 7.0)


def tiny_predictor(*overrides: str) -> Predictor:
    """The 2-class tiny model, random weights; threshold 0 so every voxel gets a class and clicks show."""
    import torch

    torch.manual_seed(0)
    return Predictor(
        tiny_cfg("MODEL.S2VNET.FOREGROUND_THRESHOLD", "0.0", "MODEL.S2VNET.SEMANTIC_INFERENCE", "max", *overrides),
        None,
        "cpu",
    )


def write_scan(path: Path, shape=(6, 48, 40), seed: int = 0) -> Path:
    """An int16 CT-like phantom with anisotropic spacing, an offset origin and RAS-like axes."""
    image, _ = organ_phantom(shape, seed=seed)
    img = sitk.GetImageFromArray(image)
    img.SetSpacing(tuple(reversed(SPACING_ZYX)))
    img.SetOrigin(ORIGIN)
    img.SetDirection(RAS_DIRECTION)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path))
    return path


def client(predictor: Predictor, data_root: Path | None, **kwargs) -> TestClient:
    """A test client on a fresh app (use as a context manager so start-up and shut-down run)."""
    app = create_app(predictor, data_root, **kwargs)
    return TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False)


def lps_array(path: Path) -> np.ndarray:
    """The scan reoriented by SimpleITK itself to identity direction (x -> L, y -> P, z -> S), as (z, y, x)."""
    oriented = sitk.DICOMOrient(sitk.ReadImage(str(path)), "LPS")
    assert np.allclose(oriented.GetDirection(), np.eye(3).ravel())
    return sitk.GetArrayFromImage(oriented)


# Fixtures shared by the viewer's test files (import them there): the tiny predictor, a data root with one scan,
# and an in-process client of the app.
@pytest.fixture(scope="module")
def predictor():
    return tiny_predictor()


@pytest.fixture
def root(tmp_path):
    write_scan(tmp_path / "data" / "ct.nii.gz")
    return tmp_path / "data"


@pytest.fixture
def api(predictor, root):
    with client(predictor, root) as c:
        yield c
