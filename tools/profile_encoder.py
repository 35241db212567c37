#!/usr/bin/env python
"""Time the encoder (backbone + pixel decoder) per slice under each inference fast path, and check agreement.

    python tools/profile_encoder.py --config-file configs/btcv/s2vnet_swinb.yaml --size 512 --slices 4
    python tools/profile_encoder.py --config-file configs/demo/s2vnet_r18_demo.yaml \\
        --weights output/demo/model_final.pth --input datasets/s2vnet_demo/reference_files/example_ct_dicom

Each variant is a set of ``TEST.S2VNET`` overrides (``ENCODE_DTYPE``, ``CHANNELS_LAST``, ``COMPILE``,
``SLICE_BATCH_SIZE``) on top of the config; ``float16`` is for GPUs (``--device cuda``). For each, the same volume
is encoded once untimed (warm-up, and ``torch.compile``'s compilation, reported apart) and then ``--repeats`` times
timed; the automatic sweep then labels the volume. Reported per variant: seconds per slice (best of the repeats),
speed-up over the first variant, the relative L2 error of the cached mask features and of the automatic sweep's
class scores against it, and the mean Dice of the labels against its labels (over classes present in either).
``--batch-sizes`` adds ``--batch-base`` at those batch sizes. Without ``--weights`` the model has random weights
(speed does not depend on them) and the volume is random noise at ``--size``; with ``--input`` it is that scan,
preprocessed as the predict CLI does.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from s2vnet.errors import cli_errors
from s2vnet.evaluation.metrics import mean_label_dice

# name -> TEST.S2VNET overrides; the first is the reference.
VARIANTS: dict[str, list[str]] = {
    "float32": [],
    "bfloat16": ["TEST.S2VNET.ENCODE_DTYPE", "bfloat16"],
    "float16": ["TEST.S2VNET.ENCODE_DTYPE", "float16"],
    "channels-last": ["TEST.S2VNET.CHANNELS_LAST", "True"],
    "bfloat16 + channels-last": ["TEST.S2VNET.ENCODE_DTYPE", "bfloat16", "TEST.S2VNET.CHANNELS_LAST", "True"],
    "compile": ["TEST.S2VNET.COMPILE", "True"],
    "float16 feature cache": ["TEST.S2VNET.FEATURE_DTYPE", "float16"],
    "bfloat16 + compile": ["TEST.S2VNET.ENCODE_DTYPE", "bfloat16", "TEST.S2VNET.COMPILE", "True"],
}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_variant(args, overrides: list[str], volume: np.ndarray) -> dict:
    """Encode ``volume`` with one variant: timings, cached mask features and automatic labels."""
    from detectron2.modeling import build_model

    from s2vnet.config import setup_cfg
    from s2vnet.inference import VolumeInference
    from s2vnet.inference.checkpoint import load_weights

    torch.manual_seed(0)
    opts = ["MODEL.DEVICE", args.device, "MODEL.SWIN_TIMM.PRETRAINED", "scratch"] + args.opts + overrides
    cfg = setup_cfg(args.config_file, opts)
    model = build_model(cfg).eval()
    if args.weights:
        load_weights(model, args.weights)
    engine = VolumeInference.from_cfg(model, cfg)
    t0 = time.perf_counter()
    features = engine.encode(volume)
    _sync(args.device)
    first = time.perf_counter() - t0
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        features = engine.encode(volume)
        _sync(args.device)
        times.append(time.perf_counter() - t0)
    scores = engine.automatic(features)
    labels = engine.labels(scores, features.image_hw, features.padded_hw)
    return {
        "batch": engine.batch_size(tuple(volume.shape[1:])),
        "first_s": first,
        "s_per_slice": min(times) / len(volume),
        "mask_features": features.mask_features.float().cpu(),
        "scores": scores.float().cpu(),
        "labels": labels,
    }


def load_volume(args) -> np.ndarray:
    """The uint8 working-grid volume ``(Z, Y, X)``: the ``--input`` scan preprocessed, or random noise."""
    if args.input:
        from s2vnet import Predictor

        opts = ["MODEL.SWIN_TIMM.PRETRAINED", "scratch"] + args.opts
        predictor = Predictor.from_files(args.config_file, None, opts, device="cpu")
        image = predictor.prepare(args.input, args.modality).image
        return image[: args.slices] if args.slices else image
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (args.slices or 4, args.size, args.size), dtype=np.uint8)


def table(rows: list[dict]) -> str:
    lines = [
        "| variant | batch | s/slice | speed-up | first call s | feature rel. error | score rel. error "
        "| labels mean DSC |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['batch']} | {r['s_per_slice']:.4f} | {r['speedup']:.2f}x | {r['first_s']:.1f} | "
            f"{r['feature_error']:.2e} | {r['score_error']:.2e} | {r['dice']:.4f} |"
        )
    return "\n".join(lines)


@cli_errors
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", default="configs/btcv/s2vnet_swinb.yaml")
    parser.add_argument("--weights", help="checkpoint (default: random weights)")
    parser.add_argument("--input", help="a scan to encode (default: random noise at --size)")
    parser.add_argument("--modality", default="CT")
    parser.add_argument("--size", type=int, default=512, help="in-plane size of the random volume")
    parser.add_argument("--slices", type=int, default=0, help="slices (default: 4 random, or the whole --input)")
    parser.add_argument("--repeats", type=int, default=2, help="timed encodes per variant (best is reported)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), default=[v for v in VARIANTS if v != "float16"]
    )
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[], help="also --batch-base at these sizes")
    parser.add_argument("--batch-base", choices=list(VARIANTS), default="float32", help="what --batch-sizes vary")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--output", help="write the table's rows as JSON here")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    volume = load_volume(args)
    variants = {name: VARIANTS[name] for name in args.variants}
    base = args.batch_base
    batch_key = "TEST.S2VNET.SLICE_BATCH_SIZE"
    variants |= {f"{base}, batch {b}": VARIANTS[base] + [batch_key, str(b)] for b in args.batch_sizes}
    rows, reference = [], None
    for name, overrides in variants.items():
        result = run_variant(args, overrides, volume)
        reference = reference or result
        error = (result["mask_features"] - reference["mask_features"]).norm() / reference["mask_features"].norm()
        score_error = (result["scores"] - reference["scores"]).norm() / reference["scores"].norm()
        rows.append(
            {
                "variant": name,
                "batch": result["batch"],
                "s_per_slice": result["s_per_slice"],
                "speedup": reference["s_per_slice"] / result["s_per_slice"],
                "first_s": result["first_s"],
                "feature_error": float(error),
                "score_error": float(score_error),
                "dice": mean_label_dice(result["labels"], reference["labels"]),
            }
        )
        print(f"{name}: {result['s_per_slice']:.4f} s/slice", flush=True)
    gpu = args.device.startswith("cuda")
    where = torch.cuda.get_device_name() if gpu else f"CPU, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}; volume {tuple(volume.shape)}")
    print(table(rows))
    if args.output:
        Path(args.output).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
