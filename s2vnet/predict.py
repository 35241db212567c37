"""``python -m s2vnet.predict``: segment a scan from the command line (the library API is :mod:`s2vnet.inference.api`).

    python -m s2vnet.predict --config-file configs/demo/s2vnet_r18_demo.yaml --weights model_final.pth \\
        --input ct_dicom_folder/ --output seg.nii.gz [--clicks clicks.json] [--device cpu] [KEY VALUE ...]

The output has the input's size, spacing, origin and direction; ``seg.json`` beside it names the labels.
Clicks JSON (one refinement round; format in :mod:`s2vnet.data.clicks`): a list of
``{"class": name or label id (1..K), "positive": true, "voxel": [i, j, k]}`` (SimpleITK index of the input)
or ``{"class": ..., "point": [x, y, z]}`` (physical mm, LPS).

``Predictor``, ``InteractiveSession``, ``SegmentationResult`` and ``load_weights`` are re-exported here so
that code importing them from ``s2vnet.predict`` keeps working; new code imports them from ``s2vnet``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from s2vnet.data.clicks import Click, read_clicks
from s2vnet.data.volume_io import WRITE_SUFFIXES
from s2vnet.errors import InputError, cli_errors
from s2vnet.inference.api import InteractiveSession, Predictor, SegmentationResult, sidecar_path
from s2vnet.inference.checkpoint import load_weights

__all__ = ["Predictor", "InteractiveSession", "SegmentationResult", "load_weights", "read_clicks",
           "to_working_click", "main"]


def to_working_click(predictor: Predictor, prepared, click: dict | Click, source: str = "clicks") -> Click:
    """One user click (clicks-JSON object or :class:`Click`) -> the working-grid click (kept for old callers)."""
    return predictor.working_clicks(prepared, [click], source)[0]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Segment a CT/MRI scan with S2VNet.")
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True, help="checkpoint (model_final.pth)")
    parser.add_argument("--input", required=True, help="NIfTI / NRRD / MHA file or DICOM series folder")
    parser.add_argument("--output", required=True, help=", ".join(WRITE_SUFFIXES))
    parser.add_argument("--clicks", help="clicks JSON for one refinement round")
    parser.add_argument("--modality", default="CT", help="CT or MRI")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE pairs")
    return parser


@cli_errors
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    output = Path(args.output)
    if not any(output.name.lower().endswith(s) for s in WRITE_SUFFIXES):
        raise InputError(output, f"unsupported output type; expected {', '.join(WRITE_SUFFIXES)}")
    user_clicks = read_clicks(args.clicks) if args.clicks else []
    source = args.clicks or "clicks"
    predictor = Predictor.from_files(args.config_file, args.weights, args.opts, args.device, progress=True)
    prepared = predictor.prepare(args.input, args.modality)
    clicks = predictor.working_clicks(prepared, user_clicks, source)  # every click checked before network work
    session = InteractiveSession(predictor, prepared)
    session.add_clicks(clicks, source=source)
    session.result().save(output)
    print(f"wrote {output} ({len(clicks)} clicks) and {sidecar_path(output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
