"""Simulated clicks for interactive training, drawn from a passed ``np.random.Generator``.

A click is a pixel ``(y, x)`` on one slice, positive (inside the object) or negative (outside it,
near it). Per interactive class: one positive click "near the interior" (among the pixels whose
distance to the object's border is at least ``interior_fraction`` of the largest such distance),
then up to ``max_extra`` more clicks, each negative with probability ``negative_prob``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class ClickSettings:
    """Config ``INPUT.VOLUME.CLICKS.*``."""

    interactive_prob: float = 0.5
    interior_fraction: float = 0.5
    max_extra: int = 2
    negative_prob: float = 0.5
    negative_band: int = 10
    error_prob: float = 0.0
    error_max_rounds: int = 3

    @classmethod
    def from_cfg(cls, cfg) -> ClickSettings:
        c = cfg.INPUT.VOLUME.CLICKS
        return cls(
            float(c.INTERACTIVE_PROB),
            float(c.INTERIOR_FRACTION),
            int(c.MAX_EXTRA),
            float(c.NEGATIVE_PROB),
            int(c.NEGATIVE_BAND),
            float(c.ERROR_PROB),
            int(c.ERROR_MAX_ROUNDS),
        )

    def error_rounds(self, rng: np.random.Generator) -> int:
        """Error-driven rounds for one clip: 0 with probability ``1 - error_prob``, else uniform in 0..max."""
        if self.error_prob <= 0 or rng.random() >= self.error_prob:
            return 0
        return int(rng.integers(0, self.error_max_rounds + 1))


def border_distance(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance (pixels) of each object pixel to the nearest non-object pixel; 0 outside.

    The slice border counts as outside, so an object cut by the crop is centred on its visible part.
    """
    padded = np.pad(mask.astype(bool), 1)
    return ndimage.distance_transform_edt(padded)[1:-1, 1:-1]


def _pick(rng: np.random.Generator, candidates: np.ndarray) -> tuple[int, int]:
    y, x = candidates[int(rng.integers(len(candidates)))]
    return int(y), int(x)


def interior_click(mask: np.ndarray, rng: np.random.Generator, interior_fraction: float) -> tuple[int, int]:
    """A positive click ``(y, x)`` near the interior of a non-empty bool mask ``(H, W)``."""
    dist = border_distance(mask)
    return _pick(rng, np.argwhere(dist >= max(interior_fraction * dist.max(), 1.0)))


def negative_click(mask: np.ndarray, valid: np.ndarray, rng: np.random.Generator, band: int) -> tuple[int, int] | None:
    """A click outside ``mask`` within ``band`` pixels of it and inside ``valid``; None if there is none."""
    near = ndimage.distance_transform_edt(~mask.astype(bool)) <= band
    candidates = np.argwhere(near & ~mask & valid)
    return _pick(rng, candidates) if len(candidates) else None


def simulate_clicks(
    mask: np.ndarray, valid: np.ndarray, rng: np.random.Generator, settings: ClickSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Clicks for one object on one slice.

    Args:
        mask: bool ``(H, W)``, the object (must be non-empty).
        valid: bool ``(H, W)``, pixels that belong to the image (not padding).
        rng: the generator all draws come from.
        settings: click settings.

    Returns:
        ``coords`` float32 ``(N, 2)`` as ``(y, x)`` pixel indices and ``positive`` bool ``(N,)``, N >= 1.
    """
    clicks = [(interior_click(mask, rng, settings.interior_fraction), True)]
    inside = np.argwhere(mask)
    for _ in range(int(rng.integers(0, settings.max_extra + 1))):
        if rng.random() < settings.negative_prob:
            point = negative_click(mask, valid, rng, settings.negative_band)
            if point is not None:
                clicks.append((point, False))
        else:
            clicks.append((_pick(rng, inside), True))
    coords = np.array([c[0] for c in clicks], dtype=np.float32).reshape(-1, 2)
    return coords, np.array([c[1] for c in clicks], dtype=bool)
