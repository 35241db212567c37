"""Dataset registration: builtin layouts, register_volume_dataset, dataset.json (s2vnet/data/datasets)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog

import s2vnet  # noqa: F401  (registers the builtin and demo datasets)
from s2vnet.data.datasets import register_all_builtin, register_demo_datasets
from s2vnet.data.datasets.register import case_id_of, label_map_for, read_dataset_json, register_volume_dataset
from s2vnet.data.label_map import LabelMap
from s2vnet.errors import InputError

# name -> (number of classes, modality)
BUILTIN = {
    "btcv_train": (13, "CT"),
    "btcv_val": (13, "CT"),
    "word_train": (16, "CT"),
    "word_val": (16, "CT"),
    "word_test": (16, "CT"),
    "amos_ct_train": (15, "CT"),
    "amos_ct_val": (15, "CT"),
    "amos_mri_train": (15, "MRI"),
    "amos_mri_val": (15, "MRI"),
    "demo_ct_train": (8, "CT"),
    "demo_ct_test": (8, "CT"),
    "demo_mr": (8, "MRI"),
}


def _forget(name: str) -> None:
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    if name in MetadataCatalog.list():
        MetadataCatalog.remove(name)


@pytest.fixture
def new_name():
    """A factory of unique dataset names, removed from both catalogs afterwards."""
    names = []

    def make(prefix: str = "test") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        names.append(name)
        return name

    yield make
    for name in names:
        _forget(name)


@pytest.fixture
def empty_root(tmp_path, monkeypatch) -> Path:
    """DETECTRON2_DATASETS and S2VNET_DEMO_DATA pointing at empty folders; cwd without ./datasets."""
    root = tmp_path / "d2"
    root.mkdir()
    monkeypatch.setenv("DETECTRON2_DATASETS", str(root))
    monkeypatch.setenv("S2VNET_DEMO_DATA", str(tmp_path / "no_demo"))
    monkeypatch.chdir(tmp_path)
    return root


@pytest.fixture
def tiny(write_image):
    """Write a tiny 2x4x4 volume (image or label) at a path and return it."""

    def make(path: Path, value: int = 0, dtype=np.int16) -> Path:
        return write_image(path, np.full((2, 4, 4), value, dtype=dtype))

    return make


# ---------------------------------------------------------------- builtin registration


def test_import_registers_builtin_datasets(empty_root):
    for name, (num_classes, modality) in BUILTIN.items():
        assert name in DatasetCatalog.list(), name
        meta = MetadataCatalog.get(name)
        assert len(meta.stuff_classes) == num_classes, name
        assert len(meta.label_ids) == num_classes, name
        assert meta.modality == modality, name
        assert meta.ignore_label == 255


@pytest.fixture
def fresh_builtin_catalog():
    """Unregister the builtin and demo datasets for the test, and register them again afterwards."""
    for name in BUILTIN:
        _forget(name)
    yield
    for name in BUILTIN:
        _forget(name)
    register_all_builtin()
    register_demo_datasets()


def test_registration_reads_nothing(empty_root, fresh_builtin_catalog, monkeypatch):
    """With no data anywhere, registering works: the loaders (which would fail) are not called."""
    register_all_builtin()
    register_demo_datasets()
    assert set(BUILTIN) <= set(DatasetCatalog.list())
    assert MetadataCatalog.get("word_test").stuff_classes[0] == "liver"
    assert MetadataCatalog.get("demo_mr").label_ids == [1, 5, 6, 7, 8, 23, 24, 25]
    with pytest.raises(InputError):
        DatasetCatalog.get("btcv_val")


def test_btcv_without_data_names_the_missing_folder(empty_root):
    with pytest.raises(InputError) as info:
        DatasetCatalog.get("btcv_train")
    assert info.value.source == str(empty_root / "btcv" / "imagesTr")
    assert "no img*.nii.gz images found" in str(info.value)


@pytest.mark.parametrize("name", ["word_train", "amos_mri_val"])
def test_word_and_amos_without_data(empty_root, name):
    with pytest.raises(InputError) as info:
        DatasetCatalog.get(name)
    assert str(empty_root) in str(info.value)


def test_demo_without_data_names_the_missing_file(empty_root, tmp_path):
    with pytest.raises(InputError, match="does not exist") as info:
        DatasetCatalog.get("demo_ct_train")
    assert info.value.source == str(tmp_path / "no_demo" / "reference_files" / "example_ct.nii.gz")


def test_demo_datasets_with_installed_data(demo_reference_files, monkeypatch):
    monkeypatch.setenv("S2VNET_DEMO_DATA", str(demo_reference_files.parent))
    (record,) = DatasetCatalog.get("demo_ct_test")
    assert record["file_name"] == str(demo_reference_files / "example_ct_dicom")
    assert record["case_id"] == "example_ct_dicom"
    assert record["modality"] == "CT"
    assert label_map_for("demo_ct_test") == LabelMap((1, 5, 6, 7, 8, 52, 63, 64), "background")


# ---------------------------------------------------------------- builtin layouts with fake data


def _btcv_tree(root: Path, tiny, ids, layout: str = "raw") -> None:
    if layout == "raw":
        img_dir, lbl_dir = (
            root / "btcv" / "RawData" / "Training" / "img",
            root / "btcv" / "RawData" / "Training" / "label",
        )
    else:
        img_dir, lbl_dir = root / "btcv" / "imagesTr", root / "btcv" / "labelsTr"
    for i in ids:
        tiny(img_dir / f"img{i:04d}.nii.gz")
        tiny(lbl_dir / f"label{i:04d}.nii.gz", dtype=np.uint8)


@pytest.mark.parametrize("layout", ["raw", "monai"])
def test_btcv_split(empty_root, tiny, layout):
    _btcv_tree(empty_root, tiny, (1, 2, 35, 40), layout)

    train = DatasetCatalog.get("btcv_train")
    val = DatasetCatalog.get("btcv_val")

    assert [d["case_id"] for d in train] == ["img0001", "img0002"]
    assert [d["case_id"] for d in val] == ["img0035", "img0040"]
    first = train[0]
    assert Path(first["file_name"]).name == "img0001.nii.gz"
    assert Path(first["sem_seg_file_name"]).name == "label0001.nii.gz"
    assert Path(first["sem_seg_file_name"]).exists()
    assert first["modality"] == "CT" and first["dataset_name"] == "btcv_train"


def test_btcv_missing_label_is_named(empty_root, tiny):
    _btcv_tree(empty_root, tiny, (1, 2))
    missing = empty_root / "btcv" / "RawData" / "Training" / "label" / "label0002.nii.gz"
    missing.unlink()
    with pytest.raises(InputError, match="does not exist") as info:
        DatasetCatalog.get("btcv_train")
    assert info.value.source == str(missing)


def _amos_tree(root: Path, tiny, split_suffix: str, ids) -> None:
    for i in ids:
        tiny(root / "amos22" / f"images{split_suffix}" / f"amos_{i:04d}.nii.gz")
        tiny(root / "amos22" / f"labels{split_suffix}" / f"amos_{i:04d}.nii.gz", dtype=np.uint8)


def _file_names(dicts) -> list[str]:
    return [Path(d["file_name"]).name for d in dicts]


def test_amos_splits_ct_and_mri_by_id(empty_root, tiny):
    _amos_tree(empty_root, tiny, "Tr", (1, 499, 500, 507))
    _amos_tree(empty_root, tiny, "Va", (8, 510))

    assert _file_names(DatasetCatalog.get("amos_ct_train")) == ["amos_0001.nii.gz", "amos_0499.nii.gz"]
    assert _file_names(DatasetCatalog.get("amos_mri_train")) == ["amos_0500.nii.gz", "amos_0507.nii.gz"]
    assert _file_names(DatasetCatalog.get("amos_ct_val")) == ["amos_0008.nii.gz"]
    mri_val = DatasetCatalog.get("amos_mri_val")
    assert _file_names(mri_val) == ["amos_0510.nii.gz"]
    assert mri_val[0]["modality"] == "MRI"
    assert Path(mri_val[0]["sem_seg_file_name"]) == empty_root / "amos22" / "labelsVa" / "amos_0510.nii.gz"


def test_amos_case_ids_are_distinct(empty_root, tiny):
    """Each AMOS case needs its own id (the slice cache keys cases by it)."""
    _amos_tree(empty_root, tiny, "Tr", (1, 2, 507))
    assert [d["case_id"] for d in DatasetCatalog.get("amos_ct_train")] == ["amos_0001", "amos_0002"]
    assert [d["case_id"] for d in DatasetCatalog.get("amos_mri_train")] == ["amos_0507"]


def _word_tree(root: Path, tiny, split_suffix: str, ids) -> None:
    for i in ids:
        tiny(root / "WORD-V0.1.0" / f"images{split_suffix}" / f"word_{i:04d}.nii.gz")
        tiny(root / "WORD-V0.1.0" / f"labels{split_suffix}" / f"word_{i:04d}.nii.gz", dtype=np.uint8)


def test_word_val_layout(empty_root, tiny):
    _word_tree(empty_root, tiny, "Tr", (1, 2))
    _word_tree(empty_root, tiny, "Val", (101, 102))
    val = DatasetCatalog.get("word_val")
    assert _file_names(val) == ["word_0101.nii.gz", "word_0102.nii.gz"]
    assert Path(val[1]["sem_seg_file_name"]) == empty_root / "WORD-V0.1.0" / "labelsVal" / "word_0102.nii.gz"
    assert _file_names(DatasetCatalog.get("word_train")) == ["word_0001.nii.gz", "word_0002.nii.gz"]
    with pytest.raises(InputError, match="imagesTs"):
        DatasetCatalog.get("word_test")


def test_word_case_ids_are_distinct(empty_root, tiny):
    _word_tree(empty_root, tiny, "Val", (101, 102))
    assert [d["case_id"] for d in DatasetCatalog.get("word_val")] == ["word_0101", "word_0102"]


# ---------------------------------------------------------------- register_volume_dataset


@pytest.fixture
def two_cases(tmp_path, tiny):
    pairs = []
    for case in ("liver_01", "liver_02"):
        pairs.append(
            (
                str(tiny(tmp_path / "img" / f"{case}.nii.gz")),
                str(tiny(tmp_path / "lbl" / f"{case}.nii.gz", dtype=np.uint8)),
            )
        )
    return pairs


def test_register_pairs(new_name, two_cases):
    name = new_name()
    register_volume_dataset(name, cases=two_cases, class_names=["liver", "tumour"], modality="mr")

    dicts = DatasetCatalog.get(name)
    assert len(dicts) == 2
    assert dicts[0] == {
        "file_name": two_cases[0][0],
        "sem_seg_file_name": two_cases[0][1],
        "case_id": "liver_01",
        "modality": "MRI",
        "dataset_name": name,
    }
    assert dicts[1]["case_id"] == "liver_02"
    meta = MetadataCatalog.get(name)
    assert meta.stuff_classes == ["liver", "tumour"]
    assert meta.label_ids == [1, 2]
    assert meta.modality == "MRI"
    assert meta.unlisted_labels == "error"
    assert meta.ignore_label == 255
    assert label_map_for(name) == LabelMap((1, 2), "error")


def test_register_mappings_label_ids_and_case_filter(new_name, two_cases):
    name = new_name()
    cases = [{"image": image, "label": label} for image, label in two_cases]
    register_volume_dataset(
        name,
        cases=cases,
        class_names=["liver", "tumour"],
        label_ids=[6, 2],
        modality="CT",
        case_ids=["liver_02"],
        unlisted_labels="background",
    )
    assert [d["case_id"] for d in DatasetCatalog.get(name)] == ["liver_02"]
    assert MetadataCatalog.get(name).label_ids == [6, 2]
    assert label_map_for(name) == LabelMap((6, 2), "background")


def test_register_callable_is_lazy(new_name, two_cases):
    calls = []

    def cases():
        calls.append(1)
        return two_cases

    name = new_name()
    register_volume_dataset(name, cases=cases, class_names=["liver"], modality="CT")
    assert calls == []
    assert len(DatasetCatalog.get(name)) == 2
    assert calls == [1]


@pytest.mark.parametrize(
    ("file_name", "case_id"),
    [
        ("case1_0000.nii.gz", "case1_0000"),
        ("amos_0001.nii.gz", "amos_0001"),
        ("img0001.nii.gz", "img0001"),
        ("scan.nrrd", "scan"),
        ("CT.MHA", "CT"),
        ("dicom_folder", "dicom_folder"),
        ("la_003.nii.gz", "la_003"),
    ],
)
def test_case_id_of(file_name, case_id):
    assert case_id_of(Path("/data") / file_name) == case_id


# ---------------------------------------------------------------- dataset.json


def _msd_folder(root: Path, tiny) -> Path:
    root.mkdir(parents=True)
    tiny(root / "imagesTr" / "a.nii.gz")
    tiny(root / "labelsTr" / "a.nii.gz", dtype=np.uint8)
    spec = {
        "labels": {"0": "background", "1": "liver", "2": "tumour"},
        "modality": {"0": "CT"},
        "training": [{"image": "./imagesTr/a.nii.gz", "label": "./labelsTr/a.nii.gz"}],
        "test": [],
    }
    (root / "dataset.json").write_text(json.dumps(spec))
    return root


def _nnunet_v2_folder(root: Path, tiny, channels=None) -> Path:
    root.mkdir(parents=True)
    tiny(root / "imagesTr" / "case1_0000.nii.gz")
    tiny(root / "labelsTr" / "case1.nii.gz", dtype=np.uint8)
    spec = {
        "channel_names": channels or {"0": "MRI"},
        "labels": {"background": 0, "liver": 1, "spleen": 2},
        "numTraining": 1,
        "file_ending": ".nii.gz",
    }
    (root / "dataset.json").write_text(json.dumps(spec))
    return root


def test_msd_dataset_json(new_name, tmp_path, tiny):
    folder = _msd_folder(tmp_path / "Task03_Liver", tiny)
    name = new_name()
    register_volume_dataset(name, dataset_json=folder)

    (record,) = DatasetCatalog.get(name)
    assert record["file_name"] == str(folder / "imagesTr" / "a.nii.gz")
    assert record["sem_seg_file_name"] == str(folder / "labelsTr" / "a.nii.gz")
    assert record["case_id"] == "a"
    assert record["modality"] == "CT"
    meta = MetadataCatalog.get(name)
    assert meta.stuff_classes == ["liver", "tumour"]
    assert meta.label_ids == [1, 2]
    assert meta.modality == "CT"


def test_nnunet_v2_dataset_json(new_name, tmp_path, tiny):
    folder = _nnunet_v2_folder(tmp_path / "Dataset001_Abdomen", tiny)
    name = new_name()
    register_volume_dataset(name, dataset_json=folder / "dataset.json")  # the file itself works too

    (record,) = DatasetCatalog.get(name)
    assert record["case_id"] == "case1"
    assert record["file_name"] == str(folder / "imagesTr" / "case1_0000.nii.gz")
    assert record["sem_seg_file_name"] == str(folder / "labelsTr" / "case1.nii.gz")
    assert record["modality"] == "MRI"
    meta = MetadataCatalog.get(name)
    assert meta.stuff_classes == ["liver", "spleen"]
    assert meta.label_ids == [1, 2]
    assert meta.modality == "MRI"


def test_nnunet_v1_dataset_json_finds_channel_files(new_name, tmp_path, tiny):
    """nnU-Net v1 lists ``imagesTr/la_003.nii.gz`` while the file on disk is ``la_003_0000.nii.gz``."""
    folder = tmp_path / "Task002_Heart"
    tiny(folder / "imagesTr" / "la_003_0000.nii.gz")
    tiny(folder / "labelsTr" / "la_003.nii.gz", dtype=np.uint8)
    spec = {
        "labels": {"0": "background", "1": "left atrium"},
        "modality": {"0": "MRI"},
        "training": [{"image": "./imagesTr/la_003.nii.gz", "label": "./labelsTr/la_003.nii.gz"}],
    }
    (folder / "dataset.json").write_text(json.dumps(spec))
    name = new_name()
    register_volume_dataset(name, dataset_json=folder)
    (record,) = DatasetCatalog.get(name)
    assert record["case_id"] == "la_003"
    assert record["file_name"] == str(folder / "imagesTr" / "la_003_0000.nii.gz")


def test_dataset_json_class_subset(new_name, tmp_path, tiny):
    folder = _nnunet_v2_folder(tmp_path / "Dataset001_Abdomen", tiny)
    name = new_name()
    register_volume_dataset(name, dataset_json=folder, class_names=["spleen"], unlisted_labels="background")
    meta = MetadataCatalog.get(name)
    assert meta.stuff_classes == ["spleen"]
    assert meta.label_ids == [2]


def test_dataset_json_explicit_label_ids(new_name, tmp_path, tiny):
    folder = _msd_folder(tmp_path / "Task03_Liver", tiny)
    name = new_name()
    register_volume_dataset(name, dataset_json=folder, label_ids=[2])
    assert MetadataCatalog.get(name).stuff_classes == ["tumour"]


def test_dataset_json_unknown_class_name(new_name, tmp_path, tiny):
    folder = _nnunet_v2_folder(tmp_path / "Dataset001_Abdomen", tiny)
    name = new_name()
    with pytest.raises(InputError, match="unknown class names") as info:
        register_volume_dataset(name, dataset_json=folder, class_names=["spleen", "kidney"])
    assert "kidney" in str(info.value)
    assert name not in DatasetCatalog.list()


def test_dataset_json_two_channels(new_name, tmp_path, tiny):
    folder = _nnunet_v2_folder(tmp_path / "Dataset002_Prostate", tiny, channels={"0": "T2", "1": "ADC"})
    with pytest.raises(InputError, match="2 input channels") as info:
        register_volume_dataset(new_name(), dataset_json=folder)
    assert info.value.source == str(folder / "dataset.json")


def test_dataset_json_missing_and_invalid(new_name, tmp_path):
    with pytest.raises(InputError, match="no such dataset.json") as info:
        read_dataset_json(tmp_path)
    assert info.value.source == str(tmp_path / "dataset.json")
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(InputError, match="cannot be parsed as JSON"):
        register_volume_dataset(new_name(), dataset_json=tmp_path)


def test_dataset_json_without_labels_or_images(tmp_path):
    (tmp_path / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}}))
    with pytest.raises(InputError, match="no 'labels'"):
        read_dataset_json(tmp_path)
    (tmp_path / "dataset.json").write_text(
        json.dumps({"channel_names": {"0": "CT"}, "labels": {"background": 0, "a": 1}})
    )
    with pytest.raises(InputError, match="_0000.nii.gz"):
        read_dataset_json(tmp_path)


def test_dataset_json_region_labels_are_rejected(tmp_path):
    spec = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "whole": [1, 2], "core": 2}}
    (tmp_path / "dataset.json").write_text(json.dumps(spec))
    with pytest.raises(InputError, match="regions"):
        read_dataset_json(tmp_path)


# ---------------------------------------------------------------- bad input


def test_empty_dataset_fails_when_loaded(new_name):
    name = new_name()
    register_volume_dataset(name, cases=[], class_names=["liver"], modality="CT")
    with pytest.raises(InputError, match="no cases") as info:
        DatasetCatalog.get(name)
    assert info.value.source == name


def test_case_filter_keeping_nothing_is_empty(new_name, two_cases):
    name = new_name()
    register_volume_dataset(name, cases=two_cases, class_names=["liver"], modality="CT", case_ids=["other"])
    with pytest.raises(InputError, match="no cases"):
        DatasetCatalog.get(name)


@pytest.mark.parametrize("which", [0, 1], ids=["image", "label"])
def test_missing_listed_file(new_name, two_cases, tmp_path, which):
    name = new_name()
    pair = list(two_cases[1])
    pair[which] = str(tmp_path / "gone.nii.gz")
    register_volume_dataset(name, cases=[two_cases[0], tuple(pair)], class_names=["liver"], modality="CT")
    with pytest.raises(InputError) as info:
        DatasetCatalog.get(name)
    assert info.value.source == str(tmp_path / "gone.nii.gz")
    assert f"listed in dataset '{name}' but does not exist" in str(info.value)


def test_duplicate_name(new_name, two_cases):
    name = new_name()
    register_volume_dataset(name, cases=two_cases, class_names=["liver"], modality="CT")
    with pytest.raises(InputError, match="already registered") as info:
        register_volume_dataset(name, cases=two_cases, class_names=["liver"], modality="CT")
    assert info.value.source == name
    with pytest.raises(InputError, match="already registered"):
        register_volume_dataset("btcv_train", cases=two_cases, class_names=["liver"], modality="CT")


def test_unknown_modality_at_registration(new_name, two_cases):
    name = new_name()
    with pytest.raises(InputError, match="unknown modality 'PET'") as info:
        register_volume_dataset(name, cases=two_cases, class_names=["liver"], modality="PET")
    assert info.value.source == name
    assert "CT" in str(info.value) and "MRI" in str(info.value)
    assert name not in DatasetCatalog.list()


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"class_names": ["a"], "modality": "CT", "dataset_json": "x"}, "exactly one of"),
        ({"modality": "CT"}, "needs class_names"),
        ({"class_names": ["a"]}, "needs a modality"),
        ({"class_names": ["a"], "modality": "CT", "unlisted_labels": "ignore"}, "unlisted_labels"),
        ({"class_names": ["a", "a"], "modality": "CT"}, "not unique"),
        ({"class_names": ["a", "b"], "label_ids": [1], "modality": "CT"}, "1 label ids for 2 classes"),
        ({"class_names": ["a", "b"], "label_ids": [0, 1], "modality": "CT"}, "non-zero"),
        ({"class_names": ["a", "b"], "label_ids": [3, 3], "modality": "CT"}, "distinct"),
    ],
)
def test_bad_registration_arguments(new_name, two_cases, kwargs, problem):
    name = new_name()
    kwargs = {"cases": two_cases, **kwargs}
    with pytest.raises(InputError, match=problem) as info:
        register_volume_dataset(name, **kwargs)
    assert info.value.source == name
    assert name not in DatasetCatalog.list()


def test_neither_cases_nor_dataset_json(new_name):
    with pytest.raises(InputError, match="exactly one of"):
        register_volume_dataset(new_name(), class_names=["a"], modality="CT")
