"""Evaluating a model on a registered dataset: automatic and simulated-click interactive segmentation.

Per volume: preprocess (same path as the slice cache), encode the slices once, run the automatic sweep,
then, for each click protocol of ``TEST.S2VNET.PROTOCOL`` (:mod:`s2vnet.evaluation.protocols`), start
again from the automatic result and run the protocol's rounds: its clicks, simulated on the working
grid, each followed by an interactive round of decoder sweeps. Predictions go back to the input grid for
the metrics (and, optionally, to NIfTI files).
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm
from tqdm import tqdm

from s2vnet.data.datasets.register import label_map_for
from s2vnet.data.preprocess import PreparedVolume, PreprocessSettings, prepare_volume
from s2vnet.data.volume_io import write_volume
from s2vnet.evaluation.evaluator import VolumeSegEvaluator
from s2vnet.evaluation.protocols import ClickProtocol, protocols_named
from s2vnet.inference.volume import InteractionState, VolumeFeatures, VolumeInference
from s2vnet.utils.visualize import save_montage

MODES = {"automatic": (True, False), "interactive": (False, True), "both": (True, True)}
# The grid the runner simulates clicks on: the network's (prepared.image / prepared.label).
CLICK_FRAME = "working"


def protocol_rng(seed: int, case_id: str, protocol: str) -> np.random.Generator:
    """The tie-breaking generator of one case and protocol (independent of the other protocols run)."""
    return np.random.default_rng([seed, zlib.crc32(case_id.encode()), zlib.crc32(protocol.encode())])


def run_protocol(
    engine: VolumeInference,
    features: VolumeFeatures,
    start: InteractionState,
    automatic: np.ndarray,
    prepared: PreparedVolume,
    protocol: ClickProtocol,
    rounds: int,
    rng: np.random.Generator,
) -> dict:
    """``rounds`` rounds of one click protocol from the automatic state.

    Args:
        features: the case's encoded slices; start: the automatic state; automatic: its labels ``(Z, Y, X)``.
        prepared: the case on the working grid (``label`` is the ground truth the clicks are simulated on).

    Returns:
        ``{"rounds": [labels (Z, Y, X) after round 1, 2, ...], "clicks": [[Click, ...] per round]}``, working grid.
    """
    state, current = start, automatic
    out: dict = {"rounds": [], "clicks": []}
    for r in range(rounds):
        clicks = protocol.place(
            current, prepared.label, engine.num_classes, rng, prepared.spacing, r, frame=CLICK_FRAME
        )
        if clicks:  # no error left: the volume stays as it is
            before, state = state, engine.interactive_round(features, state, clicks)
            current = engine.state_labels(state, features, since=(before, current))
        out["rounds"].append(current)
        out["clicks"].append(clicks)
    return out


def run_case(
    engine: VolumeInference,
    prepared: PreparedVolume,
    plan: Sequence[tuple[ClickProtocol, int]],
    rng_for: Callable[[str], np.random.Generator],
    automatic: bool = True,
) -> dict:
    """Automatic labels and each protocol's rounds, all on the working grid ``(Z, Y, X)``; slices encoded once.

    Args:
        plan: ``[(protocol, rounds), ...]`` to run, each from the automatic result.
        rng_for: ``fn(protocol name) -> np.random.Generator`` for that protocol's tie breaks.
        automatic: keep the automatic labels in the result.

    Returns:
        ``{"automatic": labels or None, "protocols": {name: run_protocol(...)}}``.
    """
    features = engine.encode(prepared.image)
    start = engine.start(features)
    auto = engine.labels(start.fused, features.image_hw, features.padded_hw)
    runs = {
        p.name: run_protocol(engine, features, start, auto, prepared, p, rounds, rng_for(p.name)) for p, rounds in plan
    }
    return {"automatic": auto if automatic else None, "protocols": runs}


def evaluation_plan(test) -> list[tuple[ClickProtocol, int]]:
    """``[(protocol, rounds), ...]`` of ``cfg.TEST.S2VNET`` (none when the mode is automatic only)."""
    if not MODES[test.MODE][1]:
        return []
    return [(p, p.num_rounds(test.ROUNDS)) for p in protocols_named(test.PROTOCOL)]


def evaluate_dataset(
    cfg, model, dataset_name: str, output_dir: str | Path | None, evaluator: DatasetEvaluator | None = None
) -> dict:
    """Run the evaluation protocol of ``cfg.TEST.S2VNET`` on one dataset; cases are split over ranks.

    ``evaluator`` receives each case as ``process([record], [{"automatic", "protocols"}])`` (labels on the input
    grid, see :mod:`s2vnet.evaluation.evaluator`); None: a :class:`VolumeSegEvaluator` from ``TEST.S2VNET``.
    Returns ``evaluator.evaluate()``.
    """
    test = cfg.TEST.S2VNET
    automatic = MODES[test.MODE][0]
    plan = evaluation_plan(test)
    records = DatasetCatalog.get(dataset_name)[comm.get_rank() :: comm.get_world_size()]
    if evaluator is None:
        tolerance = list(test.NSD_TOLERANCE_MM)
        evaluator = VolumeSegEvaluator(
            dataset_name,
            output_dir,
            tolerance_mm=tolerance[0] if len(tolerance) == 1 else tolerance,
            empty_hd95=test.EMPTY_HD95,
            noc_cap=test.NOC_CAP,
        )
    evaluator.reset()
    engine = VolumeInference.from_cfg(model, cfg)
    settings, label_map = PreprocessSettings.from_cfg(cfg), label_map_for(dataset_name)
    for record in tqdm(records, desc=f"evaluate {dataset_name}", unit="volume"):
        prepared = prepare_volume(
            record["file_name"], record["modality"], settings, record["sem_seg_file_name"], label_map
        )
        rng_for = functools.partial(protocol_rng, test.CLICK_SEED, record["case_id"])
        result = run_case(engine, prepared, plan, rng_for, automatic)
        on_input = {
            "automatic": None if result["automatic"] is None else prepared.to_input_grid(result["automatic"]),
            "protocols": {
                name: [prepared.to_input_grid(r) for r in run["rounds"]] for name, run in result["protocols"].items()
            },
        }
        if output_dir and test.SAVE_PREDICTIONS:
            save_case(
                Path(output_dir), record, prepared, result, on_input, MetadataCatalog.get(dataset_name).stuff_classes
            )
        evaluator.process([record], [on_input])
    return evaluator.evaluate()


def save_case(folder: Path, record: dict, prepared: PreparedVolume, result: dict, on_input: dict, class_names) -> None:
    """NIfTI predictions on the input grid, and a PNG montage: ground truth | automatic | each protocol's last round.

    Files: ``<case>_automatic.nii.gz``, ``<case>_<protocol>_clicks<N>.nii.gz`` (after the protocol's N rounds) and
    ``<case>_montage.png`` (each protocol's column shows its clicks of every round on the slices drawn).
    """
    folder.mkdir(parents=True, exist_ok=True)
    case = record["case_id"]
    if on_input["automatic"] is not None:
        write_volume(on_input["automatic"], prepared.geometry, folder / f"{case}_automatic.nii.gz")
    for name, rounds in on_input["protocols"].items():
        if rounds:
            write_volume(rounds[-1], prepared.geometry, folder / f"{case}_{name}_clicks{len(rounds)}.nii.gz")
    columns = [("ground truth", prepared.label, [])]
    if result["automatic"] is not None:
        columns.append(("automatic", result["automatic"], []))
    for name, run in result["protocols"].items():
        if run["rounds"]:
            clicks = [c for round_clicks in run["clicks"] for c in round_clicks]
            columns.append((f"{name}, {len(run['rounds'])} rounds", run["rounds"][-1], clicks))
    save_montage(
        str(folder / f"{case}_montage.png"), prepared.image, columns, class_names, f"{record['dataset_name']} / {case}"
    )
