"""``unified``: Fig. 6, the universal model against an automatic-only and an interactive-only model.

* universal: the fully equipped model (50 % of the classes of a training clip start from clicks), evaluated
  automatic and interactive;
* automatic-only: ``MODEL.S2VNET.INTERACTION False`` (clicks ignored in training), evaluated automatic;
* interactive-only: every class of every clip starts from clicks (``INPUT.VOLUME.CLICKS.INTERACTIVE_PROB 1.0``),
  evaluated interactive.

Parameters are counted on the model built from each config; training time is the sum of the ``Total training
time`` lines of the model's ``log.txt`` (one per training session, resumed ones included).
"""

from __future__ import annotations

import re
from datetime import timedelta

from repro import paper, results
from repro.datasets import REPO, Part
from repro.markdown import number, table
from repro.runs import Evaluation, Kit, Model, metrics_path, model_dir
from repro.tables import evaluation as full_evaluation
from repro.tables import full_model

TOTAL_TIME = re.compile(r"Total training time: (?:(\d+) days?, )?(\d+):(\d\d):(\d\d)")


def models(part: Part) -> dict[str, Model]:
    return {
        "universal": full_model(part),
        "automatic-only": Model(
            f"{part.key}_automatic_only",
            part,
            ("MODEL.S2VNET.INTERACTION", "False"),
            "Fig. 6: automatic-only model (clicks ignored in training)",
        ),
        "interactive-only": Model(
            f"{part.key}_interactive_only",
            part,
            ("INPUT.VOLUME.CLICKS.INTERACTIVE_PROB", "1.0"),
            "Fig. 6: interactive-only model (every class starts from clicks)",
        ),
    }


def scored(part: Part) -> dict[str, dict[str, Evaluation]]:
    """Model role -> {setting: evaluation}: the settings each model is scored in."""
    m = models(part)
    return {
        "universal": {
            "automatic": full_evaluation(part, "automatic"),
            "interactive": full_evaluation(part, "interactive"),
        },
        "automatic-only": {
            "automatic": Evaluation(
                f"{m['automatic-only'].name}_automatic",
                m["automatic-only"],
                "automatic",
                "Fig. 6: automatic-only model, automatic",
            )
        },
        "interactive-only": {
            "interactive": Evaluation(
                f"{m['interactive-only'].name}_interactive",
                m["interactive-only"],
                "interactive",
                "Fig. 6: interactive-only model, interactive",
            )
        },
    }


def evaluations(part: Part) -> list[Evaluation]:
    return [e for by_setting in scored(part).values() for e in by_setting.values()]


def parameter_count(kit: Kit, model: Model) -> int:
    """Parameters of ``model`` as its config builds it (on the CPU, no weights read)."""
    from detectron2.modeling import build_model

    from s2vnet.config import setup_cfg

    opts = [*model.part.overrides, *model.switches, *kit.extra, "MODEL.DEVICE", "cpu", "MODEL.SWIN_TIMM.PRETRAINED", ""]
    return sum(p.numel() for p in build_model(setup_cfg(str(REPO / model.part.config), opts)).parameters())


def training_seconds(kit: Kit, model: Model) -> float | None:
    """Sum of the ``Total training time`` lines of the model's log (None when there is none)."""
    log = model_dir(kit, model) / "log.txt"
    found = TOTAL_TIME.findall(log.read_text(errors="replace")) if log.is_file() else []
    if not found:
        return None
    return sum(
        timedelta(days=int(d or 0), hours=int(h), minutes=int(m), seconds=int(s)).total_seconds()
        for d, h, m, s in found
    )


def _dice(kit: Kit, e: Evaluation | None) -> float | None:
    if e is None:
        return None
    path = metrics_path(kit, e)
    summary = results.load(path)
    got = results.automatic(summary, path) if e.mode == "automatic" else results.interactive(summary, path)
    return got.mean["dice"]


def write(kit: Kit, part: Part, tiny: bool) -> str:
    """Fig. 6 as a table: parameters, training time and DSC of each model, and the task-specific pair's sum."""
    m, evals = models(part), scored(part)
    rows, pair = [], {"params": 0, "seconds": 0.0}
    for role, model in m.items():
        params, seconds = parameter_count(kit, model), training_seconds(kit, model)
        auto, inter = (_dice(kit, evals[role].get(s)) for s in ("automatic", "interactive"))
        if role != "universal":
            pair["params"] += params
            pair["seconds"] += seconds or float("nan")
        rows.append([role, model.name, number(params / 1e6), number(seconds, 0), number(auto), number(inter)])
    rows.append(["task-specific pair (sum)", "-", number(pair["params"] / 1e6), number(pair["seconds"], 0), "-", "-"])
    head = ["model", "folder", "parameters (M)", "training time (s)", "automatic DSC", "interactive DSC"]
    title = f"# Fig. 6 on {part.key} ({part.test})" + (" (--tiny: demo data, not the paper's numbers)" if tiny else "")
    claim = "" if tiny else f"\n\nPaper: {paper.FIGURE_CLAIMS['fig6']}"
    return (
        f"{title}\n\nClass-mean DSC (%); interactive: the paper click protocol's last round.{claim}\n\n"
        f"{table(head, rows)}\n"
    )
