#!/usr/bin/env python
"""Time one slice of the sequential k-means decoder, by module, on the inference path and the reference path.

    python tools/profile_decoder.py --config-file configs/btcv/s2vnet_swinb.yaml --size 192 512 --slices 4
    python tools/profile_decoder.py --config-file configs/btcv/s2vnet_swinb.yaml \\
        --input datasets/benchmark/lung1_image.nrrd --slices 8
    python tools/profile_decoder.py --config-file configs/demo/s2vnet_r18_demo.yaml \\
        --weights output/demo/model_final.pth --input datasets/s2vnet_demo/reference_files/example_ct_dicom

Random weights unless ``--weights`` (the speed does not depend on them); random noise at each ``--size``, or the
``--input`` scan preprocessed as the predict CLI does (its first ``--slices``, 0: all). The volume's slices are encoded
once, then the automatic sweep is run twice: with the decoder and the aggregation in eval mode (the inference
path: the class and mask heads on the last layer only, the factored k-means cross-attention, aggregation of the
kept slots only) and in training mode under ``no_grad`` (the reference path: the heads on every layer as deep
supervision needs, Eq. 2-3 as written, every slot aggregated, float32 whatever ``TEST.S2VNET.DECODE_DTYPE`` says).
Prints a Markdown table of milliseconds per slice per module group (summed over the decoder's layers; "rest of the
step" is the step's time outside them: the mask product, the class scores, the state update) and the agreement of
the two paths' labels (voxels and mean Dice), and writes it as JSON with ``--output``. Add
``TEST.S2VNET.DECODE_DTYPE bfloat16`` to time the inference path under that autocast against the float32 reference.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from profile_encoder import load_volume  # tools/: the same --input handling

from s2vnet.errors import cli_errors
from s2vnet.evaluation.metrics import mean_label_dice


def module_groups(model: torch.nn.Module) -> dict[str, list[torch.nn.Module]]:
    """The per-slice modules of the step, grouped by what they do (each group summed over the decoder's layers)."""
    decoder = model.decoder
    groups = {
        "position encoding": [decoder.pos_enc],
        "input projections": list(decoder.input_proj),
        "k-means cross-attention": [layer.cross for layer in decoder.layers],
        "self-attention": [layer.self_attn for layer in decoder.layers],
        "FFN": [layer.ffn for layer in decoder.layers],
        "class head (+ norm)": [decoder.norm, decoder.class_embed],
        "mask embedding MLP": [decoder.mask_embed],
    }
    if model.aggregator is not None:
        groups["aggregation (Eq. 10-11)"] = [model.aggregator]
    return groups


def clock(device: torch.device) -> float:
    """``time.perf_counter()`` after the device's queued work is done (a sync per call on a GPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


@contextmanager
def group_timer(groups: dict[str, list[torch.nn.Module]], device: torch.device):
    """Accumulate wall time per group of modules, in seconds (the groups must not nest)."""
    totals: dict[str, float] = defaultdict(float)
    starts: dict[int, float] = {}
    handles = []
    for name, modules in groups.items():
        for module in modules:
            key = id(module)
            handles.append(module.register_forward_pre_hook(lambda *_, k=key: starts.__setitem__(k, clock(device))))
            handles.append(
                module.register_forward_hook(
                    lambda *_, n=name, k=key: totals.__setitem__(n, totals[n] + clock(device) - starts[k])
                )
            )
    try:
        yield totals
    finally:
        for h in handles:
            h.remove()


def _timed_aggregator(aggregator: torch.nn.Module | None):
    """The aggregator's read/write are methods, not ``forward``: route them through a hooked forward."""
    if aggregator is None:
        return None
    read, write = aggregator.read, aggregator.write
    aggregator.forward = lambda fn, *a: fn(*a)
    aggregator.read = lambda *a: aggregator(read, *a)
    aggregator.write = lambda *a: aggregator(write, *a)
    return read, write


def sweep(engine, features, reference: bool) -> tuple[dict[str, float], float, np.ndarray]:
    """Automatic sweep on the reference path (decoder and aggregation in training mode under ``no_grad``, float32)
    or the inference path (eval mode, TEST.S2VNET.DECODE_DTYPE): (seconds per module group, total seconds, labels)."""
    model, decode_dtype = engine.model, engine.decode_dtype
    parts = [model.decoder] + ([model.aggregator] if model.aggregator is not None else [])
    for part in parts:
        part.train(reference)
    engine.decode_dtype = None if reference else decode_dtype  # the reference path is float32
    with torch.no_grad(), group_timer(module_groups(model), model.device) as totals:
        t0 = clock(model.device)
        scores = engine.automatic(features)
        total = clock(model.device) - t0
    for part in parts:
        part.eval()
    engine.decode_dtype = decode_dtype
    totals = dict(totals)
    totals["rest of the step (mask product, scores, state)"] = total - sum(totals.values())
    return totals, total, engine.labels(scores, features.image_hw, features.padded_hw)


def profile(args, volume: np.ndarray) -> dict:
    """One volume ``(Z, Y, X)`` uint8: per-module ms per slice of both paths, and how far their labels agree."""
    from detectron2.modeling import build_model

    from s2vnet.config import setup_cfg
    from s2vnet.inference import VolumeInference
    from s2vnet.inference.checkpoint import load_weights

    torch.manual_seed(0)
    opts = ["MODEL.DEVICE", args.device, "MODEL.SWIN_TIMM.PRETRAINED", "scratch"] + args.opts
    cfg = setup_cfg(args.config_file, opts)
    model = build_model(cfg).eval()
    if args.weights:
        load_weights(model, args.weights)
    engine = VolumeInference.from_cfg(model, cfg)
    _timed_aggregator(engine.model.aggregator)
    features = engine.encode(volume)
    sweep(engine, features, reference=False)  # warm-up
    ref_modules, ref_total, ref_labels = sweep(engine, features, reference=True)
    fast_modules, fast_total, fast_labels = sweep(engine, features, reference=False)
    slices, size = len(volume), features.image_hw[0]
    per_slice = 1000.0 / slices
    return {
        "size": size,
        "slices": slices,
        "reference_ms": {k: v * per_slice for k, v in ref_modules.items()} | {"step total": ref_total * per_slice},
        "inference_ms": {k: v * per_slice for k, v in fast_modules.items()} | {"step total": fast_total * per_slice},
        "labels_agree": float((ref_labels == fast_labels).mean()),
        "mean_dice": mean_label_dice(ref_labels, fast_labels),
    }


def table(result: dict) -> str:
    """Markdown: one row per module, reference and inference ms per slice."""
    lines = [
        f"**{result['size']} x {result['size']}**, {result['slices']} slices, labels agree on "
        f"{100 * result['labels_agree']:.3f} % of voxels (mean Dice {result['mean_dice']:.4f})",
        "",
        "| module (summed over layers) | reference ms/slice | inference ms/slice | speed-up |",
        "|---|---|---|---|",
    ]
    for name, ref in result["reference_ms"].items():
        fast = result["inference_ms"].get(name, 0.0)
        lines.append(f"| {name} | {ref:.1f} | {fast:.1f} | {ref / fast if fast > 0 else float('nan'):.2f}x |")
    return "\n".join(lines)


@cli_errors
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", default="configs/btcv/s2vnet_swinb.yaml")
    parser.add_argument("--size", type=int, nargs="+", default=[192, 512], help="in-plane slice sizes")
    parser.add_argument("--slices", type=int, default=4, help="slices (with --input: its first N, 0 = all)")
    parser.add_argument("--weights", help="checkpoint (default: random weights)")
    parser.add_argument("--input", help="a scan to decode (default: random noise at each --size)")
    parser.add_argument("--modality", default="CT")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (module times then include a sync each)")
    parser.add_argument("--output", help="write the results as JSON here")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.input:
        results = [profile(args, load_volume(args))]
    else:
        rng = np.random.default_rng(0)
        volumes = [rng.integers(0, 255, (args.slices, s, s), dtype=np.uint8) for s in args.size]
        results = [profile(args, volume) for volume in volumes]
    gpu = args.device.startswith("cuda")
    where = torch.cuda.get_device_name() if gpu else f"{torch.get_num_threads()} threads, CPU"
    print(f"torch {torch.__version__}, {where}")
    for result in results:
        print(table(result) + "\n")
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
