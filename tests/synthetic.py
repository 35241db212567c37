"""Small synthetic volumes and datasets for the tests (written with SimpleITK into tmp folders)."""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk
from detectron2.data import DatasetCatalog, MetadataCatalog

from s2vnet.data import register_volume_dataset


def write_image(path: Path, array: np.ndarray, spacing_zyx=(2.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0),
                direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)) -> Path:
    """Write a (z, y, x) array with the given geometry."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in reversed(spacing_zyx)))
    image.SetOrigin(tuple(float(o) for o in origin))
    image.SetDirection(tuple(float(d) for d in direction))
    sitk.WriteImage(image, str(path))
    return path


def organ_phantom(shape=(12, 48, 40), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A CT-like int16 image (HU) and a label (ids 0, 1, 2) with two blob 'organs' over some slices."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    label = np.zeros(shape, dtype=np.uint8)
    label[((y - 18) ** 2 + (x - 14) ** 2 < 60) & (z >= 2) & (z <= 9)] = 1
    label[((y - 30) ** 2 / 2 + (x - 28) ** 2 < 30) & (z >= 4)] = 2
    hu = np.where(label == 1, 60, np.where(label == 2, 150, -50)) + rng.normal(0, 10, shape)
    return hu.astype(np.int16), label


def make_cases(folder: Path, count: int = 2, shape=(12, 48, 40)) -> list[tuple[str, str]]:
    """``count`` phantom cases as NIfTI files in ``folder``; returns (image, label) pairs."""
    folder.mkdir(parents=True, exist_ok=True)
    pairs = []
    for i in range(count):
        image, label = organ_phantom(shape, seed=i)
        img = write_image(folder / f"case{i}_img.nii.gz", image)
        lbl = write_image(folder / f"case{i}_seg.nii.gz", label)
        pairs.append((str(img), str(lbl)))
    return pairs


class TempDatasets:
    """Registers datasets under unique names and removes them from the global catalogs afterwards."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def register(self, cases, class_names: Sequence[str] = ("organ_a", "organ_b"), modality: str = "CT", **kwargs) -> str:
        name = f"test_{uuid.uuid4().hex[:8]}"
        register_volume_dataset(name, cases=cases, class_names=class_names, modality=modality, **kwargs)
        self.names.append(name)
        return name

    def close(self) -> None:
        for name in self.names:
            if name in DatasetCatalog.list():
                DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
