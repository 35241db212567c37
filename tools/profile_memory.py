#!/usr/bin/env python
"""Peak memory of whole-volume inference: automatic segmentation plus click rounds, against the cache formula.

    python tools/profile_memory.py --config-file configs/btcv/s2vnet_swinb.yaml --slices 200 --size 512
    python tools/profile_memory.py ... TEST.S2VNET.FEATURE_DTYPE float16

Random weights (memory does not depend on them) and a synthetic CT (``--slices`` x ``--size`` x ``--size`` int16,
HU-like noise), through the public API: ``Predictor`` + ``InteractiveSession`` (encode once, automatic round 0),
then ``--rounds`` rounds of one positive click each. After each phase it records the process's peak resident
memory (``ru_maxrss``, which only grows) and its current RSS, and prints them next to the terms of the formula

    peak ~ weights + feature cache + encode batch activations + kept states + labels

(feature cache = slices x bytes per slice of the mask features and the three multi-scale maps, in the cache
dtype; encode batch = ``TEST.S2VNET`` batch x :func:`activation_mb_per_slice`, an upper bound; each round keeps
one fused score volume, classes x slices x (H/4) x (W/4) float32, so undo is free). ``--output`` writes JSON.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import torch

from s2vnet.errors import cli_errors

MB = 2**20


def peak_mb() -> float:
    """Peak resident set size of this process so far, MB (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_mb() -> float:
    """Current resident set size, MB (``VmRSS`` of /proc/self/status; 0 where there is none)."""
    status = Path("/proc/self/status")
    if not status.exists():
        return 0.0
    line = next((ln for ln in status.read_text().splitlines() if ln.startswith("VmRSS:")), "VmRSS: 0 kB")
    return int(line.split()[1]) / 1024


def synthetic_ct(slices: int, size: int, seed: int = 0) -> np.ndarray:
    """``(slices, size, size)`` int16: a water disc (0 HU +- noise) in air (-1000 HU)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (0.4 * size) ** 2
    volume = np.where(disc, 0, -1000).astype(np.int16)[None].repeat(slices, axis=0)
    return volume + rng.integers(-50, 50, volume.shape, dtype=np.int16)


def formula(session, batch: int, activation_mb: float, weights_mb: float) -> dict[str, float]:
    """The terms of the peak-memory formula for this session, MB."""
    features = session.features
    cache = features.mask_features.nbytes + sum(f.nbytes for f in features.multi_scale)
    scores = session._history[-1].fused.nbytes
    labels = session._working[-1].nbytes
    return {
        "weights_mb": weights_mb,
        "feature_cache_mb": cache / MB,
        "feature_cache_mb_per_slice": cache / MB / len(features),
        "encode_batch": batch,
        "encode_activations_mb_bound": batch * activation_mb,
        "fused_scores_mb_per_state": scores / MB,
        "labels_mb_per_state": labels / MB,
    }


def run(args) -> dict:
    from s2vnet import InteractiveSession, Predictor
    from s2vnet.data.clicks import Click
    from s2vnet.inference.volume import activation_mb_per_slice

    torch.manual_seed(0)
    opts = ["MODEL.SWIN_TIMM.PRETRAINED", "scratch"] + list(args.opts)
    phases = {"start": {"peak_mb": peak_mb(), "rss_mb": current_mb()}}
    predictor = Predictor.from_files(args.config_file, None, opts, device="cpu", progress=True)
    weights_mb = sum(p.nbytes for p in predictor.model.parameters()) / MB
    phases["model built"] = {"peak_mb": peak_mb(), "rss_mb": current_mb()}
    volume = synthetic_ct(args.slices, args.size)
    prepared = predictor.prepare(volume, spacing=(2.5, 0.8, 0.8))
    del volume
    hw = tuple(prepared.image.shape[1:])
    activation = activation_mb_per_slice(predictor.model, hw)
    batch = predictor.engine.batch_size(hw)
    phases["prepared"] = {"peak_mb": peak_mb(), "rss_mb": current_mb()}
    t0 = time.perf_counter()
    session = InteractiveSession(predictor, prepared)
    phases["encode + automatic"] = {"peak_mb": peak_mb(), "rss_mb": current_mb(), "s": time.perf_counter() - t0}
    z, y, x = np.array(prepared.image.shape) // 2
    for r in range(args.rounds):
        t0 = time.perf_counter()
        session.add_clicks([Click(0, (float(z + r), float(y), float(x)), frame="working")])
        phases[f"click round {r + 1}"] = {"peak_mb": peak_mb(), "rss_mb": current_mb(), "s": time.perf_counter() - t0}
    return {
        "config": args.config_file,
        "opts": list(args.opts),
        "shape": [args.slices, args.size, args.size],
        "working_shape": list(prepared.image.shape),
        "threads": torch.get_num_threads(),
        "phases": phases,
        "formula": formula(session, batch, activation, weights_mb),
    }


def report(result: dict) -> str:
    """Markdown: the phases' peak and current RSS, then the formula's terms."""
    lines = ["| phase | peak RSS MB | RSS MB | seconds |", "|---|---|---|---|"]
    for name, p in result["phases"].items():
        seconds = f"{p['s']:.1f}" if "s" in p else ""
        lines.append(f"| {name} | {p['peak_mb']:.0f} | {p['rss_mb']:.0f} | {seconds} |")
    lines += ["", "| formula term | MB |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in result["formula"].items()]
    return "\n".join(lines)


@cli_errors
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", default="configs/btcv/s2vnet_swinb.yaml")
    parser.add_argument("--slices", type=int, default=200)
    parser.add_argument("--size", type=int, default=512, help="in-plane size of the synthetic volume")
    parser.add_argument("--rounds", type=int, default=1, help="click rounds after the automatic result")
    parser.add_argument("--output", help="write the results as JSON here")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = parser.parse_args()
    result = run(args)
    shapes = f"{result['shape']} -> {result['working_shape']}"
    print(f"torch {torch.__version__}, {result['threads']} threads, CPU; {shapes}")
    print(report(result))
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
