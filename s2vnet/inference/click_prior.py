"""Click edits: the user's label decides, in the region of the scan that a click marks.

Beyond the paper (``TEST.S2VNET.CLICK_PRIOR``, "none" in the paper configs). The decoder's answer to a click
can still be "not this class": a click centroid that the class head or the mask head does not carry gives
no voxel to the class the user named. A click edit makes the click's label hold near the click whatever
the decoder answers.

Each click becomes a *seed* with a *region* on the working grid: the voxels within ``radius`` pixels in-plane
and ``slices`` slices of the click whose pixel-decoder embedding (the features Eq. 7 samples, bilinearly
upsampled from mask resolution) has a cosine similarity of at least ``similarity`` with the clicked voxel's,
whose intensity differs from the clicked voxel's by at most ``intensity`` (0: no intensity test), and which are
6-connected to the click. Inside the regions, per class, the nearest seed of that class decides (Voronoi
between a class's positive and negative clicks, so a negative click next to a positive one removes only what
is closer to it): a positive seed *claims* the voxel for its class, a negative seed *forbids* its class there.
Where several classes claim a voxel, the nearest seed wins. Edits are applied to the full-resolution scores
when labels are made, after the rounds' fusion, so the fusion rule (Eq. 9's max included) cannot take back
what a click decided; the fused scores themselves stay the decoder's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from s2vnet.data.clicks import Click

__all__ = ["CLICK_PRIORS", "ClickEdits", "ClickPrior", "Seed", "feature_seed", "seed_agreement"]


@dataclass(frozen=True)
class Seed:
    """One click's edit: ``distance (bz, by, bx)`` float32 from the click inside ``box`` (inf outside its region)."""

    class_index: int
    positive: bool
    box: tuple[slice, slice, slice]
    distance: np.ndarray
    centre: tuple[int, int, int]  # the clicked voxel (z, y, x) on the working grid


def _box(centre: Sequence[int], shape: Sequence[int], half: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(max(c - h, 0), min(c + h + 1, n)) for c, n, h in zip(centre, shape, half))


