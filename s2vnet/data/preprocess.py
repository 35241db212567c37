"""From a scan on disk to the uint8 ``(z, y, x)`` volume the network sees, and back.

``prepare_volume`` runs: read (+ label grid check) -> reorient -> normalise by modality ->
optional in-plane resampling (to a spacing, or at inference to a fixed slice size) -> uint8. The
returned :class:`PreparedVolume` keeps everything needed to put a prediction back on the input's
grid (:meth:`PreparedVolume.to_input_grid`). The slice cache and inference both go through this one function.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from s2vnet.data.label_map import LabelMap
from s2vnet.data.normalization import IntensitySettings, canonical_modality, normalize_intensities, to_uint8
from s2vnet.data.orientation import Reorientation, reorientation_for
from s2vnet.data.resample import InPlaneResampling, plan_in_plane
from s2vnet.data.validate import VolumeLimits, check_resampled_size, check_spacing
from s2vnet.data.volume_io import Geometry, Volume, read_label, read_volume


@dataclass(frozen=True)
class PreprocessSettings:
    """Everything that changes the preprocessed voxels (stored in the slice-cache manifest), and the size limits.

    ``limits`` refuse inputs but never change voxels, so they are left out of :meth:`to_dict` (the manifest).
    """

    orientation: str = "LPS"
    intensity: IntensitySettings = field(default_factory=IntensitySettings)
    target_spacing: tuple[float, float] | None = None  # (y, x) mm; None = keep the stored spacing
    limits: VolumeLimits = field(default_factory=VolumeLimits)
    test_size: tuple[int, int] | None = None  # (y, x) pixels of every slice at inference (instead of target_spacing)

    @classmethod
    def from_cfg(cls, cfg) -> PreprocessSettings:
        """Read ``INPUT.VOLUME.{ORIENTATION, CT_WINDOW, MRI_PERCENTILES, RESAMPLE_IN_PLANE, TARGET_SPACING,
        TEST_RESIZE, CROP_SIZE}`` and the limits (inference settings; the slice cache drops ``test_size``)."""
        vol = cfg.INPUT.VOLUME
        intensity = IntensitySettings(tuple(map(float, vol.CT_WINDOW)), tuple(map(float, vol.MRI_PERCENTILES)))
        target = tuple(map(float, vol.TARGET_SPACING)) if vol.RESAMPLE_IN_PLANE else None
        test_size = tuple(map(int, vol.CROP_SIZE)) if vol.TEST_RESIZE else None
        return cls(vol.ORIENTATION, intensity, target, VolumeLimits.from_cfg(cfg), test_size)

    def for_training(self) -> PreprocessSettings:
        """These settings without the inference-only ``test_size`` (training slices keep their grid)."""
        return replace(self, test_size=None)

    def to_dict(self) -> dict[str, Any]:
        """The settings that change voxels (the limits are left out; ``test_size`` only when set: the slice cache
        never has it)."""
        out = asdict(self)
        out.pop("limits")
        if self.test_size is None:
            del out["test_size"]
        return out


@dataclass
class PreparedVolume:
    """A volume ready for the network.

    Attributes:
        image: uint8 ``(z, y, x)`` in the canonical orientation and working spacing.
        label: uint8 ``(z, y, x)`` contiguous labels (0 = background, c + 1 = class c) or None.
        spacing: working voxel size ``(z, y, x)`` in mm.
        geometry: the input's grid, for writing predictions back.
        reorientation / resampling: the steps :meth:`to_input_grid` undoes.
    """

    image: np.ndarray
    label: np.ndarray | None
    spacing: tuple[float, float, float]
    geometry: Geometry
    reorientation: Reorientation
    resampling: InPlaneResampling

    def to_input_grid(self, labels: np.ndarray) -> np.ndarray:
        """Labels ``(z, y, x)`` on the working grid -> the input's stored grid ``geometry.shape``."""
        restored = self.reorientation.invert(self.resampling.restore_labels(labels))
        return np.ascontiguousarray(restored)


def prepare_volume(
    image_path: str | os.PathLike,
    modality: str,
    settings: PreprocessSettings,
    label_path: str | os.PathLike | None = None,
    label_map: LabelMap | None = None,
) -> PreparedVolume:
    """Read and preprocess one case.

    Args:
        image_path: image file or DICOM folder.
        modality: "CT" or "MRI" (or another registered modality).
        settings: preprocessing settings, usually ``PreprocessSettings.from_cfg(cfg)``.
        label_path: optional label file; it must lie on the image's grid.
        label_map: maps stored label ids to contiguous values; required with ``label_path``.

    Raises:
        InputError: unreadable/non-3D/truncated files, grid mismatch, unknown labels, NaNs, unknown modality,
            a size over ``settings.limits`` (read or resampled), an implausible voxel size.
    """
    modality = canonical_modality(modality, str(image_path))
    prepared = prepare_loaded(read_volume(image_path, settings.limits), modality, settings)
    if label_path is not None:
        if label_map is None:
            raise ValueError("a label_map is needed to read a label volume")
        stored = read_label(label_path, reference=prepared.geometry, limits=settings.limits).array
        encoded = prepared.reorientation.apply(label_map.encode(stored, str(label_path)))
        prepared.label = prepared.resampling.labels(np.ascontiguousarray(encoded))
    return prepared


def prepare_loaded(volume: Volume, modality: str, settings: PreprocessSettings) -> PreparedVolume:
    """Preprocess a volume already read with :func:`read_volume` (for callers that also keep its raw voxels).

    Args:
        volume: ``array (z, y, x)`` in stored units (HU for CT) with its geometry.
        modality / settings: as for :func:`prepare_volume`.
    """
    source = volume.source
    modality = canonical_modality(modality, source)
    check_spacing(volume.geometry.spacing, settings.limits, source)
    reorient = reorientation_for(volume.geometry.direction, settings.orientation, source)
    spacing = reorient.spacing(volume.geometry.spacing)
    shape = reorient.shape(volume.array.shape)
    resampling = plan_in_plane(shape, spacing, settings.target_spacing, settings.test_size)
    check_resampled_size((shape[0],) + resampling.out_shape, settings.limits, source)  # before allocating it
    image = reorient.apply(normalize_intensities(volume.array, modality, settings.intensity, source))
    image = to_uint8(resampling.image(image))
    spacing = (spacing[0],) + resampling.out_spacing
    return PreparedVolume(np.ascontiguousarray(image), None, spacing, volume.geometry, reorient, resampling)
