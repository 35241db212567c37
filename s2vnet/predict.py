"""``python -m s2vnet.predict``: segment scans from the command line (the library API is :mod:`s2vnet.inference.api`).

One scan (a NIfTI / NRRD / MHA file or a DICOM series folder) to one file::

    python -m s2vnet.predict --config-file configs/demo/s2vnet_r18_demo.yaml --weights model_final.pth \\
        --input ct_dicom_folder/ --output seg.nii.gz [--clicks clicks.json] [--device cpu] [KEY VALUE ...]

The output has the input's size, spacing, origin and direction. Its type follows the suffix or ``--format``
(:mod:`s2vnet.inference.writers`): ``.nii.gz`` / ``.nii`` / ``.nrrd`` / ``.mha`` label maps with ``seg.json``
naming the labels beside them, ``.seg.nrrd`` for 3D Slicer, ``.seg.dcm`` (DICOM-SEG) for a DICOM input.
Clicks JSON (one refinement round; format in :mod:`s2vnet.data.clicks`): a list of
``{"class": name or label id (1..K), "positive": true, "voxel": [i, j, k]}`` (SimpleITK index of the input)
or ``{"class": ..., "point": [x, y, z]}`` (physical mm, LPS).

A folder of scans (files and DICOM sub-folders) or a ``.txt`` list of them, into an output folder, resumable,
over several GPUs or CPU processes (:mod:`s2vnet.inference.batch`)::

    python -m s2vnet.predict ... --input scans/ --output segs/ [--format dicom-seg] [--statistics] [--num-gpus 4]

``Predictor``, ``InteractiveSession``, ``SegmentationResult`` and ``load_weights`` are re-exported here so
that code importing them from ``s2vnet.predict`` keeps working; new code imports them from ``s2vnet``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from s2vnet.config import setup_cfg
from s2vnet.data.clicks import Click, read_clicks
from s2vnet.data.normalization import canonical_modality
from s2vnet.data.preprocess import prepare_loaded
from s2vnet.data.validate import VolumeLimits
from s2vnet.data.volume_io import read_volume
from s2vnet.errors import InputError, cli_errors
from s2vnet.inference.api import InteractiveSession, Predictor, SegmentationResult
from s2vnet.inference.batch import ModelSpec, launch_folder_job, plan_folder_job
from s2vnet.inference.cases import case_names, is_case_collection
from s2vnet.inference.checkpoint import load_weights
from s2vnet.inference.output_paths import check_output_file
from s2vnet.inference.statistics import class_statistics, write_statistics_csv
from s2vnet.inference.writers import ALL_SUFFIXES, OUTPUT_FORMATS, OutputFormat, SourceScan, resolve_format

__all__ = [
    "Predictor",
    "InteractiveSession",
    "SegmentationResult",
    "load_weights",
    "read_clicks",
    "to_working_click",
    "main",
]


def to_working_click(predictor: Predictor, prepared, click: dict | Click, source: str = "clicks") -> Click:
    """One user click (clicks-JSON object or :class:`Click`) -> the working-grid click (kept for old callers)."""
    return predictor.working_clicks(prepared, [click], source)[0]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Segment CT/MRI scans with S2VNet.")
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True, help="checkpoint (model_final.pth)")
    parser.add_argument(
        "--input",
        required=True,
        help="NIfTI / NRRD / MHA file or DICOM series folder; or a folder "
        "of such scans, or a .txt file listing them (folder run)",
    )
    parser.add_argument(
        "--output", required=True, help=f"a file ({', '.join(ALL_SUFFIXES)}) for one scan; a folder for a folder run"
    )
    parser.add_argument(
        "--format",
        choices=list(OUTPUT_FORMATS),
        help="output type (default: from the output's suffix; nifti for a folder run)",
    )
    parser.add_argument(
        "--statistics",
        action="store_true",
        help="per-class volume (ml), voxel count and mean / median intensity, as CSV",
    )
    parser.add_argument("--clicks", help="clicks JSON for one refinement round (one scan only)")
    parser.add_argument("--dicom-series", help="Series Instance UID to read from a folder holding several series")
    parser.add_argument("--modality", default="CT", help="CT or MRI")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    workers = parser.add_argument_group("folder runs on several processes (the flags of train_net.py)")
    workers.add_argument(
        "--num-gpus",
        type=int,
        default=1,
        help="processes per machine: one per GPU, or CPU processes (gloo) without GPUs",
    )
    workers.add_argument("--num-machines", type=int, default=1)
    workers.add_argument("--machine-rank", type=int, default=0, help="this machine's rank (0 .. num-machines - 1)")
    workers.add_argument(
        "--dist-url", default="auto", help="tcp://HOST:PORT of machine 0 for several machines (auto: a free local port)"
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE pairs")
    return parser


def _statistics_path(output: Path, fmt: OutputFormat) -> Path:
    """``seg.nii.gz`` -> ``seg_statistics.csv``."""
    suffix = next(s for s in fmt.suffixes if output.name.lower().endswith(s))
    return output.with_name(output.name[: -len(suffix)] + "_statistics.csv")


def _check_workers(args) -> None:
    if min(args.num_gpus, args.num_machines) < 1 or not 0 <= args.machine_rank < args.num_machines:
        raise InputError(
            "--num-gpus", "--num-gpus and --num-machines must be >= 1 and 0 <= --machine-rank < --num-machines"
        )
    if torch.cuda.is_available() and args.num_gpus > torch.cuda.device_count():
        raise InputError("--num-gpus", f"{args.num_gpus} processes asked for, {torch.cuda.device_count()} GPUs here")
    if args.num_machines > 1 and args.dist_url == "auto":
        raise InputError("--dist-url", "several machines need --dist-url tcp://HOST:PORT of machine 0")


def _folder_run(args) -> int:
    if args.clicks or args.dicom_series:
        raise InputError(args.input, "--clicks and --dicom-series apply to one scan, not to a folder or list")
    _check_workers(args)
    job = plan_folder_job(args.input, args.output, args.format, args.modality, args.statistics)
    setup_cfg(args.config_file, list(args.opts))  # a bad config is one line here, not one per process
    if not Path(args.weights).is_file():
        raise InputError(args.weights, "no such weights file")
    print(f"{len(job.cases)} scans in {args.input} -> {job.output} ({job.fmt.name})")
    model = ModelSpec(args.config_file, args.weights, tuple(args.opts), args.device)
    return launch_folder_job(model, job, args.num_gpus, args.num_machines, args.machine_rank, args.dist_url)


def _single_run(args) -> int:
    if args.num_gpus * args.num_machines > 1:
        raise InputError(args.input, "--num-gpus / --num-machines split a folder or list of scans; this is one scan")
    scan, output = Path(args.input), Path(args.output)
    check_output_file(output, scan)
    fmt = resolve_format(output, args.format, is_file=True)
    if fmt.needs_dicom and not scan.is_dir():
        raise InputError(
            scan,
            f"is not a DICOM series; {fmt.name} output ({output.name}) needs a DICOM input: "
            "write .seg.nrrd or .nii.gz instead",
        )
    modality = canonical_modality(args.modality, "--modality")
    user_clicks = read_clicks(args.clicks) if args.clicks else []
    source = args.clicks or "clicks"
    cfg = setup_cfg(args.config_file, list(args.opts))
    volume = read_volume(scan, VolumeLimits.from_cfg(cfg), series_uid=args.dicom_series, strict_series=True)
    predictor = Predictor(cfg, args.weights, args.device, progress=True)
    prepared = prepare_loaded(volume, modality, predictor.settings)
    clicks = predictor.working_clicks(prepared, user_clicks, source)  # every click checked before network work
    session = InteractiveSession(predictor, prepared)
    session.add_clicks(clicks, source=source)
    result = session.result()
    fmt.write(result, output, SourceScan(scan, args.dicom_series, interactive=bool(clicks)))
    written = [str(p) for p in fmt.outputs(output)]
    if args.statistics:
        rows = class_statistics(result.labels, volume.array, result.geometry, result.class_names, case_names([scan])[0])
        written.append(str(write_statistics_csv(rows, _statistics_path(output, fmt))))
    print(f"wrote {' and '.join(written)} ({len(clicks)} clicks)")
    return 0


@cli_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _folder_run(args) if is_case_collection(Path(args.input)) else _single_run(args)
    except KeyboardInterrupt:
        print(
            "interrupted: finished results are complete, nothing is half-written; run again to resume", file=sys.stderr
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
