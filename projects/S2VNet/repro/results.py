"""Numbers from an evaluation's ``metrics.json`` (:mod:`s2vnet.evaluation.evaluator`), as the paper reports them.

Every mean here is the mean over classes of the per-class means (each class averaged over the cases that
contain it), the convention of the paper's tables; classes with no finite value are left out. DSC and NSD
are returned in %, HD95 in mm. Interactive numbers are the ``paper`` click protocol's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from s2vnet.errors import InputError

METRICS = ("dice", "hd95", "nsd")
SCALE = {"dice": 100.0, "hd95": 1.0, "nsd": 100.0}
PROTOCOL = "paper"


@dataclass(frozen=True)
class Scores:
    """Per-class and class-mean metrics of one setting; ``clicks`` = clicks per class (0 = automatic)."""

    per_class: Mapping[str, Mapping[str, float]]
    mean: Mapping[str, float]
    clicks: int


def load(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(path, "no such metrics file (the evaluation has not run)") from None
    except ValueError as err:
        raise InputError(path, f"not a metrics.json ({err})") from None


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


def class_mean(per_class: Mapping[str, Mapping[str, float]], metric: str) -> float:
    """Mean over classes of ``per_class[c][metric]`` (scaled), NaN when no class has a value."""
    values = [v[metric] for v in per_class.values() if _finite(v.get(metric))]
    return SCALE[metric] * sum(values) / len(values) if values else float("nan")


def _scores(per_class: Mapping[str, Mapping[str, float]], clicks: int) -> Scores:
    scaled = {
        c: {m: SCALE[m] * v[m] if _finite(v.get(m)) else float("nan") for m in METRICS} for c, v in per_class.items()
    }
    return Scores(scaled, {m: class_mean(per_class, m) for m in METRICS}, clicks)


def automatic(summary: dict, source: str | Path) -> Scores:
    """The automatic setting of a ``metrics.json``."""
    if "automatic" not in summary:
        raise InputError(source, "holds no automatic result (evaluated with TEST.S2VNET.MODE interactive?)")
    return _scores(summary["automatic"]["per_class"], 0)


def interactive(summary: dict, source: str | Path, clicks: int | None = None) -> Scores:
    """The interactive setting after ``clicks`` clicks per class (default: the last round evaluated)."""
    runs = summary.get("interactive", {})
    if PROTOCOL not in runs:
        raise InputError(source, f"holds no '{PROTOCOL}' click-protocol result")
    run = runs[PROTOCOL]
    clicks = max(run["clicks"]) if clicks is None else clicks
    if str(clicks) not in run["per_click"]:
        raise InputError(source, f"has no result after {clicks} clicks (evaluated: {run['clicks']})")
    return _scores(run["per_click"][str(clicks)]["per_class"], clicks)


def dice_curve(summary: dict, source: str | Path) -> dict[int, float]:
    """Class-mean DSC (%) after each round of the paper protocol: ``{clicks: DSC}``."""
    run = summary.get("interactive", {}).get(PROTOCOL)
    if run is None:
        raise InputError(source, f"holds no '{PROTOCOL}' click-protocol result")
    return {int(k): class_mean(run["per_click"][str(k)]["per_class"], "dice") for k in run["clicks"]}
