#!/usr/bin/env python
"""Print (and save as Markdown) the per-class table of an evaluation's metrics.json.

    python tools/demo_table.py output/demo/inference/demo_ct_test/metrics.json --clicks 1 5 --protocol paper

First table: automatic DSC / HD95 / NSD per class, and the DSC after each requested number of clicks per class
of one click protocol. Second table: each protocol's own scores (paper: NoC@85/90 by 3D Dice; cvpr25: the
challenge's DSC_AUC, NSD_AUC, final DSC and NSD).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from s2vnet.errors import InputError, cli_errors
from s2vnet.evaluation.protocols import CLICK_PROTOCOLS


def _fmt(value) -> str:
    return "-" if value is None or value != value else f"{value:.3f}"  # NaN: class absent


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def table(summary: dict, clicks: list[int], protocol: str = "paper") -> str:
    """Markdown table, one row per class plus the mean: automatic metrics and ``protocol``'s DSC after ``clicks``."""
    auto = summary.get("automatic", {}).get("per_class", {})
    per_click = summary.get("interactive", {}).get(protocol, {}).get("per_click", {})
    available = [k for k in clicks if str(k) in per_click]
    head = ["class", "auto DSC", "auto HD95 (mm)", "auto NSD"] + [
        f"{protocol} DSC {k} click{'s' if k > 1 else ''}" for k in available
    ]
    lines = [_row(head), "|" + "---|" * len(head)]
    names = list(auto) or (list(per_click[str(available[0])]["per_class"]) if available else [])
    for name in names + ["mean"]:
        row = auto.get(name) if name != "mean" else summary.get("automatic", {}).get("mean")
        cells = [name] + ([_fmt(row[m]) for m in ("dice", "hd95", "nsd")] if row else ["-"] * 3)
        for k in available:
            entry = per_click[str(k)]["mean"] if name == "mean" else per_click[str(k)]["per_class"].get(name)
            cells.append(_fmt(entry["dice"]) if entry else "-")
        lines.append(_row(cells))
    return "\n".join(lines)


def scores_table(summary: dict) -> str:
    """Markdown table, one row per click protocol in metrics.json with its scores ("" when there is none)."""
    rows = [
        (name, CLICK_PROTOCOLS[name], inter)
        for name, inter in summary.get("interactive", {}).items()
        if name in CLICK_PROTOCOLS
    ]
    if not rows:
        return ""
    lines = [_row(["protocol", "clicks per class", "scores"]), "|---|---|---|"]
    for name, protocol, inter in rows:
        scores = ", ".join(f"{label} {_fmt(inter.get(key))}" for key, label in protocol.score_labels)
        lines.append(_row([name, str(max(inter["clicks"], default=0)), scores]))
    return "\n".join(lines)


@cli_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("metrics", type=Path, help="metrics.json written by the evaluation")
    parser.add_argument("--clicks", type=int, nargs="*", default=[1, 5])
    parser.add_argument(
        "--protocol", choices=list(CLICK_PROTOCOLS), default="paper", help="click protocol of the per-class DSC columns"
    )
    parser.add_argument("--save", type=Path, default=None, help="also write the table to this Markdown file")
    args = parser.parse_args(argv)
    try:
        summary = json.loads(args.metrics.read_text())
    except FileNotFoundError:
        raise InputError(args.metrics, "no such metrics file (did the evaluation run?)") from None
    text = "\n\n".join(t for t in (table(summary, args.clicks, args.protocol), scores_table(summary)) if t)
    print(text)
    if args.save:
        args.save.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
