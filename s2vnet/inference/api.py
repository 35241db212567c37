"""The public library API: :class:`Predictor`, :class:`InteractiveSession`, :class:`SegmentationResult`.

::

    from s2vnet import Predictor, InteractiveSession

    predictor = Predictor.from_files("configs/demo/s2vnet_r18_demo.yaml", "model_final.pth")
    result = predictor.segment("ct.nii.gz")           # SegmentationResult: labels (z, y, x) on the input grid
    result.save("seg.nii.gz")                         # + seg.json naming the labels
    session = InteractiveSession(predictor, "ct.nii.gz")
    labels = session.add_clicks([{"class": "liver", "voxel": [120, 200, 10]}])   # clicks JSON objects ...
    labels = session.add_clicks([Click(1, (10, 200, 120), "zyx", positive=False)])  # ... or Click objects
    labels = session.undo()

Clicks are described once, in :mod:`s2vnet.data.clicks` (frames, JSON keys, validation).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from detectron2.modeling import build_model

from s2vnet.config import resolve_device, setup_cfg
from s2vnet.data.clicks import Click, ClickFrames, parse_click
from s2vnet.data.preprocess import PreparedVolume, PreprocessSettings, prepare_volume
from s2vnet.data.validate import check_array_volume
from s2vnet.data.volume_io import WRITE_SUFFIXES, Geometry, write_volume
from s2vnet.errors import InputError
from s2vnet.inference.checkpoint import load_weights
from s2vnet.inference.volume import InteractionState, ProgressFn, VolumeFeatures, VolumeInference

__all__ = ["Predictor", "InteractiveSession", "SegmentationResult", "sidecar_path"]


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
        names = {"0": "background", **{str(i + 1): n for i, n in enumerate(self.class_names)}}
        tmp.write_text(json.dumps({"labels": names}, indent=1))
        try:
            write_volume(self.labels, self.geometry, path)
            tmp.replace(sidecar)
        finally:
            tmp.unlink(missing_ok=True)
        return path


def sidecar_path(path: Path) -> Path:
    """``seg.nii.gz`` -> ``seg.json``."""
    name = path.name
    for suffix in WRITE_SUFFIXES:
        if name.lower().endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".json")
    return path.with_name(name + ".json")


class Predictor:
    """A loaded model plus its preprocessing: ``segment(path_or_array)`` gives labels on the input grid."""

    def __init__(
        self, cfg, weights: str | os.PathLike | None = None, device: str | None = None, progress: bool = False
    ) -> None:
        cfg = cfg.clone()
        cfg.defrost()
        cfg.MODEL.DEVICE = resolve_device(device)
        cfg.freeze()
        self.cfg = cfg
        self.model = build_model(cfg).eval()
        if weights:
            load_weights(self.model, weights)
        self.settings = PreprocessSettings.from_cfg(cfg)
        s2v = cfg.MODEL.S2VNET
        self.class_names = list(s2v.CLASS_NAMES) or [f"class_{i + 1}" for i in range(s2v.NUM_CLASSES)]
        self.engine = VolumeInference.from_cfg(self.model, cfg, progress=progress)

    @classmethod
    def from_files(
        cls,
        config_file: str,
        weights: str | None,
        opts: Sequence[str] = (),
        device: str | None = None,
        progress: bool = False,
    ) -> Predictor:
        """Build from a YAML config, a checkpoint and ``KEY VALUE`` overrides."""
        return cls(setup_cfg(config_file, list(opts)), weights, device, progress)

    def prepare(
        self, image: str | os.PathLike | np.ndarray, modality: str = "CT", spacing: Sequence[float] = (1.0, 1.0, 1.0)
    ) -> PreparedVolume:
        """Read and preprocess a scan (file, DICOM folder, or an array ``(z, y, x)`` with ``spacing`` (z, y, x) mm)."""
        if isinstance(image, np.ndarray):
            check_array_volume(image, spacing, "<array>", self.settings.limits)
            tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"s2vnet-{uuid.uuid4().hex[:8]}.mha"
            geometry = Geometry(
                tuple(image.shape), tuple(map(float, spacing)), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1)
            )
            sitk.WriteImage(geometry.to_sitk(image), str(tmp))
            try:
                return prepare_volume(tmp, modality, self.settings)
            finally:
                tmp.unlink(missing_ok=True)
        return prepare_volume(image, modality, self.settings)

    def segment(
        self, image: str | os.PathLike | np.ndarray, modality: str = "CT", spacing: Sequence[float] = (1.0, 1.0, 1.0)
    ) -> SegmentationResult:
        """Automatic segmentation of a whole volume."""
        prepared = self.prepare(image, modality, spacing)
        features = self.engine.encode(prepared.image)
        labels = self.engine.labels(self.engine.automatic(features), features.image_hw, features.padded_hw)
        return SegmentationResult(prepared.to_input_grid(labels), prepared.geometry, self.class_names)

    def class_index(self, value: str | int, source: str = "clicks") -> int:
        """Class index (0-based) from a class name or a label id ``1..K`` (as the clicks JSON gives it)."""
        return parse_click({"class": value, "voxel": [0, 0, 0]}, self.class_names, source=source).class_index

    def working_clicks(
        self, prepared: PreparedVolume, clicks: Sequence[Click | dict], source: str = "clicks"
    ) -> list[Click]:
        """Validate clicks (objects or clicks-JSON dicts) against the classes and the volume; working frame."""
        frames = ClickFrames.of(prepared)
        out = []
        for i, click in enumerate(clicks):
            where = f"{source} (click {i + 1})"
            if not isinstance(click, Click):
                click = parse_click(click, self.class_names, frames, where)
            elif click.class_index >= len(self.class_names):
                raise InputError(where, f"class index {click.class_index} >= {len(self.class_names)} classes")
            out.append(frames.convert(click, "working", where))
        return out


class InteractiveSession:
    """Click-and-refine on one volume; the slice features are computed once for the whole session."""

    def __init__(
        self,
        predictor: Predictor,
        image: str | os.PathLike | np.ndarray | PreparedVolume,
        modality: str = "CT",
        spacing: Sequence[float] = (1.0, 1.0, 1.0),
        report: ProgressFn | None = None,
    ) -> None:
        """Encode the volume once and run the automatic segmentation (round 0).

        Args:
            report: optional ``report(stage, done, total)`` progress callback (encode, then automatic sweep).
        """
        self.predictor = predictor
        self.prepared = image if isinstance(image, PreparedVolume) else predictor.prepare(image, modality, spacing)
        self.features: VolumeFeatures = predictor.engine.encode(self.prepared.image, report)
        start = predictor.engine.start(self.features, report)
        self._history: list[InteractionState] = [start]
        self._working: list[np.ndarray] = [predictor.engine.state_labels(start, self.features)]  # per state

    @property
    def labels(self) -> np.ndarray:
        """Current labels ``(z, y, x)`` on the input grid."""
        return self.prepared.to_input_grid(self._working[-1])

    @property
    def rounds(self) -> int:
        return len(self._history) - 1

    def result(self) -> SegmentationResult:
        return SegmentationResult(self.labels, self.prepared.geometry, self.predictor.class_names)

    def add_clicks(
        self,
        clicks: Sequence[Click | dict],
        source: str = "clicks",
        report: ProgressFn | None = None,
        preview: Callable[[np.ndarray], None] | None = None,
    ) -> np.ndarray:
        """One refinement round with any number of clicks on any classes; returns the new labels (input grid).

        Args:
            clicks: :class:`~s2vnet.data.clicks.Click` objects in any frame, or clicks-JSON objects.
            source: names the clicks in error messages (e.g. the JSON file).
            report: optional ``report(stage, done, total)`` progress callback (the two decoder sweeps).
            preview: optional; when every click lies on one slice, called once, early in the round, with labels
                ``(z, y, x)`` on the input grid in which that slice already has its final result and every other
                slice still has the previous round's (for a viewer that redraws the clicked slice at once).
        """
        working = self.predictor.working_clicks(self.prepared, clicks, source)
        if working:
            engine = self.predictor.engine
            before = self._history[-1]

            def show(z: int, slice_labels: np.ndarray) -> None:
                labels = self._working[-1].copy()
                labels[z] = slice_labels
                preview(self.prepared.to_input_grid(labels))

            state = engine.interactive_round(self.features, before, working, report, show if preview else None)
            # only the slices the round changed are relabelled (VolumeInference.changed_slices)
            self._working.append(engine.state_labels(state, self.features, since=(before, self._working[-1])))
            self._history.append(state)
        return self.labels

    def undo(self) -> np.ndarray:
        """Drop the latest round (the automatic result stays)."""
        if len(self._history) > 1:
            self._history.pop()
            self._working.pop()
        return self.labels

    def reset(self) -> np.ndarray:
        """Back to the automatic result."""
        del self._history[1:], self._working[1:]
        return self.labels
