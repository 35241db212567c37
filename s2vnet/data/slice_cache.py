"""The slice cache: each volume preprocessed once into memory-mapped ``.npy`` arrays.

Training samples a few slices per volume per step; decoding a compressed NIfTI each time would
dominate the loader. The cache holds, per dataset and case::

    <CACHE_DIR>/<dataset>/manifest.json
    <CACHE_DIR>/<dataset>/<case_id>/image.npy     uint8 (z, y, x), normalised, working grid
    <CACHE_DIR>/<dataset>/<case_id>/label.npy     uint8 (z, y, x), 0 = background, c + 1 = class c
    <CACHE_DIR>/<dataset>/<case_id>/presence.npy  bool (z, K): class c present on slice z

The manifest records the preprocessing settings, the class list and, per case, the source files'
size and modification time. A case is rebuilt when its sources change; everything is rebuilt
when the settings or classes change. The manifest is rewritten after every case, so an
interrupted build resumes where it stopped; arrays are written under temporary names first, and the
CLI deletes a killed build's ``.tmp-*`` files before it starts.

CLI: ``python -m s2vnet.data.slice_cache --config-file CFG [--dataset NAME[,NAME]] [KEY VALUE ...]``
(``s2vnet-build-cache``); ``--dataset`` may be repeated.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from tqdm import tqdm

from s2vnet.data.datasets.register import label_map_for
from s2vnet.data.preprocess import PreprocessSettings, prepare_volume
from s2vnet.errors import InputError, cli_errors
from s2vnet.utils.atomic import remove_leftovers

FORMAT_VERSION = 1
ARRAYS = ("image", "label", "presence")


def fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """Identity of a source file (size + mtime) or DICOM folder (digest of its listing)."""
    path = Path(path)
    if path.is_dir():
        listing = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in path.iterdir() if p.is_file())
        return {"path": str(path.resolve()), "listing_sha1": hashlib.sha1(repr(listing).encode()).hexdigest()}
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _dataset_settings(name: str, settings: PreprocessSettings) -> dict[str, Any]:
    meta = MetadataCatalog.get(name)
    return _jsonable(
        {
            "format": FORMAT_VERSION,
            "preprocess": settings.to_dict(),
            "classes": list(meta.stuff_classes),
            "label_ids": list(meta.label_ids),
            "unlisted_labels": meta.unlisted_labels,
            "modality": meta.modality,
        }
    )


def _jsonable(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), so manifests compare equal."""
    return json.loads(json.dumps(value))


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}.npy")
    np.save(tmp, np.ascontiguousarray(array))
    os.replace(tmp, path)


def class_presence(label: np.ndarray, num_classes: int) -> np.ndarray:
    """bool ``(z, K)``: whether class ``c`` (label value ``c + 1``) occurs on slice ``z``."""
    presence = np.zeros((label.shape[0], num_classes + 1), dtype=bool)
    for z in range(label.shape[0]):
        presence[z, np.unique(label[z])] = True
    return presence[:, 1:]


