#!/usr/bin/env python
"""The S2VNet paper reproduction kit: one command per table and figure.

    python projects/S2VNet/reproduce.py check-data btcv|word|amos
    python projects/S2VNet/reproduce.py table btcv|word|amos        [--run] [--num-gpus 4] [--set KEY VALUE ...]
    python projects/S2VNet/reproduce.py ablation                    (Table 4, WORD)
    python projects/S2VNet/reproduce.py convergence                 (Fig. 5, WORD)
    python projects/S2VNet/reproduce.py unified                     (Fig. 6, WORD)
    python projects/S2VNet/reproduce.py synthetic-data btcv --root DIR   (a small fake dataset in BTCV's layout)
    python projects/S2VNet/reproduce.py training-speed OUTPUT_DIR       (s / iteration, peak GPU memory)

Every result command first prints the models and evaluations it needs (with their ``train_net.py`` commands and
whether they have run), then reads their ``metrics.json`` from ``--results`` and writes ``<results>/<name>.md``
with the paper's numbers next to this run's. A missing run is an error, one line each, unless ``--run`` is
given: then whatever is missing is trained and evaluated first. ``--tiny`` runs everything on the CPU demo data
with ``projects/S2VNet/configs/tiny.yaml`` (a few minutes per model; directions at best, not the paper's numbers).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1])]  # the kit's modules, and the s2vnet of this checkout

from repro import ablation, check_data, convergence, tables, unified  # noqa: E402
from repro.datasets import DATASETS, dataset, single_part  # noqa: E402
from repro.runs import Evaluation, Kit, missing_lines, plan_lines, run_missing  # noqa: E402
from repro.speed import training_speed  # noqa: E402
from repro.synthetic import LAYOUTS, write_synthetic  # noqa: E402

from s2vnet.errors import cli_errors  # noqa: E402


@dataclass(frozen=True)
class Subcommand:
    """A kit command: ``add_arguments(parser)`` declares its options, ``run(args)`` returns the exit code."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tiny", action="store_true", help="the CPU demo data and projects/S2VNet/configs/tiny.yaml")
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="results folder (default output/reproduce, or output/reproduce_tiny with --tiny)",
    )


