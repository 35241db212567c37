"""Slices as PNG: window/level greyscale, label ids, and a coloured overlay."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from s2vnet.utils.visualize import class_colors, overlay

__all__ = ["PRESETS", "window_slice", "auto_window", "png_bytes", "overlay_rgb", "hex_colors"]

# Window width / level presets in HU for CT (the viewer also offers an "auto" window per scan).
PRESETS = {"abdomen": (400.0, 40.0), "lung": (1500.0, -600.0), "bone": (1800.0, 400.0)}


def window_slice(values: np.ndarray, window: float, level: float) -> np.ndarray:
    """Intensities ``(H, W)`` -> uint8 ``(H, W)``: ``level - window/2`` maps to 0, ``level + window/2`` to 255."""
    low = level - window / 2.0
    scaled = (values.astype(np.float32) - low) * (255.0 / max(float(window), 1e-6))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def auto_window(
    volume: np.ndarray, percentiles: Sequence[float] = (0.5, 99.5), sample: int = 2_000_000
) -> tuple[float, float]:
    """``(width, level)`` spanning the volume's 0.5-99.5 percentiles (from a strided sample of the voxels)."""
    flat = volume.reshape(-1)
    step = max(1, flat.size // sample)
    low, high = np.percentile(flat[::step].astype(np.float32), percentiles)
    width = max(float(high - low), 1.0)
    return width, float(low) + width / 2.0


def png_bytes(array: np.ndarray) -> bytes:
    """uint8 ``(H, W)`` or ``(H, W, 3)`` -> PNG bytes (fast compression: this is served interactively)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def overlay_rgb(
    grey: np.ndarray, labels: np.ndarray, num_classes: int, alpha: float = 0.45, hidden: Sequence[int] = ()
) -> np.ndarray:
    """uint8 grey ``(H, W)`` + labels ``(H, W)`` (0 = background, k = class id k) -> uint8 RGB ``(H, W, 3)``.

    The figures' blending (:func:`s2vnet.utils.visualize.overlay`); class ids in ``hidden`` stay uncoloured.
    """
    shown = np.where(np.isin(labels, list(hidden)), 0, labels) if hidden else labels
    rgb = overlay(grey, shown, class_colors(num_classes), alpha)
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def hex_colors(num_classes: int) -> list[str]:
    """The classes' overlay colours as ``#rrggbb`` (the same colours as the PNG overlays and figures)."""
    return ["#{:02x}{:02x}{:02x}".format(*tuple(int(round(c * 255)) for c in rgb)) for rgb in class_colors(num_classes)]
