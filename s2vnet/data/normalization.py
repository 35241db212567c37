"""Per-modality intensity normalisation to [0, 255] (paper, supplement A).

``INTENSITY_NORMALIZER_REGISTRY`` maps a modality name to a function called as
``fn(array, settings) -> float32 array in [0, 255]`` where ``array`` is any shape and ``settings``
is an :class:`IntensitySettings`. Register a new modality with ``@register_modality("PET")``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from detectron2.utils.registry import Registry

from s2vnet.errors import InputError

INTENSITY_NORMALIZER_REGISTRY = Registry("INTENSITY_NORMALIZER")
INTENSITY_NORMALIZER_REGISTRY.__doc__ = """
Modality name -> ``fn(array: np.ndarray, settings: IntensitySettings) -> np.ndarray`` (float32, [0, 255]).
Add members with ``@register_modality("NAME")``.
"""

# Spellings users write for the registered modality names.
_ALIASES = {"MR": "MRI", "MRI": "MRI", "CT": "CT"}


@dataclass(frozen=True)
class IntensitySettings:
    """Normalisation parameters (config ``INPUT.VOLUME.CT_WINDOW`` / ``MRI_PERCENTILES``)."""

    ct_window: tuple[float, float] = (-175.0, 250.0)
    mri_percentiles: tuple[float, float] = (0.5, 99.5)


def canonical_modality(modality: str, source: str = "<dataset>") -> str:
    """Registered name for ``modality`` ("mr" -> "MRI"); :class:`InputError` if unknown."""
    name = _ALIASES.get(str(modality).upper(), str(modality))
    if name not in INTENSITY_NORMALIZER_REGISTRY:
        known = ", ".join(sorted(k for k, _ in INTENSITY_NORMALIZER_REGISTRY))
        raise InputError(source, f"unknown modality '{modality}'; known: {known}")
    return name


def register_modality(name: str) -> Callable:
    """Decorator registering ``fn(array, settings)`` as the normaliser of modality ``name``."""

    def decorate(fn: Callable) -> Callable:
        def normalizer(array: np.ndarray, settings: IntensitySettings) -> np.ndarray:
            return fn(array, settings)

        normalizer.__name__, normalizer.__doc__ = name, fn.__doc__  # the registry keys on __name__
        INTENSITY_NORMALIZER_REGISTRY.register(normalizer)
        return fn

    return decorate


def _rescale(array: np.ndarray, low: float, high: float) -> np.ndarray:
    """Clip to [low, high] and map linearly onto [0, 255] (a constant image maps to 0)."""
    span = max(float(high) - float(low), 1e-6)
    out = (np.clip(array.astype(np.float32), low, high) - np.float32(low)) * np.float32(255.0 / span)
    return np.clip(out, 0.0, 255.0, out=out)  # float32 rounding can overshoot 255 by a few ulps


@register_modality("CT")
def normalize_ct(array: np.ndarray, settings: IntensitySettings) -> np.ndarray:
    """Clip Hounsfield units to ``settings.ct_window`` and rescale to [0, 255]."""
    low, high = settings.ct_window
    return _rescale(array, low, high)


@register_modality("MRI")
def normalize_mri(array: np.ndarray, settings: IntensitySettings) -> np.ndarray:
    """Clip to this volume's ``settings.mri_percentiles`` and rescale to [0, 255]."""
    low, high = np.percentile(array, settings.mri_percentiles)
    return _rescale(array, float(low), float(high))


def normalize_intensities(array: np.ndarray, modality: str, settings: IntensitySettings, source: str) -> np.ndarray:
    """Normalise one volume ``(z, y, x)`` to float32 in [0, 255] by its modality.

    Raises:
        InputError: naming ``source`` for NaN / infinite intensities or an unknown modality.
    """
    name = canonical_modality(modality, source)
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise InputError(source, f"contains {bad} NaN or infinite intensities")
    return INTENSITY_NORMALIZER_REGISTRY.get(name)(array, settings)


def to_uint8(normalized: np.ndarray) -> np.ndarray:
    """Round a [0, 255] float array to uint8."""
    return np.clip(np.rint(normalized), 0, 255).astype(np.uint8)
