"""Shared fixtures for the S2VNet test suite."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def demo_reference_files() -> Path:
    """The installed demo data's ``reference_files`` folder (``python -m s2vnet.data.demo_data``).

    Resolved like :func:`s2vnet.data.datasets.demo.reference_files` (``$S2VNET_DEMO_DATA``, else
    ``$DETECTRON2_DATASETS/s2vnet_demo``, else ``datasets/s2vnet_demo``), with a relative result taken
    against the repository root so the tests do not depend on the current folder.
    Skips when the data is absent, or fails when ``S2VNET_REQUIRE_DEMO_DATA=1``.
    """
    from s2vnet.data.datasets.demo import reference_files

    path = reference_files()
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not path.is_dir():
        reason = f"demo data not installed at {path} (run `python -m s2vnet.data.demo_data`)"
        if os.environ.get("S2VNET_REQUIRE_DEMO_DATA") == "1":
            pytest.fail(f"{reason}; S2VNET_REQUIRE_DEMO_DATA=1 requires it")
        pytest.skip(reason)
    return path


@pytest.fixture
def write_image() -> Callable[..., Path]:
    """Write a numpy ``(z, y, x)`` (or ``(y, x)``) array with SimpleITK and return the path.

    Call as ``write_image(path, array, spacing=(z, y, x), origin=(x, y, z), direction=9 floats)``;
    geometry arguments left out keep SimpleITK's defaults.
    """

    def write(
        path: str | os.PathLike,
        array: np.ndarray,
        spacing: Sequence[float] | None = None,
        origin: Sequence[float] | None = None,
        direction: Sequence[float] | None = None,
    ) -> Path:
        image = sitk.GetImageFromArray(np.ascontiguousarray(array))
        if spacing is not None:
            image.SetSpacing(tuple(float(s) for s in reversed(spacing)))
        if origin is not None:
            image.SetOrigin(tuple(float(o) for o in origin))
        if direction is not None:
            image.SetDirection(tuple(float(d) for d in np.asarray(direction, dtype=float).ravel()))
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(image, str(path))
        return path

    return write