def _runs(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("--run", action="store_true", help="train and evaluate whatever has not run yet")
    parser.add_argument("--num-gpus", type=int, default=1, help="processes per run (train_net.py --num-gpus)")
    parser.add_argument(
        "--set",
        nargs=2,
        action="append",
        default=[],
        metavar=("KEY", "VALUE"),
        help="config override for every run, repeatable (e.g. MODEL.SWIN_TIMM.PRETRAINED path)",
    )


def _with_dataset(choices: Sequence[str], default: str | None) -> Callable[[argparse.ArgumentParser], None]:
    def add(parser: argparse.ArgumentParser) -> None:
        if default is None:
            parser.add_argument("dataset", choices=choices)
        else:
            parser.add_argument("--dataset", choices=choices, default=default, help=f"default {default} (the paper's)")
        _runs(parser)

    return add


def results_folder(args: argparse.Namespace) -> Path:
    return args.results or Path("output/reproduce_tiny" if args.tiny else "output/reproduce")


def kit_from(args: argparse.Namespace) -> Kit:
    return Kit(results_folder(args), args.num_gpus, tuple(v for pair in args.set for v in pair))


def produce(args: argparse.Namespace, name: str, evaluations: list[Evaluation], write: Callable[[Kit], str]) -> int:
    """Print the plan, run what is missing (``--run``) or name it, then write ``<results>/<name>.md``."""
    kit = kit_from(args)
    print(f"{name}: needs these runs in {kit.results}")
    for line in plan_lines(kit, evaluations):
        print(f"  {line}")
    if args.run:
        run_missing(kit, evaluations, say=lambda line: print(f"  {line}", flush=True))
    missing = missing_lines(kit, evaluations)
    for line in missing:
        print(f"error: {line}", file=sys.stderr)
    if missing:
        return 2
    text = write(kit)
    kit.results.mkdir(parents=True, exist_ok=True)
    (kit.results / f"{name}.md").write_text(text)
    print(text)
    print(f"written: {kit.results / f'{name}.md'}")
    return 0


def _check_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", choices=list(DATASETS))
    _common(parser)


def run_check_data(args: argparse.Namespace) -> int:
    spec = dataset(args.dataset)
    splits = spec.splits_for(args.tiny)
    print(f"check-data {spec.name}: checking {', '.join(f'{n} ({c} cases)' for n, c in splits.items())}")
    reports = check_data.check_dataset(spec, args.tiny)
    results = results_folder(args)
    results.mkdir(parents=True, exist_ok=True)
    out = results / f"check_data_{spec.name}.md"
    out.write_text(check_data.report_markdown(spec, reports))
    problems = [p for r in reports for p in r.problems]
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    print(f"report: {out} ({len(problems)} problems)")
    return 2 if problems else 0


def run_table(args: argparse.Namespace) -> int:
    spec = dataset(args.dataset)
    return produce(
        args, f"table_{spec.name}", tables.evaluations(spec, args.tiny), lambda kit: tables.write(kit, spec, args.tiny)
    )


def run_ablation(args: argparse.Namespace) -> int:
    part = single_part(args.dataset, args.tiny)
    return produce(args, "ablation", ablation.evaluations(part), lambda kit: ablation.write(kit, part, args.tiny))


def run_convergence(args: argparse.Namespace) -> int:
    part = single_part(args.dataset, args.tiny)
    return produce(
        args,
        "convergence",
        convergence.evaluations(part),
        lambda kit: convergence.write(kit, part, args.tiny, kit.results / "convergence.png"),
    )


def run_unified(args: argparse.Namespace) -> int:
    part = single_part(args.dataset, args.tiny)
    return produce(args, "unified", unified.evaluations(part), lambda kit: unified.write(kit, part, args.tiny))


def _synthetic_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("layout", choices=list(LAYOUTS))
    parser.add_argument("--root", type=Path, required=True, help="the $DETECTRON2_DATASETS folder to write into")
    for split, default in (("train", 2), ("val", 1), ("test", 0)):
        parser.add_argument(f"--{split}", type=int, default=default, help=f"{split} cases (default {default})")
    parser.add_argument("--shape", type=int, nargs=3, default=(8, 64, 64), metavar=("Z", "Y", "X"))


def run_synthetic(args: argparse.Namespace) -> int:
    counts = {"train": args.train, "val": args.val, "test": args.test}
    written = write_synthetic(args.layout, args.root, counts, tuple(args.shape))
    print(f"{len(written)} synthetic {args.layout} cases of shape {tuple(args.shape)} under {args.root}")
    return 0


def run_training_speed(args: argparse.Namespace) -> int:
    speed = training_speed(args.folder)
    (args.folder / "training_speed.json").write_text(json.dumps(speed, indent=1))
    print(json.dumps(speed))
    return 0


SINGLE = ("btcv", "word")
# command name -> Subcommand; reproduce.py <name> ... calls SUBCOMMANDS[name].run(args)
SUBCOMMANDS: Mapping[str, Subcommand] = MappingProxyType(
    {
        "check-data": Subcommand(
            "check a dataset against the catalog layout and the paper's splits", _check_data_arguments, run_check_data
        ),
        "table": Subcommand(
            "Tables 1-3: per-class DSC and class-mean HD95 / DSC / NSD, automatic and interactive",
            _with_dataset(list(DATASETS), None),
            run_table,
        ),
        "ablation": Subcommand("Table 4: key components (four models)", _with_dataset(SINGLE, "word"), run_ablation),
        "convergence": Subcommand(
            "Fig. 5: DSC against rounds, with and without adaptive sampling",
            _with_dataset(SINGLE, "word"),
            run_convergence,
        ),
        "unified": Subcommand(
            "Fig. 6: parameters, training time and DSC of unified vs task-specific models",
            _with_dataset(SINGLE, "word"),
            run_unified,
        ),
        "synthetic-data": Subcommand(
            "write a small synthetic dataset in a public folder layout", _synthetic_arguments, run_synthetic
        ),
        "training-speed": Subcommand(
            "seconds per iteration and peak GPU memory of a train_net.py output folder",
            lambda p: p.add_argument("folder", type=Path),
            run_training_speed,
        ),
    }
)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = top.add_subparsers(dest="command", required=True)
    for name, command in SUBCOMMANDS.items():
        command.add_arguments(sub.add_parser(name, help=command.help, description=command.help))
    return top


@cli_errors
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return SUBCOMMANDS[args.command].run(args)


if __name__ == "__main__":
    raise SystemExit(main())
