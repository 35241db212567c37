"""``convergence``: Fig. 5, class-mean DSC against refinement rounds, with and without adaptive sampling.

Three curves, each the paper click protocol's rounds 1..``TEST.S2VNET.ROUNDS``:

* S2VNet: the fully equipped model (shared with ``table`` and ``ablation``);
* without adaptive sampling, evaluation-time switch: the *same* model evaluated with
  ``MODEL.S2VNET.ADAPTIVE_SAMPLING False`` (only the latest click's feature initialises a centroid; no training);
* without adaptive sampling, trained so: a *second* model trained and evaluated with the switch off. Eq. 8
  acts in training too (a clip has several clicks per class), so this is the paper's variant; the first
  curve pair isolates what the accumulation does at inference.
"""

from __future__ import annotations

from pathlib import Path

from repro import paper, results
from repro.ablation import NO_ADAPTIVE
from repro.datasets import Part
from repro.markdown import number, table
from repro.runs import Evaluation, Kit, Model, metrics_path
from repro.tables import evaluation as full_evaluation
from repro.tables import full_model


def curves(part: Part) -> dict[str, Evaluation]:
    """Curve label -> the evaluation that draws it."""
    full = full_model(part)
    trained = Model(
        f"{part.key}_no_adaptive", part, NO_ADAPTIVE, "Fig. 5: full model trained without adaptive sampling"
    )
    return {
        "S2VNet": full_evaluation(part, "interactive"),
        "w/o adaptive sampling (eval switch, same model)": Evaluation(
            f"{full.name}_interactive_no_adaptive",
            full,
            "interactive",
            "Fig. 5: the full model, adaptive sampling switched off at evaluation",
            NO_ADAPTIVE,
        ),
        "w/o adaptive sampling (second model)": Evaluation(
            f"{trained.name}_interactive", trained, "interactive", "Fig. 5: the model trained without adaptive sampling"
        ),
    }


def evaluations(part: Part) -> list[Evaluation]:
    return list(curves(part).values())


def read_curves(kit: Kit, part: Part) -> dict[str, dict[int, float]]:
    out = {}
    for label, e in curves(part).items():
        path = metrics_path(kit, e)
        out[label] = results.dice_curve(results.load(path), path)
    return out


def plot(data: dict[str, dict[int, float]], path: Path, title: str) -> None:
    """DSC against rounds, one line per curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, curve in data.items():
        ax.plot(list(curve), list(curve.values()), "o-", ms=3, label=label)
    ax.set(xlabel="refinement rounds (clicks per class)", ylabel="class-mean DSC (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(kit: Kit, part: Part, tiny: bool, png: Path | None = None) -> str:
    """Fig. 5 as a table of DSC per round (and a PNG when ``png`` is given)."""
    data = read_curves(kit, part)
    rounds = sorted({k for curve in data.values() for k in curve})
    body = [[str(k)] + [number(curve.get(k)) for curve in data.values()] for k in rounds]
    if png is not None:
        plot(data, png, f"Fig. 5 layout, {part.key}" + (" (--tiny)" if tiny else ""))
    title = f"# Fig. 5 on {part.key} ({part.test})" + (" (--tiny: demo data, not the paper's numbers)" if tiny else "")
    claim = "" if tiny else f"\n\nPaper: {paper.FIGURE_CLAIMS['fig5']}"
    return (
        f"{title}\n\nClass-mean DSC (%) after each round of the paper click protocol.{claim}\n\n"
        f"{table(['round'] + list(data), body)}\n"
    )
