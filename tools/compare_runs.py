#!/usr/bin/env python
"""Compare evaluations side by side: mean DSC against clicks per protocol, as a Markdown table and a PNG.

    python tools/compare_runs.py improved=output/demo/inference/demo_ct_test/metrics.json \\
        paper=output/demo_paper/inference/demo_ct_test/metrics.json --save docs/demo_modes --per-class

Each ``NAME=metrics.json`` is one evaluation (a model in one mode). Rows: runs; columns: automatic mean DSC,
then per click protocol the mean DSC after each click step and the protocol's headline scores. ``--save P``
writes ``P.md`` and ``P.png`` (one panel per protocol, one curve per run); ``--per-class`` adds, per protocol,
each class's DSC after the first and the last click step.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from s2vnet.errors import InputError, cli_errors
from s2vnet.evaluation.protocols import CLICK_PROTOCOLS


def _fmt(value) -> str:
    return "-" if value is None or value != value else f"{value:.3f}"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def load(spec: str) -> tuple[str, dict]:
    """``NAME=path`` -> (NAME, metrics.json contents)."""
    name, sep, path = spec.partition("=")
    if not sep:
        raise InputError(spec, "expected NAME=path/to/metrics.json")
    try:
        return name, json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(path, "no such metrics file (did the evaluation run?)") from None


def protocol_table(runs: list[tuple[str, dict]], protocol: str) -> str:
    """One row per run: automatic DSC, DSC after each click step, the protocol's scores."""
    inters = [(name, s.get("interactive", {}).get(protocol)) for name, s in runs]
    steps = max((len(i["clicks"]) for _, i in inters if i), default=0)
    labels = CLICK_PROTOCOLS[protocol].score_labels
    head = ["run", "auto DSC"] + [f"DSC {k}" for k in range(1, steps + 1)] + [label for _, label in labels]
    lines = [f"**{protocol}** (mean 3D DSC after k clicks per class)", "", _row(head), "|" + "---|" * len(head)]
    for (name, summary), (_, inter) in zip(runs, inters):
        auto = summary.get("automatic", {}).get("mean", {}).get("dice")
        curve = list(inter["dice_vs_clicks"]) if inter else []
        cells = [name, _fmt(auto)] + [_fmt(v) for v in curve] + ["-"] * (steps - len(curve))
        lines.append(_row(cells + [_fmt(inter.get(key)) if inter else "-" for key, _ in labels]))
    return "\n".join(lines)


def per_class_table(runs: list[tuple[str, dict]], protocol: str) -> str:
    """Per class: automatic DSC and the DSC after the first and the last click step, one column group per run."""
    head, names = ["class"], []
    for name, summary in runs:
        inter = summary.get("interactive", {}).get(protocol, {})
        last = str(max(inter.get("clicks", [0])))
        head += [f"{name} auto", f"{name} 1", f"{name} {last}"]
        names = names or list(summary.get("automatic", {}).get("per_class", {}))
    lines = [f"**{protocol}**, per class", "", _row(head), "|" + "---|" * len(head)]
    for cls in names:
        cells = [cls]
        for _, summary in runs:
            inter = summary.get("interactive", {}).get(protocol, {})
            per_click = inter.get("per_click", {})
            last = str(max(inter.get("clicks", [0])))
            cells.append(_fmt(summary.get("automatic", {}).get("per_class", {}).get(cls, {}).get("dice")))
            for k in ("1", last):
                cells.append(_fmt(per_click.get(k, {}).get("per_class", {}).get(cls, {}).get("dice")))
        lines.append(_row(cells))
    return "\n".join(lines)


def plot(runs: list[tuple[str, dict]], protocols: list[str], path: Path) -> None:
    """One panel per protocol: mean DSC against clicks per class (0 = automatic), one curve per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(protocols), figsize=(4.5 * len(protocols), 3.4), squeeze=False)
    for ax, protocol in zip(axes[0], protocols):
        for name, summary in runs:
            inter = summary.get("interactive", {}).get(protocol)
            if not inter:
                continue
            auto = summary.get("automatic", {}).get("mean", {}).get("dice")
            xs, ys = list(inter["clicks"]), list(inter["dice_vs_clicks"])
            if auto is not None:
                xs, ys = [0] + xs, [auto] + ys
            ax.plot(xs, ys, "o-", ms=4, label=name)
        ax.set(title=f"{protocol} protocol", xlabel="clicks per class (0 = automatic)", ylabel="mean DSC", ylim=(0, 1))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@cli_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="NAME=metrics.json, one per evaluation")
    parser.add_argument("--save", type=Path, default=None, help="write SAVE.md and SAVE.png")
    parser.add_argument("--per-class", action="store_true", help="add per-class tables")
    args = parser.parse_args(argv)
    runs = [load(spec) for spec in args.runs]
    protocols = [p for p in CLICK_PROTOCOLS if any(p in s.get("interactive", {}) for _, s in runs)]
    parts = [protocol_table(runs, p) for p in protocols]
    if args.per_class:
        parts += [per_class_table(runs, p) for p in protocols]
    text = "\n\n".join(parts)
    print(text)
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.with_suffix(".md").write_text(text + "\n")
        plot(runs, protocols, args.save.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
