"""Small synthetic datasets in the public folder layouts of BTCV, WORD and AMOS, for tests and GPU smoke runs.

Each case is a CT-like (or, for AMOS MRI, MR-like) volume with one blob per class, the blobs on a grid, each
with its own intensity, and the matching label volume with the dataset's own label ids. The case numbers
follow the splits the catalog (``s2vnet/data/datasets/builtin.py``) expects: BTCV validates on 35-40, AMOS
numbers MRI cases from 500.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

import numpy as np
import SimpleITK as sitk

from s2vnet.data.datasets.builtin import AMOS_CLASSES, AMOS_FIRST_MRI_ID, BTCV_CLASSES, BTCV_VAL_IDS, WORD_CLASSES

Shape = Sequence[int]


def phantom(shape: Shape, num_classes: int, mri: bool, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """An image ``(z, y, x)`` (int16 HU, or float32 MR-like) and labels (uint8, ids 1..K) with one blob per class."""
    z, y, x = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    side = int(np.ceil(np.sqrt(num_classes)))
    cell_y, cell_x = shape[1] / side, shape[2] / side
    label = np.zeros(shape, dtype=np.uint8)
    for k in range(num_classes):
        cy, cx = (k // side + 0.5) * cell_y, (k % side + 0.5) * cell_x
        ry, rx = 0.35 * cell_y * rng.uniform(0.7, 1.0), 0.35 * cell_x * rng.uniform(0.7, 1.0)
        depth = max(1, int(shape[0] * rng.uniform(0.5, 0.9)))
        start = int(rng.integers(0, shape[0] - depth + 1))
        inside = ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 < 1
        label[inside & (z >= start) & (z < start + depth)] = k + 1
    level = rng.uniform(-100, 200, size=num_classes + 1).astype(np.float32)
    level[0] = -300
    image = level[label] + rng.normal(0, 15, shape).astype(np.float32)
    if mri:
        return (image + 400.0).clip(0).astype(np.float32), label
    return image.astype(np.int16), label


def _write(path: Path, array: np.ndarray, spacing_zyx: Sequence[float]) -> Path:
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.SetSpacing(tuple(float(s) for s in reversed(spacing_zyx)))
    image.SetDirection((-1.0, 0, 0, 0, -1.0, 0, 0, 0, 1.0))  # RAS-stored, as most public NIfTI files
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def _ids(first: int, count: int, skip: Sequence[int] = ()) -> list[int]:
    out, i = [], first
    while len(out) < count:
        if i not in skip:
            out.append(i)
        i += 1
    return out


def _btcv(root: Path, counts: Mapping[str, int]) -> list[tuple[Path, Path, int]]:
    raw = root / "btcv" / "RawData" / "Training"
    ids = _ids(1, counts.get("train", 0), BTCV_VAL_IDS) + list(BTCV_VAL_IDS[: counts.get("val", 0)])
    return [
        (raw / "img" / f"img{i:04d}.nii.gz", raw / "label" / f"label{i:04d}.nii.gz", len(BTCV_CLASSES)) for i in ids
    ]


def _word(root: Path, counts: Mapping[str, int]) -> list[tuple[Path, Path, int]]:
    base, out, first = root / "WORD-V0.1.0", [], 1
    for split, suffix in (("train", "Tr"), ("val", "Val"), ("test", "Ts")):
        for i in _ids(first, counts.get(split, 0)):
            name = f"word_{i:04d}.nii.gz"
            out.append((base / f"images{suffix}" / name, base / f"labels{suffix}" / name, len(WORD_CLASSES)))
        first += counts.get(split, 0)
    return out


def _amos(root: Path, counts: Mapping[str, int], first: int) -> list[tuple[Path, Path, int]]:
    base, out = root / "amos22", []
    for split, suffix in (("train", "Tr"), ("val", "Va")):
        for i in _ids(first, counts.get(split, 0)):
            name = f"amos_{i:04d}.nii.gz"
            out.append((base / f"images{suffix}" / name, base / f"labels{suffix}" / name, len(AMOS_CLASSES)))
        first += counts.get(split, 0)
    return out


# layout name -> (fn(root, {split: count}) -> [(image path, label path, classes)], MR-like intensities)
LAYOUTS: Mapping[str, tuple[Callable, bool]] = MappingProxyType(
    {
        "btcv": (_btcv, False),
        "word": (_word, False),
        "amos_ct": (lambda root, counts: _amos(root, counts, 1), False),
        "amos_mri": (lambda root, counts: _amos(root, counts, AMOS_FIRST_MRI_ID), True),
    }
)


def write_synthetic(
    layout: str,
    root: str | Path,
    counts: Mapping[str, int],
    shape: Shape = (8, 64, 64),
    spacing: Sequence[float] = (2.5, 0.8, 0.8),
    seed: int = 0,
) -> list[tuple[Path, Path]]:
    """Write a synthetic dataset under ``root`` (the ``$DETECTRON2_DATASETS`` folder) in ``layout``'s folders.

    Args:
        layout: a key of :data:`LAYOUTS`.
        counts: cases per split, e.g. ``{"train": 2, "val": 1}`` (WORD also ``"test"``).
        shape: ``(z, y, x)`` of every volume; spacing: ``(z, y, x)`` mm.

    Returns:
        the ``(image, label)`` paths written.
    """
    cases, mri = LAYOUTS[layout]
    rng = np.random.default_rng(seed)
    written = []
    for image_path, label_path, classes in cases(Path(root), counts):
        image, label = phantom(shape, classes, mri, rng)
        written.append((_write(image_path, image, spacing), _write(label_path, label, spacing)))
    return written
