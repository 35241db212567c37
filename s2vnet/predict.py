"""Segment scans with a trained S2VNet: a Python API and the ``python -m s2vnet.predict`` CLI.

    python -m s2vnet.predict --config-file configs/demo/s2vnet_r18_demo.yaml --weights model_final.pth \\
        --input ct_dicom_folder/ --output seg.nii.gz [--clicks clicks.json] [--device cpu] [KEY VALUE ...]

The output has the input's size, spacing, origin and direction; ``seg.json`` beside it names the labels.
Clicks JSON: a list of ``{"class": name or label id (1..K), "positive": true, "voxel": [i, j, k]}``
(SimpleITK index order of the input) or ``{"class": ..., "point": [x, y, z]}`` (physical mm, LPS).

Python::

    predictor = Predictor.from_files("configs/demo/s2vnet_r18_demo.yaml", "model_final.pth")
    result = predictor.segment("ct.nii.gz")           # SegmentationResult: labels (z, y, x) on the input grid
    session = InteractiveSession(predictor, "ct.nii.gz")
    labels = session.add_clicks([{"class": "liver", "voxel": [120, 200, 10]}])
    labels = session.undo()
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import SimpleITK as sitk
import torch
from detectron2.modeling import build_model

from s2vnet.config import setup_cfg
from s2vnet.data.preprocess import PreparedVolume, PreprocessSettings, prepare_volume
from s2vnet.data.volume_io import Geometry, write_volume
from s2vnet.errors import InputError, cli_errors
from s2vnet.inference.volume import Click, InteractionState, ProgressFn, VolumeFeatures, VolumeInference

__all__ = ["Predictor", "InteractiveSession", "SegmentationResult", "load_weights", "to_working_click", "main"]


def load_weights(model: torch.nn.Module, path: str | os.PathLike) -> None:
    """Load a Detectron2 checkpoint strictly; weights that do not fit the config are an :class:`InputError`.

    The file is read with ``weights_only=True``: tensors and plain containers only, no arbitrary pickled code
    (Detectron2's own checkpoints, including ``model_final.pth``, load this way).
    """
    if not Path(path).is_file():
        raise InputError(path, "no such weights file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or non-tensor files
        raise InputError(path, f"cannot be read as a weights-only checkpoint ({type(err).__name__})") from None
    state = state.get("model", state) if isinstance(state, dict) else state
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).strip().splitlines()[1:3]]
        raise InputError(path, "weights do not match the config: " + " ".join(lines)[:300]) from None


@dataclass
class SegmentationResult:
    """A segmentation on the input's grid.

    Attributes:
        labels: uint8 ``(z, y, x)``, 0 = background, ``c + 1`` = ``class_names[c]``.
        geometry: the input's grid (write with :func:`s2vnet.data.write_volume`).
        class_names: names in class-index order.
    """

    labels: np.ndarray
    geometry: Geometry
    class_names: list[str]

    def save(self, path: str | os.PathLike) -> Path:
        """Write the labels (atomically) and a JSON sidecar with the label names next to them."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        sidecar = sidecar_path(path)
        tmp = sidecar.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{sidecar.name}")
        tmp.write_text(json.dumps({"labels": {"0": "background", **{str(i + 1): n for i, n in enumerate(self.class_names)}}}, indent=1))
        try:
            write_volume(self.labels, self.geometry, path)
            tmp.replace(sidecar)
        finally:
            tmp.unlink(missing_ok=True)
        return path


def sidecar_path(path: Path) -> Path:
    """``seg.nii.gz`` -> ``seg.json``."""
    name = path.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha"):
        if name.lower().endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".json")
    return path.with_name(name + ".json")


