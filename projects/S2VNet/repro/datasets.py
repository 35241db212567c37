"""What the kit runs per dataset: config, catalog names, the paper's splits and the metric conventions.

A dataset has one or more *parts*, each trained and evaluated on its own (AMOS: a CT model and an MRI model;
Table 3's "average" is the mean of the two). ``--tiny`` swaps every part for the CPU demo data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from s2vnet.errors import InputError

REPO = Path(__file__).resolve().parents[3]
TINY_CONFIG = "projects/S2VNet/configs/tiny.yaml"


@dataclass(frozen=True)
class Part:
    """One trained model's data.

    Attributes:
        key: part name ("btcv", "word", "amos_ct", "amos_mri"); the paper's numbers are keyed by it.
        config: config file, relative to the repository root.
        train / test: catalog names of the training and the reported evaluation split.
        overrides: extra ``KEY VALUE`` pairs for this part (the tiny parts set their datasets).
    """

    key: str
    config: str
    train: str
    test: str
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset of the paper.

    Attributes:
        parts: its models' data; splits: catalog name -> number of cases in the paper's split.
        convention: how its official evaluation averages, for the tables' notes.
        tiny_parts / tiny_splits: the same on the demo data (``--tiny``).
    """

    name: str
    parts: tuple[Part, ...]
    splits: Mapping[str, int]
    convention: str
    tiny_parts: tuple[Part, ...] = field(default=())
    tiny_splits: Mapping[str, int] = field(
        default_factory=lambda: MappingProxyType({"demo_ct_train": 1, "demo_ct_test": 1})
    )

    def parts_for(self, tiny: bool) -> tuple[Part, ...]:
        return self.tiny_parts if tiny else self.parts

    def splits_for(self, tiny: bool) -> Mapping[str, int]:
        return self.tiny_splits if tiny else self.splits


def _tiny(key: str, train: str = "demo_ct_train", test: str = "demo_ct_test") -> Part:
    """A part on the demo data; the tiny config's own datasets are demo_ct_train / demo_ct_test."""
    sets = (
        ()
        if (train, test) == ("demo_ct_train", "demo_ct_test")
        else ("DATASETS.TRAIN", f"('{train}',)", "DATASETS.TEST", f"('{test}',)")
    )
    return Part(key, TINY_CONFIG, train, test, sets)


DATASETS: Mapping[str, DatasetSpec] = MappingProxyType(
    {
        "btcv": DatasetSpec(
            "btcv",
            (Part("btcv", "configs/btcv/s2vnet_swinb.yaml", "btcv_train", "btcv_val"),),
            MappingProxyType({"btcv_train": 24, "btcv_val": 6}),
            "BTCV has no official script for the 24 / 6 split (paper, 4.1; cases 35-40 validate, as in UNETR and "
            "nnFormer): Table 2 and the works it compares report each organ's DSC over the 6 validation cases and "
            "the mean over the 13 organs.",
            (_tiny("btcv"),),
        ),
        "word": DatasetSpec(
            "word",
            (Part("word", "configs/word/s2vnet_swinb.yaml", "word_train", "word_test"),),
            MappingProxyType({"word_train": 100, "word_val": 20, "word_test": 30}),
            "WORD (word_metrics_computing.py of HiLab-git/WORD): medpy DSC and HD95 per case and organ in a "
            "(cases, 16) array; an organ empty in the prediction or the label scores DSC 0 and HD95 50 mm; the table "
            "means average that array, which equals per-organ means averaged over organs (every case has every row).",
            (_tiny("word"),),
        ),
        "amos": DatasetSpec(
            "amos",
            (
                Part("amos_ct", "configs/amos/s2vnet_swinb_ct.yaml", "amos_ct_train", "amos_ct_val"),
                Part("amos_mri", "configs/amos/s2vnet_swinb_mri.yaml", "amos_mri_train", "amos_mri_val"),
            ),
            MappingProxyType({"amos_ct_train": 200, "amos_ct_val": 100, "amos_mri_train": 40, "amos_mri_val": 20}),
            "AMOS22 (its evaluation page): DSC and NSD per organ and case, averaged over organs and cases; Table 3's "
            "average column is the mean of the CT and the MRI column.",
            (_tiny("amos_ct"), _tiny("amos_mri", "demo_mr", "demo_mr")),
            MappingProxyType({"demo_ct_train": 1, "demo_ct_test": 1, "demo_mr": 1}),
        ),
    }
)


def dataset(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` called ``name`` (btcv, word, amos)."""
    if name not in DATASETS:
        raise InputError(name, f"unknown dataset; known: {', '.join(DATASETS)}")
    return DATASETS[name]


def single_part(name: str, tiny: bool) -> Part:
    """The one part of a single-model dataset (the ablations run on one)."""
    parts = dataset(name).parts_for(tiny)
    if len(parts) != 1:
        raise InputError(name, f"has {len(parts)} models ({', '.join(p.key for p in parts)}); pick btcv or word")
    return parts[0]
