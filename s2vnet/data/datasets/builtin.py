"""Builtin datasets: BTCV, WORD and AMOS (CT and MRI), from their public folder layouts.

Everything is registered at import with lazy loaders: nothing is read until a dataset is used, so
importing ``s2vnet`` works without the data. The root is ``$DETECTRON2_DATASETS`` (default
``./datasets``), holding::

    btcv/RawData/Training/img/img0001.nii.gz   btcv/RawData/Training/label/label0001.nii.gz
        (or btcv/imagesTr/img0001.nii.gz + btcv/labelsTr/label0001.nii.gz, the MONAI/UNETR copy)
    WORD-V0.1.0/imagesTr|imagesVal|imagesTs/word_0001.nii.gz   + labelsTr|labelsVal|labelsTs
    amos22/imagesTr|imagesVa/amos_0001.nii.gz                   + labelsTr|labelsVa
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from s2vnet.data.datasets.register import register_volume_dataset
from s2vnet.errors import InputError

# BTCV "Multi-Atlas Labeling Beyond the Cranial Vault", label ids 1..13.
BTCV_CLASSES = (
    "spleen", "right_kidney", "left_kidney", "gallbladder", "esophagus", "liver", "stomach", "aorta",
    "inferior_vena_cava", "portal_and_splenic_vein", "pancreas", "right_adrenal_gland", "left_adrenal_gland",
)
# The 24/6 split used by UNETR / Swin UNETR and the S2VNet paper: validation cases 35-40.
BTCV_VAL_IDS = tuple(range(35, 41))

# WORD V0.1.0, label ids 1..16 as in its dataset.json.
WORD_CLASSES = (
    "liver", "spleen", "left_kidney", "right_kidney", "stomach", "gallbladder", "esophagus", "pancreas",
    "duodenum", "colon", "intestine", "adrenal", "rectum", "bladder", "head_of_femur_left", "head_of_femur_right",
)

# AMOS 2022, label ids 1..15 (CT and MRI share them).
AMOS_CLASSES = (
    "spleen", "right_kidney", "left_kidney", "gallbladder", "esophagus", "liver", "stomach", "aorta",
    "inferior_vena_cava", "pancreas", "right_adrenal_gland", "left_adrenal_gland", "duodenum", "bladder",
    "prostate_uterus",
)
AMOS_FIRST_MRI_ID = 500  # AMOS numbers its MRI cases from 500 up, CT cases below


def datasets_root() -> Path:
    """``$DETECTRON2_DATASETS`` or ``./datasets`` (read when a dataset is loaded, not at import)."""
    return Path(os.environ.get("DETECTRON2_DATASETS", "datasets"))


def _pairs(image_dir: Path, label_dir: Path, pattern: str, rename: Callable[[str], str] = str) -> list:
    images = sorted(image_dir.glob(pattern))
    if not images:
        raise InputError(image_dir, f"no {pattern} images found; see s2vnet/data/datasets/builtin.py for the layout")
    return [(str(p), str(label_dir / rename(p.name))) for p in images]


def _btcv_cases(split: str) -> list:
    base = datasets_root() / "btcv"
    raw = base / "RawData" / "Training"
    img_dir, lbl_dir = (raw / "img", raw / "label") if raw.exists() else (base / "imagesTr", base / "labelsTr")
    pairs = _pairs(img_dir, lbl_dir, "img*.nii.gz", lambda n: n.replace("img", "label", 1))
    is_val = lambda p: int(Path(p[0]).name[3:7]) in BTCV_VAL_IDS  # noqa: E731
    return [p for p in pairs if is_val(p) == (split == "val")]


def _word_cases(split: str) -> list:
    base = datasets_root() / "WORD-V0.1.0"
    suffix = {"train": "Tr", "val": "Val", "test": "Ts"}[split]
    return _pairs(base / f"images{suffix}", base / f"labels{suffix}", "*.nii.gz")


def _amos_cases(split: str, modality: str) -> list:
    base = datasets_root() / "amos22"
    suffix = {"train": "Tr", "val": "Va"}[split]
    pairs = _pairs(base / f"images{suffix}", base / f"labels{suffix}", "amos_*.nii.gz")
    is_mri = lambda p: int(Path(p[0]).name[5:9]) >= AMOS_FIRST_MRI_ID  # noqa: E731
    return [p for p in pairs if is_mri(p) == (modality == "MRI")]


def _case_lists() -> dict[str, tuple[Callable[[], list], tuple[str, ...], str]]:
    """``{catalog name: (fn() -> [(image, label), ...], class names, modality)}`` of every builtin dataset."""
    out = {}
    for split in ("train", "val"):
        out[f"btcv_{split}"] = (lambda s=split: _btcv_cases(s), BTCV_CLASSES, "CT")
    for split in ("train", "val", "test"):
        out[f"word_{split}"] = (lambda s=split: _word_cases(s), WORD_CLASSES, "CT")
    for modality in ("CT", "MRI"):
        for split in ("train", "val"):
            cases = lambda s=split, m=modality: _amos_cases(s, m)  # noqa: E731
            out[f"amos_{modality.lower()}_{split}"] = (cases, AMOS_CLASSES, modality)
    return out


def builtin_case_pairs(name: str) -> list[tuple[str, str]]:
    """``[(image, label), ...]`` of a builtin dataset as its folder lists them (the files are not checked).

    Raises:
        InputError: unknown name, or the dataset's image folder is missing or empty.
    """
    lists = _case_lists()
    if name not in lists:
        raise InputError(name, f"not a builtin dataset; known: {', '.join(lists)}")
    return lists[name][0]()


def register_all_builtin() -> None:
    """Register btcv_{train,val}, word_{train,val,test}, amos_{ct,mri}_{train,val} (lazily)."""
    for name, (cases, classes, modality) in _case_lists().items():
        register_volume_dataset(name, cases=cases, class_names=classes, modality=modality)