def _similarity(mask_features: torch.Tensor, box: tuple[slice, ...], centre: tuple[int, int, int], stride: int):
    """Cosine similarity ``(bz, by, bx)`` of the upsampled embedding with the embedding at ``centre`` (global)."""
    zs, ys, xs = box
    h, w = mask_features.shape[-2:]
    cy0, cx0 = max(ys.start // stride - 1, 0), max(xs.start // stride - 1, 0)
    cy1, cx1 = min((ys.stop - 1) // stride + 2, h), min((xs.stop - 1) // stride + 2, w)
    cells = F.normalize(mask_features[zs, :, cy0:cy1, cx0:cx1].float(), dim=1)  # (bz, D, cy, cx)
    up = F.interpolate(cells, scale_factor=stride, mode="bilinear", align_corners=False)
    up = F.normalize(up, dim=1)
    y0, x0 = ys.start - cy0 * stride, xs.start - cx0 * stride
    up = up[:, :, y0 : y0 + ys.stop - ys.start, x0 : x0 + xs.stop - xs.start]
    proto = up[centre[0] - zs.start, :, centre[1] - ys.start, centre[2] - xs.start]
    return torch.einsum("zdyx,d->zyx", up, proto).cpu().numpy()


def feature_seed(click: Click, features, stride: int, prior: ClickPrior) -> Seed:
    """The seed of a ``working``-frame click on encoded ``features`` (:class:`VolumeFeatures` with ``image``)."""
    shape = features.image.shape
    centre = tuple(int(np.clip(round(p), 0, n - 1)) for p, n in zip(click.position, shape))
    box = _box(centre, shape, (prior.slices, prior.radius, prior.radius))
    local = tuple(c - b.start for c, b in zip(centre, box))
    sim = _similarity(features.mask_features, box, centre, stride)
    grid = np.meshgrid(*(np.arange(b.stop - b.start) - c for b, c in zip(box, local)), indexing="ij")
    distance = np.sqrt(sum(g.astype(np.float32) ** 2 for g in grid))
    candidates = (sim >= prior.similarity) & (np.hypot(grid[1], grid[2]) <= prior.radius)
    if prior.intensity > 0:
        image = features.image[box].astype(np.int16)
        candidates &= np.abs(image - image[local]) <= prior.intensity
    candidates[local] = True
    components, _ = ndimage.label(candidates)
    region = components == components[local]
    distance = np.where(region, distance, np.inf).astype(np.float32)
    return Seed(click.class_index, click.positive, box, distance, centre)


def _edit_box(scores: torch.Tensor, dist: np.ndarray, positive: np.ndarray) -> torch.Tensor:
    """Scores ``(K, h, w)`` of a box with its edits: per class, the nearest seed's distance ``dist`` (inf: none) and
    whether that seed is positive; a negative seed zeroes its class, the nearest positive claim takes the pixel."""
    decided = np.isfinite(dist)
    claim_dist = np.where(decided & positive, dist, np.inf)
    claimed = np.isfinite(claim_dist.min(axis=0))
    winner = np.eye(scores.shape[0], dtype=bool)[claim_dist.argmin(axis=0)].transpose(2, 0, 1)  # (K, h, w)
    device = scores.device
    out = scores.masked_fill(torch.from_numpy(decided & ~positive).to(device), 0.0)
    claims = torch.from_numpy(claimed[None] & winner).to(device)
    return torch.where(torch.from_numpy(claimed).to(device)[None], claims.to(out.dtype), out)


@dataclass(frozen=True)
class ClickEdits:
    """The seeds of every click so far (oldest first); immutable, so an earlier state (undo) keeps its own."""

    seeds: tuple[Seed, ...] = ()

    def apply(self, scores: torch.Tensor, z: int) -> torch.Tensor:
        """Full-resolution scores ``(K, H, W)`` of working slice ``z`` with the edits (see the module docstring)."""
        here = [s for s in self.seeds if s.box[0].start <= z < s.box[0].stop]
        if not here:
            return scores
        # every edit lies inside the seeds' boxes: work on their bounding box, leave the rest of the slice as it is
        y0, y1 = min(s.box[1].start for s in here), max(s.box[1].stop for s in here)
        x0, x1 = min(s.box[2].start for s in here), max(s.box[2].stop for s in here)
        shape = (scores.shape[0], y1 - y0, x1 - x0)
        dist = np.full(shape, np.inf, np.float32)
        positive = np.zeros(shape, bool)
        for seed in here:  # later seeds win ties
            _, ys, xs = seed.box
            ys, xs = slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0)
            d, current = seed.distance[z - seed.box[0].start], dist[seed.class_index, ys, xs]
            better = d <= current
            dist[seed.class_index, ys, xs] = np.where(better, d, current)
            positive[seed.class_index, ys, xs] = np.where(better, seed.positive, positive[seed.class_index, ys, xs])
        out = scores.clone()
        out[:, y0:y1, x0:x1] = _edit_box(scores[:, y0:y1, x0:x1], dist, positive)
        return out


@dataclass(frozen=True)
class ClickPrior:
    """Turns clicks into :class:`ClickEdits` (``TEST.S2VNET.CLICK_PRIOR*``)."""

    seed: Callable | None = None  # an entry of CLICK_PRIORS; None: clicks edit nothing
    similarity: float = 0.8
    radius: int = 12
    slices: int = 2
    intensity: int = 0
    agreement: float = 0.0

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
            test.CLICK_PRIOR_INTENSITY,
            test.CLICK_PRIOR_AGREEMENT,
        )

    def update(self, edits: ClickEdits | None, features, clicks: Sequence[Click], stride: int) -> ClickEdits | None:
        """``edits`` plus the seeds of ``clicks`` (``working`` frame, in order); None when this prior edits nothing.

        Args:
            features: the volume's :class:`VolumeFeatures` (``mask_features (Z, D, h, w)`` and ``image (Z, Y, X)``).
            stride: the mask features' stride on the working grid.
        """
        if self.seed is None:
            return edits
        new = tuple(self.seed(click, features, stride, self) for click in clicks)
        return ClickEdits((edits.seeds if edits is not None else ()) + new)


def seed_agreement(seed: Seed, foreground: np.ndarray) -> float:
    """IoU, on the seed's own (clicked) slice and inside its box, of its region and a class mask ``(Y, X)`` bool."""
    zs, ys, xs = seed.box
    region = np.isfinite(seed.distance[seed.centre[0] - zs.start])
    mask = foreground[ys, xs]
    union = (region | mask).sum()
    return float((region & mask).sum() / union) if union else 0.0


# TEST.S2VNET.CLICK_PRIOR -> fn(click, features, stride, prior) -> Seed; None: clicks act only through the decoder.
CLICK_PRIORS: dict[str, Callable | None] = {"none": None, "feature": feature_seed}
