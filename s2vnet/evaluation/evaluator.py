"""``VolumeSegEvaluator``: Detectron2's evaluator contract for volumes, automatic and interactive.

``process(inputs, outputs)``: ``inputs`` are catalog dicts (one per volume); ``outputs`` hold label
volumes on the input's own grid: ``{"automatic": (z, y, x)}`` and/or ``{"protocols": {name: [(z, y, x)
after round 1, 2, ...]}}`` with ``name`` a click protocol of :mod:`s2vnet.evaluation.protocols`
(0 = background, c + 1 = class c). Ground truth is read from the dict's ``sem_seg_file_name`` and mapped
with the dataset's label map, so metrics use the input spacing.

``evaluate()`` gathers the rows of all ranks and, on rank 0, writes into ``output_dir``:

* ``metrics.json``: ``{"automatic": {"mean": {dice, hd95, nsd}, "per_class": {...}},
  "interactive": {protocol: {"clicks": [1, 2, ...], "dice_vs_clicks": [...], "per_click": {"k": {"mean",
  "per_class"}}, <the protocol's scores>}}}`` (means per class over cases, then over classes; the
  paper's scores are NoC@85 / NoC@90 by 3D Dice, cvpr25's the challenge's AUCs and final DSC / NSD);
* ``per_case.csv``: one row per case, class, protocol and round (``protocol`` empty and ``clicks`` 0
  for the automatic result);
* ``dice_vs_clicks.png``: mean DSC against clicks per class, one curve per protocol.

It returns the flat summary Detectron2 prints (:func:`flat_summary`).
"""

from __future__ import annotations

import csv
import json
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from s2vnet.data.datasets.register import label_map_for
from s2vnet.data.volume_io import read_label
from s2vnet.evaluation.metrics import per_class_metrics
from s2vnet.evaluation.protocols import CLICK_PROTOCOLS, ClickProtocol, finite_mean, protocols_named

FIELDS = ("case", "class", "stage", "protocol", "clicks", "dice", "hd95", "nsd", "gt_voxels", "pred_voxels")
METRICS = ("dice", "hd95", "nsd", "gt_voxels", "pred_voxels")


class VolumeSegEvaluator(DatasetEvaluator):
    """Per case and class DSC / HD95 / NSD, plus each click protocol's DSC-vs-clicks curve and scores."""

    def __init__(
        self,
        dataset_name: str,
        output_dir: str | os.PathLike | None,
        *,
        tolerance_mm: Sequence[float] | float = 2.0,
        empty_hd95: float = 50.0,
        noc_cap: int = 20,
    ) -> None:
        """
        Args:
            dataset_name: a registered dataset (class names and label map come from its metadata).
            output_dir: where metrics.json, per_case.csv and the curve go (None: write nothing).
            tolerance_mm: NSD tolerance, one value or one per class (a protocol may fix its own).
            empty_hd95: HD95 when a class is missing on exactly one side (WORD's script: 50 mm).
            noc_cap: NoC value when a DSC target is never reached (paper: 20).
        """
        self.dataset_name = dataset_name
        self.class_names = list(MetadataCatalog.get(dataset_name).stuff_classes)
        self.output_dir = Path(output_dir) if output_dir else None
        self.tolerance_mm, self.empty_hd95, self.noc_cap = tolerance_mm, empty_hd95, noc_cap
        self._rows: list[dict] = []

    def reset(self) -> None:
        self._rows = []

    def _ground_truth(self, record: dict) -> tuple[np.ndarray, tuple[float, float, float]]:
        label = read_label(record["sem_seg_file_name"])
        encoded = label_map_for(record.get("dataset_name", self.dataset_name)).encode(
            label.array, record["sem_seg_file_name"]
        )
        return encoded, label.geometry.spacing

    def _rows_for(self, case: str, protocol: ClickProtocol | None, clicks: int, pred, gt, spacing) -> list[dict]:
        """Rows ``{FIELDS}`` of one label volume, one per class."""
        fixed = None if protocol is None else protocol.nsd_tolerance_mm
        tolerance = self.tolerance_mm if fixed is None else fixed
        rows = per_class_metrics(pred, gt, spacing, len(self.class_names), tolerance, self.empty_hd95)
        stage, name = ("automatic", "") if protocol is None else ("interactive", protocol.name)
        return [
            {
                "case": case,
                "class": self.class_names[r["class"]],
                "stage": stage,
                "protocol": name,
                "clicks": clicks,
                **{k: r[k] for k in METRICS},
            }
            for r in rows
        ]

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        for record, output in zip(inputs, outputs):
            gt, spacing = self._ground_truth(record)
            case = record["case_id"]
            if output.get("automatic") is not None:
                self._rows += self._rows_for(case, None, 0, output["automatic"], gt, spacing)
            rounds = output.get("protocols", {})
            for protocol in protocols_named(list(rounds), "evaluator outputs") if rounds else []:
                for k, labels in enumerate(rounds[protocol.name], start=1):
                    self._rows += self._rows_for(case, protocol, k, labels, gt, spacing)

    def evaluate(self) -> OrderedDict:
        rows = [r for part in comm.gather(self._rows, dst=0) for r in part]
        if not comm.is_main_process():
            return OrderedDict()
        summary = summarize(rows, self.class_names, self.noc_cap)
        if self.output_dir is not None:
            self._write(rows, summary)
        return OrderedDict({"volume_seg": flat_summary(summary)})

    def _write(self, rows: list[dict], summary: dict) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        _atomic_text(self.output_dir / "metrics.json", json.dumps(summary, indent=1))
        tmp = self.output_dir / ".tmp-per_case.csv"
        with tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(self.output_dir / "per_case.csv")
        if summary.get("interactive"):
            plot_curves(summary, self.output_dir / "dice_vs_clicks.png", self.dataset_name)


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(text)
    tmp.replace(path)