class Predictor:
    """A loaded model plus its preprocessing: ``segment(path_or_array)`` gives labels on the input grid."""

    def __init__(self, cfg, weights: str | os.PathLike | None = None, device: str | None = None, progress: bool = False) -> None:
        cfg = cfg.clone()
        cfg.defrost()
        cfg.MODEL.DEVICE = device or ("cuda" if torch.cuda.is_available() else "cpu")
        cfg.freeze()
        self.cfg = cfg
        self.model = build_model(cfg).eval()
        if weights:
            load_weights(self.model, weights)
        self.settings = PreprocessSettings.from_cfg(cfg)
        self.class_names = list(cfg.MODEL.S2VNET.CLASS_NAMES) or [f"class_{i + 1}" for i in range(cfg.MODEL.S2VNET.NUM_CLASSES)]
        self.engine = VolumeInference.from_cfg(self.model, cfg, progress=progress)

    @classmethod
    def from_files(cls, config_file: str, weights: str | None, opts: Sequence[str] = (), device: str | None = None,
                   progress: bool = False) -> "Predictor":
        """Build from a YAML config, a checkpoint and ``KEY VALUE`` overrides."""
        return cls(setup_cfg(config_file, list(opts)), weights, device, progress)

    def prepare(self, image: str | os.PathLike | np.ndarray, modality: str = "CT",
                spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> PreparedVolume:
        """Read and preprocess a scan (file, DICOM folder, or an array ``(z, y, x)`` with ``spacing`` (z, y, x) mm)."""
        if isinstance(image, np.ndarray):
            if image.ndim != 3:
                raise InputError("<array>", f"has shape {image.shape}; expected a 3D volume (z, y, x)")
            tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"s2vnet-{uuid.uuid4().hex[:8]}.mha"
            geometry = Geometry(tuple(image.shape), tuple(map(float, spacing)), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
            sitk.WriteImage(geometry.to_sitk(image), str(tmp))
            try:
                return prepare_volume(tmp, modality, self.settings)
            finally:
                tmp.unlink(missing_ok=True)
        return prepare_volume(image, modality, self.settings)

    def segment(self, image: str | os.PathLike | np.ndarray, modality: str = "CT",
                spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> SegmentationResult:
        """Automatic segmentation of a whole volume."""
        prepared = self.prepare(image, modality, spacing)
        features = self.engine.encode(prepared.image)
        scores = self.engine.automatic(features)
        labels = self.engine.labels(scores, features.image_hw, features.padded_hw)
        return SegmentationResult(prepared.to_input_grid(labels), prepared.geometry, self.class_names)

    def class_index(self, value: str | int, source: str = "clicks") -> int:
        """Class index (0-based) from a class name or a label id ``1..K``."""
        if isinstance(value, str) and not value.isdigit():
            if value not in self.class_names:
                raise InputError(source, f"unknown class name '{value}'; known: {', '.join(self.class_names)}")
            return self.class_names.index(value)
        label = int(value)
        if not 1 <= label <= len(self.class_names):
            raise InputError(source, f"unknown class id {label}; ids are 1..{len(self.class_names)}")
        return label - 1


class InteractiveSession:
    """Click-and-refine on one volume; the slice features are computed once for the whole session."""

    def __init__(self, predictor: Predictor, image: str | os.PathLike | np.ndarray | PreparedVolume, modality: str = "CT",
                 spacing: Sequence[float] = (1.0, 1.0, 1.0), report: ProgressFn | None = None) -> None:
        """Encode the volume once and run the automatic segmentation (round 0).

        Args:
            report: optional ``report(stage, done, total)`` progress callback (encode, then automatic sweep).
        """
        self.predictor = predictor
        self.prepared = image if isinstance(image, PreparedVolume) else predictor.prepare(image, modality, spacing)
        self.features: VolumeFeatures = predictor.engine.encode(self.prepared.image, report)
        self._history: list[InteractionState] = [predictor.engine.start(self.features, report)]

    @property
    def labels(self) -> np.ndarray:
        """Current labels ``(z, y, x)`` on the input grid."""
        state = self._history[-1]
        engine = self.predictor.engine
        return self.prepared.to_input_grid(engine.labels(state.fused, self.features.image_hw, self.features.padded_hw))

    @property
    def rounds(self) -> int:
        return len(self._history) - 1

    def result(self) -> SegmentationResult:
        return SegmentationResult(self.labels, self.prepared.geometry, self.predictor.class_names)

    def to_working_click(self, click: dict, source: str = "clicks") -> Click:
        """A user click (``class``, ``positive``, ``voxel`` [i, j, k] or ``point`` [x, y, z]) -> a working-grid click."""
        return to_working_click(self.predictor, self.prepared, click, source)

    def add_clicks(self, clicks: Sequence[dict], source: str = "clicks", report: ProgressFn | None = None) -> np.ndarray:
        """One refinement round with any number of clicks on any classes; returns the new labels (input grid)."""
        working = [self.to_working_click(c, source) for c in clicks]
        if working:
            engine = self.predictor.engine
            self._history.append(engine.interactive_round(self.features, self._history[-1], working, report))
        return self.labels

    def undo(self) -> np.ndarray:
        """Drop the latest round (the automatic result stays)."""
        if len(self._history) > 1:
            self._history.pop()
        return self.labels

    def reset(self) -> np.ndarray:
        """Back to the automatic result."""
        del self._history[1:]
        return self.labels


def to_working_click(predictor: Predictor, prepared: PreparedVolume, click: dict, source: str = "clicks") -> Click:
    """Validate a user click against the class list and the volume, and place it on the working grid."""
    if not isinstance(click, dict) or "class" not in click or ("voxel" in click) == ("point" in click):
        raise InputError(source, f"click {click!r} needs 'class' and exactly one of 'voxel' or 'point'")
    index = predictor.class_index(click["class"], source)
    z, y, x = working_position(prepared, _stored_index(prepared.geometry, click, source))
    return Click(index, z, y, x, bool(click.get("positive", True)))


def _stored_index(geometry: Geometry, click: dict, source: str) -> tuple[int, int, int]:
    """``(z, y, x)`` stored-grid index of a click given as ``voxel`` [i, j, k] or physical ``point`` [x, y, z]."""
    try:
        if "voxel" in click:
            ijk = [int(round(float(v))) for v in click["voxel"]]
        else:
            point = [float(v) for v in click["point"]]
            ijk = [int(round(v)) for v in _grid_probe(geometry).TransformPhysicalPointToContinuousIndex(point)]
    except (TypeError, ValueError):
        raise InputError(source, f"click {click!r}: 'voxel'/'point' must be three numbers") from None
    if len(ijk) != 3:
        raise InputError(source, f"click {click!r}: 'voxel'/'point' must be three numbers")
    size = tuple(reversed(geometry.shape))  # (i, j, k) extent
    if not all(0 <= v < n for v, n in zip(ijk, size)):
        raise InputError(source, f"click {click!r} lies outside the volume (index {ijk}, size {list(size)})")
    return ijk[2], ijk[1], ijk[0]


def _grid_probe(geometry: Geometry) -> sitk.Image:
    """A one-voxel image with the grid's spacing, origin and direction, for index <-> physical transforms."""
    probe = sitk.Image(1, 1, 1, sitk.sitkUInt8)
    probe.SetSpacing(tuple(reversed(geometry.spacing)))
    probe.SetOrigin(geometry.origin)
    probe.SetDirection(geometry.direction)
    return probe


def working_position(prepared: PreparedVolume, zyx: tuple[int, int, int]) -> tuple[int, float, float]:
    """A stored-grid voxel ``(z, y, x)`` -> working-grid slice and in-plane pixel position."""
    reorient = prepared.reorientation
    shape = prepared.geometry.shape
    canon = [zyx[p] for p in reorient.perm]
    canon_shape = [shape[p] for p in reorient.perm]
    canon = [n - 1 - c if f else c for c, n, f in zip(canon, canon_shape, reorient.flip)]
    res = prepared.resampling
    y = (canon[1] + 0.5) * res.out_shape[0] / res.in_shape[0] - 0.5
    x = (canon[2] + 0.5) * res.out_shape[1] / res.in_shape[1] - 0.5
    return int(canon[0]), float(y), float(x)


def read_clicks(path: str | os.PathLike) -> list[dict]:
    """Parse a clicks JSON file (a list of click objects)."""
    try:
        clicks = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, "no such clicks file") from None
    except (OSError, ValueError) as err:
        raise InputError(path, f"cannot be parsed as JSON ({err})") from None
    if not isinstance(clicks, list):
        raise InputError(path, "must hold a JSON list of click objects")
    return clicks


@cli_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Segment a CT/MRI scan with S2VNet.")
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True, help="checkpoint (model_final.pth)")
    parser.add_argument("--input", required=True, help="NIfTI / NRRD / MHA file or DICOM series folder")
    parser.add_argument("--output", required=True, help=".nii.gz, .nii, .nrrd or .mha")
    parser.add_argument("--clicks", help="clicks JSON for one refinement round")
    parser.add_argument("--modality", default="CT", help="CT or MRI")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, KEY VALUE pairs")
    args = parser.parse_args(argv)
    output = Path(args.output)
    if not any(output.name.lower().endswith(s) for s in (".nii.gz", ".nii", ".nrrd", ".mha")):
        raise InputError(output, "unsupported output type; expected .nii.gz, .nii, .nrrd or .mha")
    clicks = read_clicks(args.clicks) if args.clicks else []
    predictor = Predictor.from_files(args.config_file, args.weights, args.opts, args.device, progress=True)
    prepared = predictor.prepare(args.input, args.modality)
    for click in clicks:  # check every click before any network work
        to_working_click(predictor, prepared, click, args.clicks)
    session = InteractiveSession(predictor, prepared)
    session.add_clicks(clicks, source=args.clicks or "clicks")
    session.result().save(output)
    print(f"wrote {output} ({len(clicks)} clicks) and {sidecar_path(output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
