"""``table btcv|word|amos``: the paper's Tables 1-3 layout from one fully equipped model per dataset part.

Each part's model is evaluated twice, automatic and interactive (the paper's click protocol, the last round
evaluated: ``TEST.S2VNET.ROUNDS``, 15 in the paper configs). Section 4.1: one model serves both settings.
"""

from __future__ import annotations

from repro import paper, results
from repro.datasets import DatasetSpec, Part
from repro.markdown import number, table
from repro.runs import Evaluation, Kit, Model, metrics_path

SETTINGS = ("automatic", "interactive")


def full_model(part: Part) -> Model:
    """The fully equipped model of a part (every Table 4 switch on: the config as it is)."""
    return Model(f"{part.key}_full", part, (), "S2VNet with every component (the config as it is)")


def evaluation(part: Part, setting: str) -> Evaluation:
    """The full model of ``part`` evaluated in ``setting``."""
    return Evaluation(
        f"{part.key}_full_{setting}", full_model(part), setting, f"{part.key} full model, {setting} ({part.test})"
    )


def evaluations(spec: DatasetSpec, tiny: bool) -> list[Evaluation]:
    return [evaluation(part, setting) for part in spec.parts_for(tiny) for setting in SETTINGS]


def scores(kit: Kit, part: Part, setting: str) -> results.Scores:
    path = metrics_path(kit, evaluation(part, setting))
    summary = results.load(path)
    return results.automatic(summary, path) if setting == "automatic" else results.interactive(summary, path)


def _paper_cells(row: paper.PaperRow | None, classes: list[str]) -> list[str]:
    if row is None:
        return ["-"] * (3 + len(classes))
    means = [number(row.mean.get(m)) for m in ("hd95", "dice", "nsd")]
    return means + [number(row.per_class.get(c)) for c in classes]


def part_table(kit: Kit, part: Part, tiny: bool) -> str:
    """Per-class DSC and the class means of one part: paper row, then this run, per setting."""
    got = {s: scores(kit, part, s) for s in SETTINGS}
    classes = list(got["automatic"].per_class)
    rows = []
    for setting in SETTINGS:
        ours = got[setting]
        published = None if tiny else paper.TABLES.get((part.key, setting))
        label = f"{setting} ({ours.clicks} clicks/class)" if ours.clicks else setting
        rows.append([setting, published.source if published else "paper: -"] + _paper_cells(published, classes))
        rows.append(
            [label, "this run"]
            + [number(ours.mean[m]) for m in ("hd95", "dice", "nsd")]
            + [number(ours.per_class[c]["dice"]) for c in classes]
        )
    head = ["setting", "source", "mean HD95 (mm)", "mean DSC", "mean NSD"] + [f"{c} DSC" for c in classes]
    return f"**{part.key}** ({part.test})\n\n" + table(head, rows)


def average_table(kit: Kit, spec: DatasetSpec, tiny: bool) -> str:
    """Table 3's layout: DSC and NSD per part and their average (AMOS: CT, MRI, average)."""
    parts = spec.parts_for(tiny)
    head = (
        ["setting", "source"] + [f"{p.key} {m}" for p in parts for m in ("DSC", "NSD")] + ["average DSC", "average NSD"]
    )
    rows = []
    for setting in SETTINGS:
        got = [scores(kit, p, setting) for p in parts]
        avg = [sum(g.mean[m] for g in got) / len(got) for m in ("dice", "nsd")]
        ours = [number(g.mean[m]) for g in got for m in ("dice", "nsd")] + [number(v) for v in avg]
        published = [None if tiny else paper.TABLES.get((p.key, setting)) for p in parts]
        published.append(None if tiny else paper.TABLES.get((spec.name, setting)))
        cells = [number(r.mean.get(m)) if r else "-" for r in published for m in ("dice", "nsd")]
        source = published[-1].source.rsplit(",", 1)[0] if published[-1] else "paper: -"
        rows += [[setting, source] + cells, [setting, "this run"] + ours]
    return table(head, rows)


def write(kit: Kit, spec: DatasetSpec, tiny: bool) -> str:
    """The Markdown report of ``table <dataset>``."""
    parts = spec.parts_for(tiny)
    sections = [
        f"# {spec.name}: the paper's table layout" + (" (--tiny: demo data, not the paper's)" if tiny else ""),
        "Means are per-class means averaged over classes (DSC, NSD in %; HD95 in mm). Interactive: the "
        "paper's click protocol, one click per class per round, at the last round evaluated.",
        f"Official convention: {spec.convention}",
    ]
    if len(parts) > 1:
        sections.append(average_table(kit, spec, tiny))
    sections += [part_table(kit, p, tiny) for p in parts]
    return "\n\n".join(sections) + "\n"