def _stage_summary(rows: list[dict], class_names: list[str]) -> dict:
    """Means over cases per class, and over classes, for the rows of one stage (classes absent from GT skipped)."""
    present = [r for r in rows if r["gt_voxels"] > 0]
    per_class = {
        name: {m: finite_mean(r[m] for r in present if r["class"] == name) for m in ("dice", "hd95", "nsd")}
        for name in class_names
    }
    return {"mean": {m: finite_mean(r[m] for r in present) for m in ("dice", "hd95", "nsd")}, "per_class": per_class}


def _protocol_summary(rows: list[dict], class_names: list[str], protocol: ClickProtocol, noc_cap: int) -> dict:
    """The metrics.json entry of one click protocol from its rows."""
    rounds = sorted({r["clicks"] for r in rows})
    curve = {k: _stage_summary([r for r in rows if r["clicks"] == k], class_names) for k in rounds}
    return {
        "clicks": rounds,
        "dice_vs_clicks": [curve[k]["mean"]["dice"] for k in rounds],
        "per_click": {str(k): curve[k] for k in rounds},
        **protocol.score(rows, noc_cap),
    }


def summarize(rows: list[dict], class_names: list[str], noc_cap: int) -> dict:
    """The metrics.json structure (see the module docstring) from per-case rows."""
    out: dict = {}
    auto = [r for r in rows if r["stage"] == "automatic"]
    if auto:
        out["automatic"] = _stage_summary(auto, class_names)
    names = list(dict.fromkeys(r["protocol"] for r in rows if r["stage"] == "interactive"))
    if names:
        out["interactive"] = {
            name: _protocol_summary(
                [r for r in rows if r["protocol"] == name], class_names, CLICK_PROTOCOLS[name], noc_cap
            )
            for name in names
        }
    return out


def flat_summary(summary: dict) -> dict:
    """The few numbers Detectron2 prints: ``auto_<metric>``, and per protocol ``<prefix>dice_<k>click`` and its
    headline scores ``<prefix><score>`` (the paper's without prefix: ``dice_5click``, ``noc85``; ``cvpr25_dsc_auc``)."""
    flat = {}
    if "automatic" in summary:
        flat.update({f"auto_{m}": v for m, v in summary["automatic"]["mean"].items()})
    for name, inter in summary.get("interactive", {}).items():
        protocol = CLICK_PROTOCOLS[name]
        for k, d in zip(inter["clicks"], inter["dice_vs_clicks"]):
            flat[f"{protocol.flat_prefix}dice_{k}click"] = d
        flat.update({f"{protocol.flat_prefix}{key}": inter[key] for key, _ in protocol.score_labels})
    return flat


def plot_curves(summary: dict, path: Path, title: str) -> None:
    """Mean 3D DSC vs number of clicks per class (0 = automatic), one curve per click protocol."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, inter in summary["interactive"].items():
        xs, ys = list(inter["clicks"]), list(inter["dice_vs_clicks"])
        if "automatic" in summary:  # every protocol starts from the automatic result
            xs, ys = [0] + xs, [summary["automatic"]["mean"]["dice"]] + ys
        ax.plot(xs, ys, "o-", ms=4, label=name)
    ax.legend(title="click protocol", fontsize=8, title_fontsize=8)
    ax.set_xlabel("clicks per class (0 = automatic)")
    ax.set_ylabel("mean 3D DSC")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(f".tmp-{path.name}")
    fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    tmp.replace(path)
