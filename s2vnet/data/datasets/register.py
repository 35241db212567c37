"""``register_volume_dataset``: one call to make a CT/MRI dataset usable by S2VNet.

A registered dataset is a Detectron2 ``DatasetCatalog`` entry whose dicts are one per volume::

    {"file_name": image file or DICOM folder, "sem_seg_file_name": label file,
     "case_id": str, "modality": "CT" | "MRI", "dataset_name": str}

and a ``MetadataCatalog`` entry with ``stuff_classes`` (class names, class index order),
``label_ids`` (stored id of each class), ``modality``, ``unlisted_labels`` and ``ignore_label``.
Nothing is read from disk until ``DatasetCatalog.get(name)`` is called.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence, Union

from detectron2.data import DatasetCatalog, MetadataCatalog

from s2vnet.data.label_map import UNLISTED_POLICIES, LabelMap, default_label_ids
from s2vnet.data.normalization import canonical_modality
from s2vnet.data.volume_io import IMAGE_SUFFIXES
from s2vnet.errors import InputError

CasePair = Union[Sequence[str], Mapping[str, str]]
CaseSource = Union[Sequence[CasePair], Callable[[], Sequence[CasePair]]]
IGNORE_LABEL = 255


def register_volume_dataset(
    name: str,
    *,
    cases: CaseSource | None = None,
    dataset_json: str | os.PathLike | None = None,
    class_names: Sequence[str] | None = None,
    label_ids: Sequence[int] | None = None,
    modality: str | None = None,
    case_ids: Iterable[str] | None = None,
    unlisted_labels: str = "error",
) -> None:
    """Register a volumetric segmentation dataset with Detectron2's catalogs.

    Give exactly one of ``cases`` or ``dataset_json``.

    Args:
        name: the catalog name, e.g. "my_liver_train".
        cases: ``[(image, label), ...]`` or ``[{"image": ..., "label": ..., "case_id": optional}, ...]``, or a
            zero-argument callable returning such a list (called lazily, at ``DatasetCatalog.get``).
            The case id defaults to the image's name without its file suffix.
        dataset_json: an nnU-Net (v1/v2) or Medical Segmentation Decathlon folder holding
            ``dataset.json`` (or the file itself). Its ``training`` cases are used.
        class_names: foreground class names in class-index order. With ``dataset_json`` they default to
            the json's labels and may name a subset of them.
        label_ids: stored label id of each class (default 1..K; taken from ``dataset_json`` when given).
        modality: "CT" or "MRI" (default from ``dataset_json``).
        case_ids: keep only these case ids (e.g. one fold of ``splits_final.json``).
        unlisted_labels: "error" (default) or "background" for stored ids outside ``label_ids``.

    Raises:
        InputError: unknown modality, bad class list, unreadable ``dataset.json``, name taken.
    """
    if (cases is None) == (dataset_json is None):
        raise InputError(name, "give exactly one of cases= or dataset_json=")
    if name in DatasetCatalog.list():
        raise InputError(name, "a dataset with this name is already registered")
    if dataset_json is not None:
        spec = read_dataset_json(dataset_json)
        class_names, label_ids = _select_json_classes(spec, class_names, label_ids, dataset_json)
        modality = modality or spec["modality"]
        cases = spec["cases"]
    if not class_names:
        raise InputError(name, "needs class_names (the foreground classes, in order)")
    if modality is None:
        raise InputError(name, "needs a modality ('CT' or 'MRI')")
    if unlisted_labels not in UNLISTED_POLICIES:
        raise InputError(name, f"unlisted_labels must be one of {UNLISTED_POLICIES}")
    modality = canonical_modality(modality, name)
    label_ids = tuple(int(i) for i in (label_ids or default_label_ids(class_names)))
    _check_classes(name, class_names, label_ids, unlisted_labels)
    keep = set(case_ids) if case_ids is not None else None
    DatasetCatalog.register(name, lambda: _load_dicts(name, cases, modality, keep))
    MetadataCatalog.get(name).set(
        stuff_classes=list(class_names), label_ids=list(label_ids), modality=modality,
        unlisted_labels=unlisted_labels, ignore_label=IGNORE_LABEL, evaluator_type="volume_sem_seg",
    )


def label_map_for(name: str) -> LabelMap:
    """The :class:`LabelMap` of a registered dataset, from its metadata."""
    meta = MetadataCatalog.get(name)
    return LabelMap(tuple(meta.label_ids), meta.unlisted_labels)


def _check_classes(name: str, class_names: Sequence[str], label_ids: Sequence[int], unlisted: str) -> None:
    if len(set(class_names)) != len(class_names):
        raise InputError(name, f"class names are not unique: {list(class_names)}")
    if len(label_ids) != len(class_names):
        raise InputError(name, f"{len(label_ids)} label ids for {len(class_names)} classes")
    try:
        LabelMap(tuple(label_ids), unlisted)
    except ValueError as err:
        raise InputError(name, str(err)) from None


def _load_dicts(name: str, cases: CaseSource, modality: str, keep: set[str] | None) -> list[dict]:
    pairs = cases() if callable(cases) else cases
    dicts = []
    for pair in pairs:
        image, label = (pair["image"], pair["label"]) if isinstance(pair, Mapping) else tuple(pair)
        case_id = pair.get("case_id") if isinstance(pair, Mapping) else None
        case_id = case_id or case_id_of(image)
        if keep is not None and case_id not in keep:
            continue
        for path in (image, label):
            if not Path(path).exists():
                raise InputError(path, f"listed in dataset '{name}' but does not exist")
        dicts.append({"file_name": str(image), "sem_seg_file_name": str(label), "case_id": case_id,
                      "modality": modality, "dataset_name": name})
    if not dicts:
        raise InputError(name, "dataset has no cases")
    return dicts


def case_id_of(path: str | os.PathLike) -> str:
    """Case id from a file or folder name: the name without its image suffix (``amos_0001.nii.gz`` -> ``amos_0001``)."""
    base = Path(path).name
    for suffix in IMAGE_SUFFIXES:
        if base.lower().endswith(suffix):
            return base[: -len(suffix)]
    return base


# ---------------------------------------------------------------- dataset.json (nnU-Net / MSD)


def read_dataset_json(path: str | os.PathLike) -> dict:
    """Parse an nnU-Net v1/v2 or MSD ``dataset.json``.

    Returns:
        ``{"labels": {id: name} without background, "modality": str,
        "cases": [{"image", "label", "case_id"}, ...]}`` (case ids from the label file names, which
        carry no nnU-Net ``_0000`` channel tag).
    """
    path = Path(path)
    file = path / "dataset.json" if path.is_dir() else path
    try:
        spec = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(file, "no such dataset.json") from None
    except (OSError, ValueError) as err:
        raise InputError(file, f"cannot be parsed as JSON ({err})") from None
    root = file.parent
    labels = _json_labels(spec, file)
    channels = spec.get("channel_names") or spec.get("modality") or {}
    if len(channels) != 1:
        raise InputError(file, f"has {len(channels)} input channels; S2VNet takes single-channel CT or MRI")
    cases = _json_cases(spec, root, file)
    return {"labels": labels, "modality": next(iter(channels.values())), "cases": cases}


def _json_labels(spec: dict, file: Path) -> dict[int, str]:
    raw = spec.get("labels")
    if not isinstance(raw, dict) or not raw:
        raise InputError(file, "has no 'labels' mapping")
    first_key = next(iter(raw))
    try:
        if str(first_key).lstrip("-").isdigit():  # MSD / nnU-Net v1: {"1": "liver"}
            pairs = {int(k): str(v) for k, v in raw.items()}
        else:  # nnU-Net v2: {"liver": 1}
            pairs = {int(v): str(k) for k, v in raw.items()}
    except (TypeError, ValueError):
        raise InputError(file, "labels use nnU-Net regions or non-integer ids, which S2VNet does not support") from None
    return {k: v for k, v in sorted(pairs.items()) if k != 0}


def _json_cases(spec: dict, root: Path, file: Path) -> list[dict[str, str]]:
    if isinstance(spec.get("training"), list):  # MSD / nnU-Net v1
        return [_json_case(root / c["image"], root / c["label"]) for c in spec["training"]]
    ending = spec.get("file_ending", ".nii.gz")  # nnU-Net v2: imagesTr/<case>_0000<ending>
    images = sorted((root / "imagesTr").glob(f"*_0000{ending}"))
    if not images:
        raise InputError(file, f"lists no 'training' cases and {root / 'imagesTr'} has no *_0000{ending} files")
    return [_json_case(img, root / "labelsTr" / (img.name[: -len("_0000" + ending)] + ending)) for img in images]


def _json_case(image: Path, label: Path) -> dict[str, str]:
    """One case; nnU-Net v1 lists ``case.nii.gz`` while the file on disk is ``case_0000.nii.gz``."""
    name = case_id_of(image)
    channel0 = image.with_name(name + "_0000" + image.name[len(name):])
    if not image.exists() and channel0.exists():
        image = channel0
    return {"image": str(image), "label": str(label), "case_id": case_id_of(label)}


def _select_json_classes(spec, class_names, label_ids, source) -> tuple[list[str], list[int]]:
    labels = spec["labels"]
    if label_ids is not None:
        return list(class_names or [labels[i] for i in label_ids]), list(label_ids)
    if not class_names:
        return list(labels.values()), list(labels.keys())
    by_name = {v: k for k, v in labels.items()}
    missing = [c for c in class_names if c not in by_name]
    if missing:
        raise InputError(source, f"unknown class names {missing}; dataset.json has {list(by_name)}")
    return list(class_names), [by_name[c] for c in class_names]
