#!/usr/bin/env python
"""Time one slice of the sequential k-means decoder, by module, on the inference path and the reference path.

    python tools/profile_decoder.py --config-file configs/btcv/s2vnet_swinb.yaml --size 192 512 --slices 4

Random weights (the speed does not depend on them). For each slice size, the volume's slices are encoded
once, then the automatic sweep is run twice: with the decoder in eval mode (the inference path: the class and
mask heads on the last layer only) and in training mode under ``no_grad`` (the reference path: the heads on
every layer, as deep supervision needs). Prints a Markdown table of milliseconds per slice per module and the
agreement of the two paths' labels, and writes it as JSON with ``--output``.
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

from s2vnet.errors import cli_errors


@contextmanager
def module_timer(decoder: torch.nn.Module):
    """Accumulate wall time per direct child of ``decoder`` (layers separately), in seconds."""
    totals: dict[str, float] = defaultdict(float)
    starts: dict[str, float] = {}
    handles = []
    named = [(f"layers.{i}", m) for i, m in enumerate(decoder.layers)]
    named += [(n, m) for n, m in decoder.named_children() if n != "layers"]
    for name, module in named:
        handles.append(module.register_forward_pre_hook(lambda *_, n=name: starts.__setitem__(n, time.perf_counter())))
        handles.append(
            module.register_forward_hook(
                lambda *_, n=name: totals.__setitem__(n, totals[n] + time.perf_counter() - starts[n])
            )
        )
    try:
        yield totals
    finally:
        for h in handles:
            h.remove()


def sweep(engine, features, training: bool) -> tuple[dict[str, float], float, np.ndarray]:
    """Automatic sweep with the decoder in training or eval mode: (seconds per module, total seconds, labels)."""
    engine.model.decoder.train(training)
    with torch.no_grad(), module_timer(engine.model.decoder) as totals:
        t0 = time.perf_counter()
        scores = engine.automatic(features)
        total = time.perf_counter() - t0
    engine.model.decoder.eval()
    return dict(totals), total, engine.labels(scores, features.image_hw, features.padded_hw)


def profile(config: str, size: int, slices: int, overrides: list[str]) -> dict:
    """One slice size: per-module ms per slice of both paths, and the fraction of voxels whose labels agree."""
    from detectron2.modeling import build_model

    from s2vnet.config import setup_cfg
    from s2vnet.inference import VolumeInference

    torch.manual_seed(0)
    cfg = setup_cfg(config, ["MODEL.DEVICE", "cpu", "MODEL.SWIN_TIMM.PRETRAINED", "scratch"] + overrides)
    engine = VolumeInference.from_cfg(build_model(cfg), cfg)
    volume = np.random.default_rng(0).integers(0, 255, (slices, size, size), dtype=np.uint8)
    features = engine.encode(volume)
    sweep(engine, features, training=False)  # warm-up
    ref_modules, ref_total, ref_labels = sweep(engine, features, training=True)
    fast_modules, fast_total, fast_labels = sweep(engine, features, training=False)
    per_slice = 1000.0 / slices
    return {
        "size": size,
        "slices": slices,
        "reference_ms": {k: v * per_slice for k, v in ref_modules.items()} | {"step total": ref_total * per_slice},
        "inference_ms": {k: v * per_slice for k, v in fast_modules.items()} | {"step total": fast_total * per_slice},
        "labels_agree": float((ref_labels == fast_labels).mean()),
    }


def table(result: dict) -> str:
    """Markdown: one row per module, reference and inference ms per slice."""
    lines = [
        f"**{result['size']} x {result['size']}**, {result['slices']} slices, labels agree on "
        f"{100 * result['labels_agree']:.3f} % of voxels",
        "",
        "| module | reference ms/slice | inference ms/slice |",
        "|---|---|---|",
    ]
    for name, ref in result["reference_ms"].items():
        lines.append(f"| {name} | {ref:.1f} | {result['inference_ms'].get(name, 0.0):.1f} |")
    return "\n".join(lines)


@cli_errors
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", default="configs/btcv/s2vnet_swinb.yaml")
    parser.add_argument("--size", type=int, nargs="+", default=[192, 512], help="in-plane slice sizes")
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--output", help="write the results as JSON here")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = [profile(args.config_file, s, args.slices, args.opts) for s in args.size]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    for result in results:
        print(table(result) + "\n")
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
