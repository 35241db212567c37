#!/usr/bin/env python
"""Print (and save as Markdown) the per-class table of an evaluation's metrics.json.

    python tools/demo_table.py output/demo/inference/demo_ct_test/metrics.json --clicks 1 5

Columns: automatic DSC / HD95 / NSD, and DSC after each requested number of clicks per class.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from s2vnet.errors import InputError, cli_errors


def table(summary: dict, clicks: list[int]) -> str:
    """Markdown table, one row per class plus the mean."""
    auto = summary.get("automatic", {}).get("per_class", {})
    per_click = summary.get("interactive", {}).get("per_click", {})
    available = [k for k in clicks if str(k) in per_click]
    head = ["class", "auto DSC", "auto HD95 (mm)", "auto NSD"] + [f"DSC {k} click{'s' if k > 1 else ''}" for k in available]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    names = list(auto) or list(per_click[str(available[0])]["per_class"]) if available else list(auto)
    fmt = lambda v: "-" if v is None or v != v else f"{v:.3f}"  # noqa: E731  (NaN: class absent)
    for name in names + ["mean"]:
        row = auto.get(name) if name != "mean" else summary.get("automatic", {}).get("mean")
        cells = [name] + ([fmt(row[m]) for m in ("dice", "hd95", "nsd")] if row else ["-"] * 3)
        for k in available:
            entry = per_click[str(k)]["mean"] if name == "mean" else per_click[str(k)]["per_class"].get(name)
            cells.append(fmt(entry["dice"]) if entry else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


@cli_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("metrics", type=Path, help="metrics.json written by the evaluation")
    parser.add_argument("--clicks", type=int, nargs="*", default=[1, 5])
    parser.add_argument("--save", type=Path, default=None, help="also write the table to this Markdown file")
    args = parser.parse_args(argv)
    try:
        summary = json.loads(args.metrics.read_text())
    except FileNotFoundError:
        raise InputError(args.metrics, "no such metrics file (did the evaluation run?)") from None
    text = table(summary, args.clicks)
    print(text)
    if args.save:
        args.save.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
