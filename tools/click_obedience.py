#!/usr/bin/env python
"""How often a simulated click gets what it asked for: the clicked voxel's label right after its round.

    python tools/click_obedience.py --config-file configs/demo/s2vnet_r18_demo.yaml \\
        --weights output/demo/model_final.pth --dataset demo_ct_test [KEY VALUE ...]

For every case of the dataset and every click protocol of ``TEST.S2VNET.PROTOCOL``, the rounds run as in the
evaluation; after each round, a positive click is *obeyed* when its own voxel now holds its class, a negative
click when its voxel no longer does. Prints one row per protocol and class: clicks, obeyed positives and obeyed
negatives (counts and %). A model whose clicks are not obeyed on the clicked voxel itself cannot improve by
clicking, whatever the protocol.
"""

from __future__ import annotations

import argparse
from collections import Counter

from detectron2.data import DatasetCatalog, MetadataCatalog

from s2vnet.data.datasets.register import label_map_for
from s2vnet.data.preprocess import prepare_volume
from s2vnet.errors import cli_errors
from s2vnet.evaluation.runner import evaluation_plan, protocol_rng, run_protocol
from s2vnet.inference.api import Predictor


def obedience(run: dict) -> Counter:
    """Counts ``(class, positive, obeyed)`` over a protocol run's rounds (working-grid labels and clicks)."""
    counts: Counter = Counter()
    for labels, clicks in zip(run["rounds"], run["clicks"]):
        for c in clicks:
            z, y, x = (int(round(v)) for v in c.position)
            has_class = labels[z, y, x] == c.class_index + 1
            counts[(c.class_index, c.positive, has_class == c.positive)] += 1
    return counts


def _pct(obeyed: int, total: int) -> str:
    return f"{obeyed}/{total} ({100 * obeyed / total:.0f}%)" if total else "-"


@cli_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE pairs")
    args = parser.parse_args(argv)
    predictor = Predictor.from_files(args.config_file, args.weights, args.opts, device="cpu")
    engine, test = predictor.engine, predictor.cfg.TEST.S2VNET
    names = MetadataCatalog.get(args.dataset).stuff_classes
    totals = {p.name: Counter() for p, _ in evaluation_plan(test)}
    for record in DatasetCatalog.get(args.dataset):
        prepared = prepare_volume(
            record["file_name"],
            record["modality"],
            predictor.settings,
            record["sem_seg_file_name"],
            label_map_for(args.dataset),
        )
        features = engine.encode(prepared.image)
        start = engine.start(features)
        auto = engine.state_labels(start, features)
        for protocol, rounds in evaluation_plan(test):
            rng = protocol_rng(test.CLICK_SEED, record["case_id"], protocol.name)
            totals[protocol.name] += obedience(
                run_protocol(engine, features, start, auto, prepared, protocol, rounds, rng)
            )
    print("| protocol | class | positive clicks obeyed | negative clicks obeyed |")
    print("|---|---|---|---|")
    for name, counts in totals.items():
        for k, cls in enumerate(names):
            pos = [counts[(k, True, True)], counts[(k, True, True)] + counts[(k, True, False)]]
            neg = [counts[(k, False, True)], counts[(k, False, True)] + counts[(k, False, False)]]
            print(f"| {name} | {cls} | {_pct(*pos)} | {_pct(*neg)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
