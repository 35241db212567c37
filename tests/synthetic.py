"""Small synthetic volumes and datasets for the tests (written with SimpleITK into tmp folders)."""

from __future__ import annotations

import contextlib
import locale
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model
from detectron2.structures import Instances

from s2vnet.config import setup_cfg
from s2vnet.data import register_volume_dataset


def write_image(
    path: Path,
    array: np.ndarray,
    spacing_zyx=(2.0, 1.0, 1.0),
    origin=(0.0, 0.0, 0.0),
    direction=(1, 0, 0, 0, 1, 0, 0, 0, 1),
) -> Path:
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

    def register(
        self, cases, class_names: Sequence[str] = ("organ_a", "organ_b"), modality: str = "CT", **kwargs
    ) -> str:
        name = f"test_{uuid.uuid4().hex[:8]}"
        register_volume_dataset(name, cases=cases, class_names=class_names, modality=modality, **kwargs)
        self.names.append(name)
        return name

    def close(self) -> None:
        for name in self.names:
            if name in DatasetCatalog.list():
                DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)


REPO = Path(__file__).resolve().parents[1]
TINY = [
    "MODEL.S2VNET.NUM_CLASSES",
    "2",
    "MODEL.S2VNET.CLASS_NAMES",
    "['a', 'b']",
    "MODEL.S2VNET.CENTROIDS_PER_CLASS",
    "3",
    "MODEL.S2VNET.HIDDEN_DIM",
    "32",
    "MODEL.PIXEL_DECODER.CONVS_DIM",
    "32",
    "MODEL.PIXEL_DECODER.MASK_DIM",
    "32",
    "MODEL.S2VNET.DIM_FEEDFORWARD",
    "64",
    "MODEL.S2VNET.TRAIN_NUM_POINTS",
    "512",
]


def tiny_cfg(*overrides: str):
    """The demo config shrunk to 2 classes ("a", "b") and 32 channels."""
    return setup_cfg(str(REPO / "configs" / "demo" / "s2vnet_r18_demo.yaml"), TINY + list(overrides))


def tiny_model(*overrides: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(tiny_cfg(*overrides))


def phantom_clip(size: int = 64, empty_slice: int | None = None, clicks: bool = False) -> dict:
    """Three slices with a bright disc (class 0) and a dark square (class 1), shifting a little per slice."""
    yy, xx = np.mgrid[:size, :size]
    slices = []
    for t in range(3):
        label = np.zeros((size, size), dtype=np.int64)
        if t != empty_slice:
            label[(yy - 20 - t) ** 2 + (xx - 22) ** 2 < 90] = 1
            label[38 + t : 54 + t, 36:54] = 2
        image = np.where(label == 1, 200, np.where(label == 2, 60, 120)).astype(np.uint8)
        inst = Instances((size, size))
        values = [v for v in (1, 2) if (label == v).any()]
        inst.gt_classes = torch.tensor([v - 1 for v in values], dtype=torch.int64)
        inst.gt_masks = (
            torch.stack([torch.from_numpy(label == v) for v in values])
            if values
            else torch.zeros(0, size, size, dtype=torch.bool)
        )
        click = {
            "coords": torch.zeros(0, 2),
            "classes": torch.zeros(0, dtype=torch.int64),
            "positive": torch.zeros(0, dtype=torch.bool),
        }
        if clicks and t == 0:
            click = {
                "coords": torch.tensor([[20.0, 22.0]]),
                "classes": torch.tensor([0]),
                "positive": torch.tensor([True]),
            }
        slices.append(
            {
                "image": torch.from_numpy(image)[None],
                "sem_seg": torch.from_numpy(label),
                "instances": inst,
                "clicks": click,
                "height": size,
                "width": size,
            }
        )
    return {
        "case_id": "phantom",
        "slices": slices,
        "slice_indices": [0, 1, 2],
        "interactive_classes": torch.tensor([0]),
    }


@contextlib.contextmanager
def keep_locale():
    """GDCM's DICOM writer leaves the process locale at "C" (ASCII text I/O); put it back afterwards."""
    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        locale.setlocale(locale.LC_ALL, saved)
