"""Evaluating a model on a registered dataset: automatic and simulated-click interactive segmentation.

Per volume: preprocess (same path as the slice cache), encode the slices once, run the automatic sweep,
then ``TEST.S2VNET.ROUNDS`` rounds of the click protocol (:mod:`s2vnet.evaluation.clicks`, one click per
class per round, simulated on the working grid) each followed by an interactive round of decoder
sweeps. Predictions go back to the input grid for the metrics (and, optionally, to NIfTI files).
"""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm
from tqdm import tqdm

from s2vnet.data.datasets.register import label_map_for
from s2vnet.data.preprocess import PreparedVolume, PreprocessSettings, prepare_volume
from s2vnet.data.volume_io import write_volume
from s2vnet.evaluation.clicks import simulate_round
from s2vnet.evaluation.evaluator import VolumeSegEvaluator
from s2vnet.inference.volume import Click, VolumeInference
from s2vnet.utils.visualize import save_montage

MODES = {"automatic": (True, False), "interactive": (False, True), "both": (True, True)}


def run_case(engine: VolumeInference, prepared: PreparedVolume, rounds: int, rng: np.random.Generator,
             automatic: bool = True) -> dict:
    """Automatic labels and the labels after each click round, all on the working grid ``(Z, Y, X)``."""
    features = engine.encode(prepared.image)
    state = engine.start(features)
    current = engine.labels(state.fused, features.image_hw, features.padded_hw)
    out = {"automatic": current if automatic else None, "rounds": [], "clicks": []}
    for r in range(rounds):
        clicks = simulate_round(current, prepared.label, engine.num_classes, rng, prepared.spacing, round_index=r)
        if clicks:  # no error left: the volume stays as it is
            state = engine.interactive_round(features, state, [Click(c["class"], *c["voxel"], c["positive"]) for c in clicks])
            current = engine.labels(state.fused, features.image_hw, features.padded_hw)
        out["rounds"].append(current)
        out["clicks"].append(clicks)
    return out


def evaluate_dataset(cfg, model, dataset_name: str, output_dir: str | Path | None,
                     evaluator: DatasetEvaluator | None = None) -> dict:
    """Run the evaluation protocol of ``cfg.TEST.S2VNET`` on one dataset; cases are split over ranks.

    ``evaluator`` receives each case as ``process([record], [{"automatic", "rounds"}])`` (labels on the input
    grid, see :mod:`s2vnet.evaluation.evaluator`); None: a :class:`VolumeSegEvaluator` from ``TEST.S2VNET``.
    Returns ``evaluator.evaluate()``.
    """
    test = cfg.TEST.S2VNET
    automatic, interactive = MODES[test.MODE]
    records = DatasetCatalog.get(dataset_name)[comm.get_rank()::comm.get_world_size()]
    if evaluator is None:
        tolerance = list(test.NSD_TOLERANCE_MM)
        evaluator = VolumeSegEvaluator(dataset_name, output_dir,
                                       tolerance_mm=tolerance[0] if len(tolerance) == 1 else tolerance,
                                       empty_hd95=test.EMPTY_HD95, noc_cap=test.NOC_CAP)
    evaluator.reset()
    engine = VolumeInference.from_cfg(model, cfg)
    settings, label_map = PreprocessSettings.from_cfg(cfg), label_map_for(dataset_name)
    for record in tqdm(records, desc=f"evaluate {dataset_name}", unit="volume"):
        prepared = prepare_volume(record["file_name"], record["modality"], settings, record["sem_seg_file_name"], label_map)
        rng = np.random.default_rng([test.CLICK_SEED, zlib.crc32(record["case_id"].encode())])
        result = run_case(engine, prepared, test.ROUNDS if interactive else 0, rng, automatic)
        on_input = {"automatic": None if result["automatic"] is None else prepared.to_input_grid(result["automatic"]),
                    "rounds": [prepared.to_input_grid(r) for r in result["rounds"]]}
        if output_dir and test.SAVE_PREDICTIONS:
            save_case(Path(output_dir), record, prepared, result, on_input, MetadataCatalog.get(dataset_name).stuff_classes)
        evaluator.process([record], [on_input])
    return evaluator.evaluate()


def save_case(folder: Path, record: dict, prepared: PreparedVolume, result: dict, on_input: dict, class_names) -> None:
    """NIfTI predictions on the input grid and a PNG montage (ground truth | automatic | last round)."""
    folder.mkdir(parents=True, exist_ok=True)
    case = record["case_id"]
    if on_input["automatic"] is not None:
        write_volume(on_input["automatic"], prepared.geometry, folder / f"{case}_automatic.nii.gz")
    if on_input["rounds"]:
        write_volume(on_input["rounds"][-1], prepared.geometry, folder / f"{case}_clicks{len(on_input['rounds'])}.nii.gz")
    columns = [("ground truth", prepared.label)]
    if result["automatic"] is not None:
        columns.append(("automatic", result["automatic"]))
    if result["rounds"]:
        columns.append((f"after {len(result['rounds'])} click rounds", result["rounds"][-1]))
    save_montage(str(folder / f"{case}_montage.png"), prepared.image, columns, class_names, f"{record['dataset_name']} / {case}",
                 clicks=result["clicks"])
