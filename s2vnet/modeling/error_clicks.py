"""Error-driven click simulation for training: clicks that answer the model's own mistakes.

Training clips are short stacks of slices (not contiguous in z), so errors are found per slice: for one
class, the error of a slice is where the prediction and the ground truth disagree about the class
(padding excluded). The largest 8-connected error region over the clip's slices is clicked at the
maximum of its distance transform (the slice border counts as outside), positive when the ground truth
there is the class (a miss) and negative otherwise (an extra). Ties go to the first in raster order of
the earliest slice, so the placement is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage

__all__ = ["largest_error_click", "with_click"]

_EIGHT = np.ones((3, 3), dtype=bool)


def _largest_region(error: np.ndarray) -> tuple[int, np.ndarray] | None:
    """The largest 8-connected region of a bool ``(H, W)`` mask and its size; None when empty."""
    labels, count = ndimage.label(error, structure=_EIGHT)
    if count == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    best = int(sizes.argmax())
    return int(sizes[best]), labels == best + 1


def largest_error_click(
    pred: Sequence[np.ndarray], gt: Sequence[np.ndarray], class_index: int, ignore: int = 255
) -> tuple[int, int, int, bool] | None:
    """Where a user would click to correct class ``class_index`` on a clip.

    Args:
        pred: per slice, integer labels ``(H, W)`` (0 = background, c + 1 = class c).
        gt: per slice, ground-truth labels ``(H, W)`` of the same shapes; ``ignore`` marks padding.
        class_index: the class c (0-based).

    Returns:
        ``(t, y, x, positive)``: slice index in the clip, pixel, and whether the ground truth there is the class;
        None when the clip has no error for the class.
    """
    best: tuple[int, int, np.ndarray] | None = None
    for t, (p, g) in enumerate(zip(pred, gt)):
        error = ((np.asarray(p) == class_index + 1) != (np.asarray(g) == class_index + 1)) & (np.asarray(g) != ignore)
        found = _largest_region(error)
        if found is not None and (best is None or found[0] > best[0]):
            best = (found[0], t, found[1])
    if best is None:
        return None
    _, t, region = best
    distance = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(distance.argmax()), distance.shape)
    return t, int(y), int(x), bool(np.asarray(gt[t])[y, x] == class_index + 1)


def with_click(clicks: dict | None, yx: tuple[int, int], class_index: int, positive: bool) -> dict:
    """A slice's click tensors with one more click (a new dict; ``clicks`` may be None)."""
    if clicks is None:
        clicks = {
            "coords": torch.zeros((0, 2)),
            "classes": torch.zeros(0, dtype=torch.long),
            "positive": torch.zeros(0, dtype=torch.bool),
        }
    coords = clicks["coords"]
    return {
        "coords": torch.cat([coords, torch.tensor([yx], dtype=coords.dtype, device=coords.device)]),
        "classes": torch.cat([clicks["classes"], clicks["classes"].new_tensor([class_index])]),
        "positive": torch.cat([clicks["positive"], clicks["positive"].new_tensor([positive])]),
    }
