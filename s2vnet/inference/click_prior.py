"""Click edits: the user's label decides, in the region of the model's embedding that a click marks.

Beyond the paper (``TEST.S2VNET.CLICK_PRIOR``, "none" in the paper configs). The decoder's answer to a click
can still be "not this class": a click centroid that the class head or the mask head does not carry gives
no voxel to the class the user named. A click edit makes the click's label hold around the click whatever
the decoder answers:

- the click's *region* is the set of mask-resolution cells whose pixel-decoder embedding (the features Eq. 7
  samples) has a cosine similarity of at least ``similarity`` with the clicked cell's embedding, within
  ``radius`` cells in-plane and ``slices`` slices of the click, and 6-connected to the clicked cell;
- a positive click of class k *claims* its region for k (k wins there, other classes lose it);
- a negative click of class k *forbids* k in its region (the next-best class or background takes it).

Edits accumulate over a session, a later click overriding an earlier one where regions overlap, and are
applied after each round's fusion, so the fusion rule (Eq. 9's max included) cannot take back what a click
decided.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from s2vnet.data.clicks import Click

__all__ = ["CLICK_PRIORS", "ClickEdits", "ClickPrior", "click_cell"]


def click_cell(click: Click, stride: int, grid: tuple[int, int, int]) -> tuple[int, int, int]:
    """The mask-resolution cell ``(z, y, x)`` of a ``working``-frame click on a ``(Z, h, w)`` grid."""
    z, y, x = click.position
    return (
        int(np.clip(round(z), 0, grid[0] - 1)),
        int(np.clip(y // stride, 0, grid[1] - 1)),
        int(np.clip(x // stride, 0, grid[2] - 1)),
    )


def _disc(shape: tuple[int, int, int], centre: tuple[int, int, int], radius: int) -> np.ndarray:
    """Boolean ``shape`` mask of the cells within ``radius`` cells in-plane of ``centre``, on every slice."""
    dy = (np.arange(shape[1]) - centre[1])[:, None]
    dx = (np.arange(shape[2]) - centre[2])[None, :]
    return np.broadcast_to(dy**2 + dx**2 <= radius**2, shape)


def feature_region(
    mask_features: torch.Tensor, cell: tuple[int, int, int], similarity: float, radius: int, slices: int
) -> tuple[slice, slice, slice, np.ndarray]:
    """The region a click at ``cell`` marks in ``mask_features (Z, D, h, w)``.

    Returns:
        ``(zs, ys, xs, mask)``: a box of the grid and the boolean region inside it, ``mask (len zs, len ys, len xs)``.
    """
    z, y, x = cell
    Z, _, h, w = mask_features.shape
    box = (
        slice(max(z - slices, 0), min(z + slices + 1, Z)),
        slice(max(y - radius, 0), min(y + radius + 1, h)),
        slice(max(x - radius, 0), min(x + radius + 1, w)),
    )
    feats = mask_features[box[0], :, box[1], box[2]].float()  # (z', D, y', x')
    feats = torch.nn.functional.normalize(feats, dim=1)
    centre = (z - box[0].start, y - box[1].start, x - box[2].start)
    proto = feats[centre[0], :, centre[1], centre[2]]
    sim = torch.einsum("zdyx,d->zyx", feats, proto).cpu().numpy()
    candidates = (sim >= similarity) & _disc(sim.shape, centre, radius)
    candidates[centre] = True
    components, _ = ndimage.label(candidates)
    return box[0], box[1], box[2], components == components[centre]


@dataclass
class ClickEdits:
    """What clicks decided so far, per class and mask-resolution cell: ``claim``/``forbid (K, Z, h, w)`` bool."""

    claim: torch.Tensor
    forbid: torch.Tensor

    @classmethod
    def empty(cls, scores: torch.Tensor) -> ClickEdits:
        """No edits, for scores ``(K, Z, h, w)``."""
        none = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
        return cls(none, none.clone())

    def add(self, k: int, box: tuple[slice, slice, slice], region: np.ndarray, positive: bool) -> None:
        """Record one click's ``region`` (inside ``box``) for class ``k``; it overrides earlier edits there."""
        mask = torch.from_numpy(region).to(self.claim.device)
        claim, forbid = self.claim[(slice(None),) + box], self.forbid[(slice(None),) + box]
        if positive:
            claim[:, mask] = False
            claim[k][mask] = True
            forbid[k][mask] = False
        else:
            forbid[k][mask] = True
            claim[k][mask] = False

    def apply(self, scores: torch.Tensor) -> torch.Tensor:
        """Scores ``(K, Z, h, w)`` with the edits: forbidden cells score 0, a claimed cell is 1 for its class only."""
        out = scores.masked_fill(self.forbid, 0.0)
        return torch.where(self.claim.any(dim=0, keepdim=True), self.claim.to(out.dtype), out)


@dataclass(frozen=True)
class ClickPrior:
    """Turns clicks into :class:`ClickEdits` (``TEST.S2VNET.CLICK_PRIOR*``)."""

    region: Callable | None = None  # an entry of CLICK_PRIORS; None: clicks edit nothing
    similarity: float = 0.8
    radius: int = 6
    slices: int = 2

    @classmethod
    def from_cfg(cls, cfg) -> ClickPrior:
        test = cfg.TEST.S2VNET
        if test.CLICK_PRIOR not in CLICK_PRIORS:
            raise ValueError(f"unknown TEST.S2VNET.CLICK_PRIOR '{test.CLICK_PRIOR}'; known: {', '.join(CLICK_PRIORS)}")
        return cls(
            CLICK_PRIORS[test.CLICK_PRIOR],
            test.CLICK_PRIOR_SIMILARITY,
            test.CLICK_PRIOR_RADIUS,
            test.CLICK_PRIOR_SLICES,
        )

    def update(
        self,
        edits: ClickEdits | None,
        mask_features: torch.Tensor,
        scores: torch.Tensor,
        clicks: Sequence[Click],
        stride: int,
    ) -> ClickEdits | None:
        """A copy of ``edits`` with ``clicks`` (``working`` frame, in order) added; None when this prior edits nothing.

        ``edits`` itself is left as it was, so an earlier interaction state (undo) keeps its own edits.

        Args:
            mask_features: ``(Z, D, h, w)`` embeddings; scores: ``(K, Z, h, w)`` (for the edits' shape).
        """
        if self.region is None:
            return edits
        edits = ClickEdits(edits.claim.clone(), edits.forbid.clone()) if edits is not None else ClickEdits.empty(scores)
        grid = tuple(mask_features.shape[:1]) + tuple(mask_features.shape[2:])
        for click in clicks:
            cell = click_cell(click, stride, grid)
            *box, region = self.region(mask_features, cell, self.similarity, self.radius, self.slices)
            edits.add(click.class_index, tuple(box), region, click.positive)
        return edits


# TEST.S2VNET.CLICK_PRIOR -> fn(mask_features (Z, D, h, w), cell (z, y, x), similarity, radius, slices)
# -> (zs, ys, xs, region bool); None: clicks act only through the decoder (paper).
CLICK_PRIORS: dict[str, Callable | None] = {"none": None, "feature": feature_region}
