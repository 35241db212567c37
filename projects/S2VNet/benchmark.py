#!/usr/bin/env python
"""Speed and memory of S2VNet against a naive S2VNet and 3D peers, on one machine and the same volumes.

    python projects/S2VNet/benchmark.py     # CPU, about 15 minutes on 2 cores (+8 the first time: torch.compile)
    python projects/S2VNet/benchmark.py --device cuda --synthetic-depth 200 --full-3d

Volumes: the real 512 x 512 CT scans in the pyradiomics-bhklab 3.1.4 source archive (``data/lung1_image.nrrd``,
512 x 512 x 48; ``lung2_image.nrrd``, 512 x 512 x 61), fetched with pip and sha256-checked, and optionally a
synthetic 512 x 512 x D volume. Every method runs in its own subprocess, so "peak memory" is that process's
peak RSS on the CPU (``ru_maxrss``) or ``torch.cuda.max_memory_allocated`` on a GPU. All networks are randomly
initialised: this measures speed, not accuracy.

Methods: ``s2vnet`` (features batched once per volume, automatic sweep, then one interactive round that
re-runs only the decoder), ``naive`` (the same model one slice at a time, features recomputed for every
round), ``swinunetr`` / ``unetr`` (MONAI, 96^3 sliding windows, overlap 0.5) and ``unet3d`` (MONAI DynUNet in
nnU-Net's default 3D shape, 96^3 windows), for the demo (ResNet-18) and Swin-B configs, and Swin-B with the CPU
encoder fast paths (``s2vnet:swinb-bf16``: bfloat16 autocast + channels-last; ``s2vnet:swinb-bf16-compile``: the
same with ``torch.compile``, whose first call per slice shape is timed apart as "first call"). On the CPU the 3D
peers and Swin-B run on a smaller crop / fewer slices so the whole run fits ~15 minutes (once compiled); the output
says so, and every ratio compares methods on the same crop.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
ARCHIVE = "pyradiomics_bhklab-3.1.4.tar.gz"
ARCHIVE_SHA256 = "a44a087efc4ede91b5dfa5cf0de58ea3596bfaec1ef2484f278504b0a8fd5ffb"
CONFIGS = {"demo": "configs/demo/s2vnet_r18_demo.yaml", "swinb": "configs/btcv/s2vnet_swinb.yaml"}
# The encoder fast path of CPUs with AVX-512 BF16 (and GPUs): bfloat16 autocast + channels-last, nothing else changed.
FAST_PATH = ["TEST.S2VNET.ENCODE_DTYPE", "bfloat16", "TEST.S2VNET.CHANNELS_LAST", "True"]
# ... and with torch.compile of the encoder (its first call per slice shape compiles: timed apart, as "first call").
COMPILED = FAST_PATH + ["TEST.S2VNET.COMPILE", "True"]
VARIANTS = {"swinb-bf16": ("swinb", FAST_PATH), "swinb-bf16-compile": ("swinb", COMPILED)}  # name -> (config, TEST)
METHODS = (
    [f"{m}:{c}" for m in ("s2vnet", "naive") for c in CONFIGS]
    + [f"s2vnet:{v}" for v in VARIANTS]
    + ["swinunetr", "unetr", "unet3d"]
)


# ---------------------------------------------------------------------------------------------- data


def fetch_volumes(folder: Path) -> dict[str, Path]:
    """Download (pip, hash-pinned) and unpack the two lung CTs of pyradiomics-bhklab 3.1.4."""
    from s2vnet.utils.fetch import pip_download_pinned

    # the sdist's metadata step imports versioneer (the benchmark extra installs it), hence no build isolation
    archive = pip_download_pinned(
        "pyradiomics-bhklab==3.1.4", ARCHIVE, ARCHIVE_SHA256, folder, ["--no-binary", ":all:", "--no-build-isolation"]
    )
    out = {}
    with tarfile.open(archive) as tar:
        for name in ("lung1", "lung2"):
            target = folder / f"{name}_image.nrrd"
            if not target.exists():
                member = tar.getmember(f"pyradiomics_bhklab-3.1.4/data/{name}_image.nrrd")
                target.write_bytes(tar.extractfile(member).read())
            out[name] = target
    return out


def load_volume(spec: str, folder: Path) -> np.ndarray:
    """uint8 ``(Z, Y, X)`` normalised like the paper (CT window) from "lung1", "lung2" or "synthetic:D"."""
    from s2vnet.data.normalization import IntensitySettings, normalize_intensities, to_uint8

    if spec.startswith("synthetic:"):
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, size=(int(spec.split(":")[1]), 512, 512), dtype=np.uint8)
    import SimpleITK as sitk

    hu = sitk.GetArrayFromImage(sitk.ReadImage(str(fetch_volumes(folder)[spec])))
    return to_uint8(normalize_intensities(hu, "CT", IntensitySettings(), spec))


def crop(volume: np.ndarray, size: int | None, depth: int | None) -> np.ndarray:
    if size:
        y0, x0 = (volume.shape[1] - size) // 2, (volume.shape[2] - size) // 2
        volume = volume[:, y0 : y0 + size, x0 : x0 + size]
    return volume[:depth] if depth else volume


# ---------------------------------------------------------------------------------------------- methods


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _s2vnet_model(config: str, device: str):
    import torch
    from detectron2.modeling import build_model

    from s2vnet.config import setup_cfg

    torch.manual_seed(0)
    config, overrides = VARIANTS.get(config, (config, []))
    cfg = setup_cfg(str(REPO / CONFIGS[config]), ["MODEL.DEVICE", device] + overrides)
    return build_model(cfg).eval(), cfg


def _two_clicks(volume: np.ndarray):
    from s2vnet.inference import Click

    z, h, w = volume.shape
    return [Click(0, (z // 2, h / 3, w / 3), "working"), Click(1, (z // 2, 2 * h / 3, 2 * w / 3), "working")]


def run_s2vnet(volume: np.ndarray, config: str, device: str, repeats: int) -> dict:
    """Batched features once, automatic sweep, then one cached interactive round (and a full recompute)."""
    import torch

    from s2vnet.inference import VolumeInference

    model, cfg = _s2vnet_model(config, device)
    engine = VolumeInference.from_cfg(model, cfg)
    timings = {"encode": [], "automatic": [], "click_cached": [], "click_recompute": []}
    first = {}
    with torch.inference_mode():
        if cfg.TEST.S2VNET.COMPILE:  # compilation is a one-time cost per shape (and cached on disk): time it apart
            t0 = time.perf_counter()
            engine.encode(volume)
            _sync(device)
            first["first_call"] = time.perf_counter() - t0
        for _ in range(repeats):
            t0 = time.perf_counter()
            features = engine.encode(volume)
            _sync(device)
            t1 = time.perf_counter()
            state = engine.start(features)
            _sync(device)
            t2 = time.perf_counter()
            engine.interactive_round(features, state, _two_clicks(volume))
            _sync(device)
            t3 = time.perf_counter()
            timings["encode"].append(t1 - t0)
            timings["automatic"].append(t2 - t0)
            timings["click_cached"].append(t3 - t2)
            timings["click_recompute"].append((t1 - t0) + (t2 - t1) + (t3 - t2))  # encode + auto + round, from scratch
    return {k: float(np.median(v)) for k, v in timings.items()} | first


def run_naive(volume: np.ndarray, config: str, device: str, repeats: int) -> dict:
    """The same model one slice at a time, the backbone re-run for every slice of every round."""
    import torch

    from s2vnet.inference.volume import group_clicks

    model, _ = _s2vnet_model(config, device)
    clicks = group_clicks(_two_clicks(volume), device)
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            t0 = time.perf_counter()
            for round_clicks in ({}, clicks):  # automatic pass, then one round recomputing every feature
                state = model.initial_state()
                for z in range(volume.shape[0]):
                    x = model.preprocess(torch.from_numpy(np.ascontiguousarray(volume[z : z + 1]))[None])
                    _, state = model.step(model.encode(x), state, round_clicks.get(z), tuple(x.shape[-2:]))
            _sync(device)
            times.append(time.perf_counter() - t0)
    return {"automatic_and_round": float(np.median(times))}


def _peer(name: str):
    from monai.networks.nets import UNETR, DynUNet, SwinUNETR

    if name == "swinunetr":
        return SwinUNETR(in_channels=1, out_channels=14, feature_size=48)
    if name == "unetr":
        return UNETR(in_channels=1, out_channels=14, img_size=(96, 96, 96))
    # nnU-Net's default 3D full-resolution U-Net: 6 stages, 32..320 channels, stride-2 downsampling
    return DynUNet(
        3,
        1,
        14,
        kernel_size=[3] * 6,
        strides=[1, 2, 2, 2, 2, 2],
        upsample_kernel_size=[2] * 5,
        filters=[32, 64, 128, 256, 320, 320],
        norm_name="instance",
    )


def run_peer(volume: np.ndarray, name: str, device: str, repeats: int) -> dict:
    """MONAI sliding-window inference with 96^3 windows and overlap 0.5."""
    import torch
    from monai.inferers import sliding_window_inference

    torch.manual_seed(0)
    net = _peer(name).to(device).eval()
    x = torch.from_numpy(volume.astype(np.float32) / 255.0)[None, None].permute(0, 1, 3, 4, 2).to(device)  # (1,1,Y,X,Z)
    times = []
    with torch.inference_mode(), torch.autocast(device_type="cuda", enabled=device.startswith("cuda")):
        for _ in range(repeats):
            t0 = time.perf_counter()
            sliding_window_inference(x, (96, 96, 96), 4 if device.startswith("cuda") else 1, net, overlap=0.5)
            _sync(device)
            times.append(time.perf_counter() - t0)
    return {"automatic": float(np.median(times))}


# ---------------------------------------------------------------------------------------------- driver


def child(args) -> None:
    """Run one method in this process and print one JSON line."""
    import torch

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    volume = crop(load_volume(args.volume, Path(args.data_dir)), args.crop, args.depth)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    method, _, config = args.method.partition(":")
    runners = {
        "s2vnet": lambda: run_s2vnet(volume, config, args.device, args.repeats),
        "naive": lambda: run_naive(volume, config, args.device, args.repeats),
    }
    result = runners[method]() if method in runners else run_peer(volume, method, args.device, args.repeats)
    peak = (
        (torch.cuda.max_memory_allocated() / 2**20)
        if args.device.startswith("cuda")
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    print(
        json.dumps(
            {"method": args.method, "volume": args.volume, "shape": list(volume.shape), "peak_mb": peak, **result}
        )
    )


def plan(args) -> list[dict]:
    """Which method runs on which volume / crop (CPU runs are sized to fit ~15 minutes on 2 cores)."""
    gpu = args.device.startswith("cuda")
    jobs = []
    for vol in args.volumes:
        jobs += [
            {"method": "s2vnet:demo", "volume": vol},
            {"method": "naive:demo", "volume": vol},
            {"method": "s2vnet:swinb", "volume": vol, "depth": None if gpu else args.swinb_slices},
            {"method": "naive:swinb", "volume": vol, "depth": None if gpu else args.swinb_slices},
            {"method": "s2vnet:swinb-bf16", "volume": vol, "depth": None if gpu else args.swinb_slices},
            {"method": "s2vnet:swinb-bf16-compile", "volume": vol, "depth": None if gpu else args.swinb_slices},
        ]
    peer_crop = None if args.full_3d else args.peer_crop
    first = args.volumes[0]
    same = "same crop as 3D peers"
    crop_configs = ("swinb", "swinb-bf16", "swinb-bf16-compile", "demo")
    jobs += [{"method": f"s2vnet:{c}", "volume": first, "crop": peer_crop, "tag": same} for c in crop_configs]
    jobs += [{"method": m, "volume": first, "crop": peer_crop} for m in ("swinunetr", "unetr", "unet3d")]
    return [j for j in jobs if not args.methods or j["method"] in args.methods]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--volumes", nargs="+", default=["lung1", "lung2"], help="lung1, lung2, synthetic:D")
    parser.add_argument("--synthetic-depth", type=int, default=0, help="also run a synthetic 512 x 512 x D volume")
    parser.add_argument("--swinb-slices", type=int, default=4, help="CPU only: slices of each volume for Swin-B")
    parser.add_argument("--peer-crop", type=int, default=192, help="in-plane crop for the 3D peers (CPU)")
    parser.add_argument("--full-3d", action="store_true", help="3D peers on the whole volume (GPU)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=sorted(METHODS),
        metavar="METHOD",
        help=f"run only these (default: all): {METHODS}",
    )
    parser.add_argument("--data-dir", default=str(REPO / "datasets" / "benchmark"))
    parser.add_argument("--output", default=str(REPO / "output" / "benchmark" / "benchmark.json"))
    parser.add_argument("--prepare-only", action="store_true", help="only fetch the benchmark volumes")
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--volume", help=argparse.SUPPRESS)
    parser.add_argument("--crop", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--depth", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.method:
        child(args)
        return 0
    fetch_volumes(Path(args.data_dir))
    if args.prepare_only:
        return 0
    try:
        import monai  # noqa: F401
    except ImportError:
        raise SystemExit("error: the 3D peers need MONAI: pip install -e '.[benchmark]' (or make benchmark)") from None
    if args.synthetic_depth:
        args.volumes = list(args.volumes) + [f"synthetic:{args.synthetic_depth}"]
    rows = []
    for job in plan(args):
        cmd = [
            sys.executable,
            __file__,
            "--method",
            job["method"],
            "--volume",
            job["volume"],
            "--device",
            args.device,
            "--repeats",
            str(args.repeats),
            "--data-dir",
            args.data_dir,
        ]
        for key in ("crop", "depth"):
            if job.get(key):
                cmd += [f"--{key}", str(job[key])]
        started = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr[-2000:], file=sys.stderr)
            raise SystemExit(f"benchmark job {job} failed")
        row = json.loads(out.stdout.strip().splitlines()[-1])
        row["tag"] = job.get("tag", "")
        rows.append(row)
        print(
            f"  done {row['method']} on {row['volume']} {row['shape']} in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
    report = summarize(rows, args)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=1))
    print(report["table"])
    print(f"wrote {args.output}")
    return 0


def summarize(rows: list[dict], args) -> dict:
    """Table and ratios; volumes/min and s/slice come from each row's own shape."""
    lines = [
        "| method | volume | shape (z, y, x) | s / volume | volumes / min | s / slice | peak MB "
        "| click cached (s) | click recompute (s) | first call (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        seconds = r.get("automatic", r.get("automatic_and_round"))
        label = (
            r["method"]
            + (" (auto + 1 round)" if r["method"].startswith("naive") else "")
            + (f" [{r['tag']}]" if r["tag"] else "")
        )
        cached = f"{r['click_cached']:.2f}" if "click_cached" in r else "-"
        recompute = f"{r['click_recompute']:.2f}" if "click_recompute" in r else "-"
        first = f"{r['first_call']:.1f}" if "first_call" in r else "-"
        lines.append(
            f"| {label} | {r['volume']} | {tuple(r['shape'])} | {seconds:.2f} | {60 / seconds:.2f} | "
            f"{seconds / r['shape'][0]:.3f} | {r['peak_mb']:.0f} | {cached} | {recompute} | {first} |"
        )
    projected = projection(rows)
    if projected:
        lines += ["", f"Projection (not measured) to one {' x '.join(map(str, PROJECTED_SHAPE))} (z, y, x) volume:", ""]
        lines += ["| method | projected s / volume | from |", "|---|---|---|"]
        lines += [f"| {m} | {p['seconds']:.0f} | {p['from']} |" for m, p in projected.items()]
    return {
        "device": args.device,
        "cpu_count": os.cpu_count(),
        "rows": rows,
        "ratios": ratios(rows),
        "projection": projected,
        "table": "\n".join(lines),
    }


PROJECTED_SHAPE = (200, 512, 512)
WINDOW, OVERLAP = 96, 0.5


def sliding_windows(shape: tuple[int, ...]) -> int:
    """Windows MONAI's sliding-window inference runs over ``shape`` (96^3 windows, overlap 0.5; short axes padded)."""
    step = int(WINDOW * (1 - OVERLAP))
    return int(np.prod([1 if n <= WINDOW else -(-(n - WINDOW) // step) + 1 for n in shape]))


def projection(rows: list[dict]) -> dict:
    """Seconds for one PROJECTED_SHAPE volume, from measured costs: S2VNet from its per-slice encode and decoder
    times on full 512 x 512 slices, the 3D peers from their per-window time times the windows such a volume needs."""
    out = {}
    for r in rows:
        z, y, x = r["shape"]
        if r["method"].startswith("s2vnet:") and not r["tag"] and (y, x) == PROJECTED_SHAPE[1:]:
            per_slice = r["automatic"] / z
            entry = out.setdefault(r["method"], {"per_slice": [], "from": []})
            entry["per_slice"].append(per_slice)
            entry["seconds"] = float(np.mean(entry["per_slice"])) * PROJECTED_SHAPE[0]
            entry["from"].append(f"{per_slice:.3f} s/slice on {r['volume']} {tuple(r['shape'])}")
        elif r["method"] in ("swinunetr", "unetr", "unet3d"):
            per_window = r["automatic"] / sliding_windows((y, x, z))
            out[r["method"]] = {
                "seconds": per_window * sliding_windows(PROJECTED_SHAPE),
                "from": [f"{per_window:.2f} s/window x {sliding_windows(PROJECTED_SHAPE)} windows"],
            }
    for p in out.values():
        p["from"] = "; ".join(p["from"])
        p.pop("per_slice", None)
    return out


def ratios(rows: list[dict]) -> dict:
    """The issue's targets as measured ratios (same volume and crop on both sides)."""

    def find(method, tag=None, volume=None):
        for r in rows:
            if r["method"] == method and (tag is None or r["tag"] == tag) and (volume is None or r["volume"] == volume):
                return r
        return None

    out = {}
    swin = find("swinunetr")
    for config in ("swinb", "swinb-bf16", "swinb-bf16-compile", "demo"):  # the paper's model first: the headline
        crop_s2v = find(f"s2vnet:{config}", "same crop as 3D peers")
        if crop_s2v and swin:
            out[f"s2vnet_{config}_vs_swinunetr_volumes_per_min"] = swin["automatic"] / crop_s2v["automatic"]
    for config in ("demo", "swinb"):
        batched, naive = find(f"s2vnet:{config}", ""), find(f"naive:{config}")
        if batched and naive:
            out[f"batched_vs_naive_{config}"] = naive["automatic_and_round"] / (
                batched["automatic"] + batched["click_cached"]
            )
            out[f"click_cached_vs_recompute_{config}"] = batched["click_recompute"] / batched["click_cached"]
    return out


if __name__ == "__main__":
    sys.exit(main())