class SliceCache:
    """Builds and reads the cache under ``root`` (config ``INPUT.VOLUME.CACHE_DIR``)."""

    def __init__(self, root: str | os.PathLike, settings: PreprocessSettings) -> None:
        self.root = Path(root)
        self.settings = settings.for_training()  # training slices keep their grid; only inference resizes

    def folder(self, dataset_name: str) -> Path:
        return self.root / dataset_name

    def _load_manifest(self, dataset_name: str, expected: dict) -> dict:
        path = self.folder(dataset_name) / "manifest.json"
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError):
            return {"settings": expected, "cases": {}}
        if manifest.get("settings") != expected:  # settings or classes changed: start over
            shutil.rmtree(self.folder(dataset_name), ignore_errors=True)
            return {"settings": expected, "cases": {}}
        return manifest

    def _write_manifest(self, dataset_name: str, manifest: dict) -> None:
        path = self.folder(dataset_name) / "manifest.json"
        tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}.json")
        tmp.write_text(json.dumps(manifest, indent=1))
        os.replace(tmp, path)

    def _is_fresh(self, entry: dict | None, record: dict, case_dir: Path) -> bool:
        if entry is None or entry.get("sources") != self._sources(record):
            return False
        return all((case_dir / f"{a}.npy").exists() for a in ARRAYS)

    @staticmethod
    def _sources(record: dict) -> dict:
        return _jsonable({"image": fingerprint(record["file_name"]), "label": fingerprint(record["sem_seg_file_name"])})

    def _build_case(self, dataset_name: str, record: dict, case_dir: Path) -> dict:
        prepared = prepare_volume(
            record["file_name"],
            record["modality"],
            self.settings,
            record["sem_seg_file_name"],
            label_map_for(dataset_name),
        )
        case_dir.mkdir(parents=True, exist_ok=True)
        num_classes = len(MetadataCatalog.get(dataset_name).stuff_classes)
        _save_npy(case_dir / "image.npy", prepared.image)
        _save_npy(case_dir / "label.npy", prepared.label)
        _save_npy(case_dir / "presence.npy", class_presence(prepared.label, num_classes))
        return {
            "sources": self._sources(record),
            "shape": list(prepared.image.shape),
            "spacing": list(prepared.spacing),
        }

    def build(self, dataset_name: str, progress: bool = True) -> list[dict]:
        """Bring the cache of ``dataset_name`` up to date and return its dicts with a ``"cache"`` entry.

        Each returned dict is the catalog dict plus ``"cache": {"image", "label", "presence": path,
        "shape": (z, y, x), "spacing": (z, y, x) mm}``.
        """
        records = DatasetCatalog.get(dataset_name)
        _check_unique_ids(dataset_name, records)
        expected = _dataset_settings(dataset_name, self.settings)
        manifest = self._load_manifest(dataset_name, expected)
        self.folder(dataset_name).mkdir(parents=True, exist_ok=True)
        for record in tqdm(records, desc=f"slice cache {dataset_name}", unit="case", disable=not progress):
            case_dir = self.folder(dataset_name) / record["case_id"]
            if not self._is_fresh(manifest["cases"].get(record["case_id"]), record, case_dir):
                manifest["cases"][record["case_id"]] = self._build_case(dataset_name, record, case_dir)
                self._write_manifest(dataset_name, manifest)
        self._drop_stale(dataset_name, manifest, {r["case_id"] for r in records})
        return [self._with_cache(dataset_name, r, manifest["cases"][r["case_id"]]) for r in records]

    def _drop_stale(self, dataset_name: str, manifest: dict, keep: set[str]) -> None:
        for case_id in [c for c in manifest["cases"] if c not in keep]:
            shutil.rmtree(self.folder(dataset_name) / case_id, ignore_errors=True)
            del manifest["cases"][case_id]
        self._write_manifest(dataset_name, manifest)

    def _with_cache(self, dataset_name: str, record: dict, entry: dict) -> dict:
        case_dir = self.folder(dataset_name) / record["case_id"]
        cache = {a: str(case_dir / f"{a}.npy") for a in ARRAYS}
        cache.update(shape=tuple(entry["shape"]), spacing=tuple(entry["spacing"]))
        return dict(record, cache=cache)


def _check_unique_ids(dataset_name: str, records: Sequence[dict]) -> None:
    seen: dict[str, str] = {}
    for r in records:
        if r["case_id"] in seen:
            raise InputError(
                r["file_name"],
                f"case id '{r['case_id']}' also used by {seen[r['case_id']]} in dataset '{dataset_name}'",
            )
        seen[r["case_id"]] = r["file_name"]


def load_cached_slices(cache: dict) -> dict[str, np.ndarray]:
    """Memory-map one case's cached arrays (nothing is decoded or copied until indexed)."""
    return {a: np.load(cache[a], mmap_mode="r") for a in ARRAYS}


def cached_dataset_dicts(cfg, dataset_names: Sequence[str], progress: bool = True) -> list[dict]:
    """Build (if needed) the cache of each dataset with ``cfg``'s settings and return all their dicts."""
    cache = SliceCache(cfg.INPUT.VOLUME.CACHE_DIR, PreprocessSettings.from_cfg(cfg))
    return [d for name in dataset_names for d in cache.build(name, progress=progress)]


@cli_errors
def main(argv: list[str] | None = None) -> int:
    from s2vnet.config import setup_cfg

    parser = argparse.ArgumentParser(description="Build the S2VNet slice cache for registered datasets.")
    parser.add_argument("--config-file", default="", help="config whose INPUT.VOLUME settings to use")
    parser.add_argument(
        "--dataset",
        action="append",
        default=[],
        metavar="NAME[,NAME]",
        help="dataset(s) to cache, repeatable (default: DATASETS.TRAIN and DATASETS.TEST)",
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE pairs")
    args = parser.parse_args(argv)
    cfg = setup_cfg(args.config_file, args.opts)
    names = [n for arg in args.dataset for n in arg.split(",") if n] or list(cfg.DATASETS.TRAIN) + list(
        cfg.DATASETS.TEST
    )
    if not names:
        raise InputError(args.config_file or "<config>", "no datasets given (--dataset or DATASETS.TRAIN)")
    unknown = [n for n in names if n not in DatasetCatalog.list()]
    if unknown:
        raise InputError(unknown[0], "no such registered dataset")
    for name in names:
        remove_leftovers(Path(cfg.INPUT.VOLUME.CACHE_DIR) / name)  # a killed build's .tmp-* files (one process here)
        dicts = cached_dataset_dicts(cfg, [name])
        slices = sum(d["cache"]["shape"][0] for d in dicts)
        print(f"{name}: {len(dicts)} cases, {slices} slices in {Path(cfg.INPUT.VOLUME.CACHE_DIR) / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
