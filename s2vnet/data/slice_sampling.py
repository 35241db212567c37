"""Choosing which slices of a volume form one training clip."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SliceSamplingSettings:
    """Config ``INPUT.VOLUME.{NUM_SLICES, SLICE_GAP, FOREGROUND_PROB, RANDOM_DIRECTION}``."""

    num_slices: int = 3
    gap: tuple[int, int] = (1, 3)
    foreground_prob: float = 0.8
    random_direction: bool = True

    @classmethod
    def from_cfg(cls, cfg) -> SliceSamplingSettings:
        vol = cfg.INPUT.VOLUME
        return cls(
            int(vol.NUM_SLICES), tuple(map(int, vol.SLICE_GAP)), float(vol.FOREGROUND_PROB), bool(vol.RANDOM_DIRECTION)
        )


def sample_slice_indices(rng: np.random.Generator, presence: np.ndarray, settings: SliceSamplingSettings) -> list[int]:
    """Pick ``num_slices`` slice indices of one volume, in decoding order.

    An anchor slice is drawn among slices with foreground (probability ``foreground_prob``, when the
    volume has any) or among all slices; the clip is ``num_slices`` slices ``gap`` apart
    (``gap ~ U{gap[0]..gap[1]}``, shrunk to fit the volume) placed at a random offset so that it
    contains the anchor and stays inside the volume. With ``random_direction`` the order is reversed
    half of the time. Volumes with fewer slices than the clip repeat their last slice.

    Args:
        rng: the generator all draws come from.
        presence: bool ``(z, K)``, class presence per slice (from the slice cache).
        settings: sampling settings.
    """
    depth, n = presence.shape[0], settings.num_slices
    foreground = np.flatnonzero(presence.any(axis=1))
    pool = foreground if len(foreground) and rng.random() < settings.foreground_prob else np.arange(depth)
    anchor = int(pool[rng.integers(len(pool))])
    gap = int(rng.integers(settings.gap[0], settings.gap[1] + 1))
    gap = max(0, min(gap, (depth - 1) // max(n - 1, 1)))
    span = gap * (n - 1)
    position = int(rng.integers(0, n)) if gap else 0  # which clip member is the anchor
    start = int(np.clip(anchor - position * gap, 0, max(depth - 1 - span, 0)))
    indices = [min(start + i * gap, depth - 1) for i in range(n)]
    if settings.random_direction and rng.random() < 0.5:
        indices.reverse()
    return indices
