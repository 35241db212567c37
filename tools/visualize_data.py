#!/usr/bin/env python
"""Write PNGs of what S2VNet's training loader sees, to check a dataset registration by eye.

    python tools/visualize_data.py --config-file configs/demo/s2vnet_r18_demo.yaml \
        --dataset demo_ct_train --source dataloader --num 4 --output-dir output/vis

``--source dataloader``: clips from ``VolumeDatasetMapper`` (the three slices after the shared
LSJ/flip, class colours, clicks: circle = positive, cross = negative, padding tinted blue).
``--source annotation``: evenly spaced full slices of each cached volume with their labels.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from tqdm import tqdm

from s2vnet.config import setup_cfg
from s2vnet.data.dataset_mapper import VolumeDatasetMapper
from s2vnet.data.slice_cache import cached_dataset_dicts, load_cached_slices
from s2vnet.errors import InputError, cli_errors
from s2vnet.utils.visualize import save_panel


def dataloader_panels(clip: dict) -> list[dict]:
    panels = []
    for z, s in zip(clip["slice_indices"], clip["slices"]):
        c = s["clicks"]
        clicks = (c["coords"].numpy(), c["classes"].numpy(), c["positive"].numpy()) if len(c["coords"]) else None
        panels.append(
            {"image": s["image"][0].numpy(), "label": s["sem_seg"].numpy(), "title": f"z = {z}", "clicks": clicks}
        )
    return panels


def annotation_panels(record: dict, count: int) -> list[dict]:
    arrays = load_cached_slices(record["cache"])
    depth = arrays["image"].shape[0]
    zs = np.unique(np.linspace(0, depth - 1, count + 2)[1:-1].round().astype(int))
    return [
        {
            "image": np.asarray(arrays["image"][z]),
            "label": np.asarray(arrays["label"][z]),
            "title": f"z = {z} / {depth}",
        }
        for z in zs
    ]


@cli_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Visualise S2VNet training data.")
    parser.add_argument("--config-file", default="")
    parser.add_argument("--dataset", required=True, help="a registered dataset name")
    parser.add_argument("--source", choices=("dataloader", "annotation"), default="dataloader")
    parser.add_argument(
        "--num", type=int, default=4, help="clips per case (dataloader) or slices per case (annotation)"
    )
    parser.add_argument("--output-dir", default="output/visualize")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE pairs")
    args = parser.parse_args(argv)
    if args.dataset not in DatasetCatalog.list():
        raise InputError(args.dataset, "no such registered dataset")
    cfg = setup_cfg(args.config_file, args.opts)
    names = MetadataCatalog.get(args.dataset).stuff_classes
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    mapper = VolumeDatasetMapper(cfg)
    rng = np.random.default_rng(args.seed)
    written = 0
    for record in tqdm(cached_dataset_dicts(cfg, [args.dataset]), desc="visualize", unit="case"):
        if args.source == "annotation":
            save_panel(
                str(out / f"{args.dataset}_{record['case_id']}_annotation.png"),
                annotation_panels(record, args.num),
                names,
                f"{args.dataset} / {record['case_id']} (cached labels)",
            )
            written += 1
            continue
        for k in range(args.num):
            clip = mapper(record, rng=rng)
            title = f"{args.dataset} / {record['case_id']} clip {k}; interactive: " + (
                ", ".join(names[c] for c in clip["interactive_classes"].tolist()) or "none"
            )
            save_panel(
                str(out / f"{args.dataset}_{record['case_id']}_clip{k}.png"), dataloader_panels(clip), names, title
            )
            written += 1
    print(f"wrote {written} PNGs to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
