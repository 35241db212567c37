"""``ablation``: Table 4 (key components, WORD test) from four models.

Reading of the table (``projects/S2VNet/TABLE4.md``): row 3 (HD95 4.64, DSC 87.36) is Table 1's automatic
S2VNet and row 6 (3.28 / 91.41) Table 1's interactive S2VNet, and Section 4.1 says one model serves both
settings, so rows 3 and 6 are one fully equipped model evaluated twice. Rows 1-3 are automatic numbers and
their check marks describe the evaluation (row 3's model has interaction); rows 2 and 5 differ only in the
setting, so they are one model without recurrent aggregation. Row 1 is that model without slice-to-volume
propagation, row 4 that model without adaptive sampling (Eq. 8 changes training too: a training clip has up to
``1 + INPUT.VOLUME.CLICKS.MAX_EXTRA`` clicks per class).
"""

from __future__ import annotations

from dataclasses import dataclass

from repro import paper, results
from repro.datasets import Part
from repro.markdown import number, table
from repro.runs import Evaluation, Kit, Model, metrics_path
from repro.tables import evaluation as full_evaluation
from repro.tables import full_model

NO_AGGREGATION = ("MODEL.S2VNET.AGGREGATION", "False")
NO_PROPAGATION = ("MODEL.S2VNET.PROPAGATION", "False") + NO_AGGREGATION
NO_ADAPTIVE = ("MODEL.S2VNET.ADAPTIVE_SAMPLING", "False")


@dataclass(frozen=True)
class Row:
    """One Table 4 row: its number, check marks (propagation, interaction, adaptive, aggregation), evaluation."""

    number: int
    marks: tuple[bool, bool, bool, bool]
    evaluation: Evaluation


def models(part: Part) -> dict[str, Model]:
    """The four models of Table 4, by role."""
    return {
        "no_propagation": Model(
            f"{part.key}_no_propagation",
            part,
            NO_PROPAGATION,
            "Table 4 row 1: each slice on its own (no propagation, no aggregation)",
        ),
        "no_aggregation": Model(
            f"{part.key}_no_aggregation", part, NO_AGGREGATION, "Table 4 rows 2 and 5: no recurrent aggregation"
        ),
        "no_aggregation_no_adaptive": Model(
            f"{part.key}_no_aggregation_no_adaptive",
            part,
            NO_AGGREGATION + NO_ADAPTIVE,
            "Table 4 row 4: no aggregation, no adaptive sampling (latest click only)",
        ),
        "full": full_model(part),
    }


def _eval(model: Model, setting: str, row: str) -> Evaluation:
    return Evaluation(f"{model.name}_{setting}", model, setting, f"{row}, {setting}")


def rows(part: Part) -> list[Row]:
    """Table 4's six rows and the evaluation each reads."""
    m = models(part)
    return [
        Row(1, (False, False, False, False), _eval(m["no_propagation"], "automatic", "Table 4 row 1")),
        Row(2, (True, False, False, False), _eval(m["no_aggregation"], "automatic", "Table 4 row 2")),
        Row(3, (True, False, False, True), full_evaluation(part, "automatic")),
        Row(4, (True, True, False, False), _eval(m["no_aggregation_no_adaptive"], "interactive", "Table 4 row 4")),
        Row(5, (True, True, True, False), _eval(m["no_aggregation"], "interactive", "Table 4 row 5")),
        Row(6, (True, True, True, True), full_evaluation(part, "interactive")),
    ]


def evaluations(part: Part) -> list[Evaluation]:
    return [r.evaluation for r in rows(part)]


def _scores(kit: Kit, e: Evaluation) -> results.Scores:
    path = metrics_path(kit, e)
    summary = results.load(path)
    return results.automatic(summary, path) if e.mode == "automatic" else results.interactive(summary, path)


def write(kit: Kit, part: Part, tiny: bool) -> str:
    """Table 4 with the paper's numbers next to this run's."""
    body = []
    for r in rows(part):
        got = _scores(kit, r.evaluation)
        hd95, dice = (None, None) if tiny else paper.TABLE4[r.number]
        setting = r.evaluation.mode + (f", {got.clicks} clicks/class" if got.clicks else "")
        body.append(
            [str(r.number)]
            + ["x" if m else "-" for m in r.marks]
            + [
                r.evaluation.model.name,
                setting,
                number(hd95),
                number(dice),
                number(got.mean["hd95"]),
                number(got.mean["dice"]),
            ]
        )
    head = [
        "#",
        "S2V propagation",
        "interaction init",
        "adaptive sampling",
        "recurrent aggregation",
        "model",
        "evaluated",
        "paper HD95",
        "paper DSC",
        "HD95",
        "DSC",
    ]
    title = f"# Table 4 on {part.key} ({part.test})" + (" (--tiny: demo data, not the paper's numbers)" if tiny else "")
    notes = (
        "Class-mean HD95 (mm) and DSC (%). Rows 3 and 6 are one model (Table 1's automatic and interactive "
        "S2VNet), rows 2 and 5 another; see projects/S2VNet/TABLE4.md."
    )
    return f"{title}\n\n{notes}\n\n{table(head, body)}\n"
