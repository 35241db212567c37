"""``SetCriterion``: S2VNet's per-slice training losses (Mask2Former-style set prediction losses).

For every supervised decoder layer (the final one, plus each earlier one when deep supervision is
on) the queries are matched to the slice's targets by :class:`HungarianMatcher` (each layer
separately, all with the same forced click pairs), and then:

* ``loss_ce``: cross-entropy over the K+1 classes for all queries; unmatched queries (including
  queries forced to target -1) are trained towards no-object (class K), which is weighted
  ``no_object_weight`` inside the cross-entropy;
* ``loss_mask`` / ``loss_dice``: sigmoid BCE / dice between each matched predicted mask
  (``pred_masks``) and its target mask, at points drawn by uncertainty importance sampling on the
  prediction and read from the target at its own (input) resolution;
* ``loss_kmeans_mask`` / ``loss_kmeans_dice``: the same on the layer's k-means cross-attention
  logits (``kmeans_logits``, coarser resolution), with their own importance-sampled points.

Mask losses are summed over matched masks and divided by the number of matched masks in the batch
(at least 1; counted on this process only, not all-reduced across ranks). Every returned loss is
already multiplied by its weight, so the trainer just sums the values. Losses of earlier layer ``i``
(0 = earliest, in ``outputs["aux_outputs"]`` order) get the suffix ``_i`` (``loss_ce_0`` ...).
All loss math runs in fp32, with autocast disabled.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from torch import nn

from s2vnet.modeling.matcher import HungarianMatcher, Indices, fp32_region
from s2vnet.modeling.point_sampling import point_sample, uncertain_point_coords

__all__ = ["SetCriterion", "sigmoid_bce_loss", "dice_loss"]


def sigmoid_bce_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-mask mean sigmoid binary cross-entropy.

    Args:
        logits: (R, P) mask logits at P points.
        targets: (R, P) target values in [0, 1].

    Returns:
        (R,) losses.
    """
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(dim=1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-mask dice loss ``1 - (2 |p t| + 1) / (|p| + |t| + 1)`` with ``p = sigmoid(logits)``.

    Args:
        logits: (R, P) mask logits at P points.
        targets: (R, P) target values in [0, 1].

    Returns:
        (R,) losses in [0, 1].
    """
    probs = logits.sigmoid()
    overlap = 2.0 * (probs * targets).sum(dim=1)
    total = probs.sum(dim=1) + targets.sum(dim=1)
    return 1.0 - (overlap + 1.0) / (total + 1.0)


def _matched_positions(indices: Sequence[Indices], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch_idx, query_idx), each int64 (R,) on ``device``, of all matched queries in batch order."""
    batch = [torch.full_like(q, b) for b, (q, _) in enumerate(indices)]
    queries = [q for q, _ in indices]
    if not queries:
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        return empty, empty
    return torch.cat(batch).to(device), torch.cat(queries).to(device)


def _target_points(targets: Sequence[dict], indices: Sequence[Indices], coords: torch.Tensor) -> torch.Tensor:
    """Matched target masks read at ``coords`` (R, P, 2), each at its image's resolution -> (R, P) fp32."""
    rows, start = [], 0
    for target, (_, tgt_idx) in zip(targets, indices):
        count = tgt_idx.numel()
        if count == 0:
            continue
        masks = target["masks"].to(coords.device)[tgt_idx.to(coords.device)].float().unsqueeze(1)  # (n, 1, H, W)
        rows.append(point_sample(masks, coords[start : start + count])[:, 0])
        start += count
    return torch.cat(rows)


class SetCriterion(nn.Module):
    """Class, mask and k-means-logit losses of S2VNet's decoder outputs for one slice batch."""

    @configurable
    def __init__(
        self,
        *,
        num_classes: int,
        matcher: HungarianMatcher,
        class_weight: float,
        mask_weight: float,
        dice_weight: float,
        no_object_weight: float,
        kmeans_logit_weight: float,
        deep_supervision: bool,
        num_points: int,
        oversample_ratio: float,
        importance_sample_ratio: float,
    ) -> None:
        """
        Args:
            num_classes: K foreground classes; logits have K+1 entries, index K = no-object.
            matcher: assigns queries to targets (see :class:`HungarianMatcher`).
            class_weight: multiplies ``loss_ce``.
            mask_weight: multiplies ``loss_mask`` (and, times ``kmeans_logit_weight``, ``loss_kmeans_mask``).
            dice_weight: multiplies ``loss_dice`` (and, times ``kmeans_logit_weight``, ``loss_kmeans_dice``).
            no_object_weight: cross-entropy weight of the no-object class (the others weigh 1).
            kmeans_logit_weight: extra factor of the k-means-logit mask losses.
            deep_supervision: also supervise every layer in ``outputs["aux_outputs"]``.
            num_points: points per mask for the mask losses.
            oversample_ratio: candidate points per kept point of the importance sampling (>= 1).
            importance_sample_ratio: fraction of the points taken at the most uncertain candidates.
        """
        super().__init__()
        if num_classes <= 0:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        self.num_classes = int(num_classes)
        self.matcher = matcher
        self.class_weight = float(class_weight)
        self.mask_weight = float(mask_weight)
        self.dice_weight = float(dice_weight)
        self.kmeans_logit_weight = float(kmeans_logit_weight)
        self.deep_supervision = bool(deep_supervision)
        self.num_points = int(num_points)
        self.oversample_ratio = float(oversample_ratio)
        self.importance_sample_ratio = float(importance_sample_ratio)
        class_loss_weight = torch.ones(self.num_classes + 1)
        class_loss_weight[-1] = float(no_object_weight)
        self.register_buffer("class_loss_weight", class_loss_weight, persistent=False)

    @classmethod
    def from_config(cls, cfg) -> dict:
        s2v = cfg.MODEL.S2VNET
        return {
            "num_classes": s2v.NUM_CLASSES,
            "matcher": HungarianMatcher(cfg),
            "class_weight": s2v.CLASS_WEIGHT,
            "mask_weight": s2v.MASK_WEIGHT,
            "dice_weight": s2v.DICE_WEIGHT,
            "no_object_weight": s2v.NO_OBJECT_WEIGHT,
            "kmeans_logit_weight": s2v.KMEANS_LOGIT_WEIGHT,
            "deep_supervision": s2v.DEEP_SUPERVISION,
            "num_points": s2v.TRAIN_NUM_POINTS,
            "oversample_ratio": s2v.OVERSAMPLE_RATIO,
            "importance_sample_ratio": s2v.IMPORTANCE_SAMPLE_RATIO,
        }

    def forward(
        self,
        outputs: dict,
        targets: Sequence[dict],
        forced: Sequence[torch.Tensor | None] | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[dict[str, torch.Tensor], list[Indices]]:
        """Weighted losses of all supervised layers.

        Args:
            outputs: ``"pred_logits"`` (B, N, K+1), ``"pred_masks"`` (B, N, h, w), optionally
                ``"kmeans_logits"`` (B, N, h_l, w_l) and ``"aux_outputs"`` (list of dicts with the same keys,
                earliest layer first). A layer without ``"kmeans_logits"`` (or with None) gets no k-means losses.
            targets: B dicts with ``"labels"`` int64 (M,) in [0, K) and ``"masks"`` (M, H, W) bool/float.
            forced: None, or B int64 (F, 2) tensors (or None) of forced (query_index, target_index) pairs,
                target -1 = unmatched; used for every layer (see :mod:`s2vnet.modeling.matcher`).
            generator: source of all random points (matcher and losses); None = torch's default generator.

        Returns:
            ``(losses, indices)``: scalar fp32 losses already multiplied by their weights, keyed
            ``loss_ce``, ``loss_mask``, ``loss_dice``, ``loss_kmeans_mask``, ``loss_kmeans_dice`` (+ ``_i``
            for earlier layer i); and the final layer's matching, B CPU int64 ``(query_idx, target_idx)``.
        """
        layers = [("", outputs)]
        if self.deep_supervision:
            layers += [(f"_{i}", aux) for i, aux in enumerate(outputs.get("aux_outputs") or [])]
        losses: dict[str, torch.Tensor] = {}
        final_indices: list[Indices] = []
        with fp32_region(outputs["pred_logits"].device):
            for suffix, layer in layers:
                indices = self.matcher(layer, targets, forced, generator)
                if not suffix:
                    final_indices = indices
                for name, value in self.layer_losses(layer, targets, indices, generator).items():
                    losses[name + suffix] = value
        return losses, final_indices

    def layer_losses(
        self, layer: dict, targets: Sequence[dict], indices: Sequence[Indices], generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Weighted losses of one layer's outputs under a given matching (keys without suffix)."""
        num_masks = max(sum(int(q.numel()) for q, _ in indices), 1)
        losses = {"loss_ce": self.class_weight * self.class_loss(layer["pred_logits"], targets, indices)}
        bce, dice = self.mask_losses(layer["pred_masks"], targets, indices, num_masks, generator)
        losses["loss_mask"] = self.mask_weight * bce
        losses["loss_dice"] = self.dice_weight * dice
        if layer.get("kmeans_logits") is not None:
            bce, dice = self.mask_losses(layer["kmeans_logits"], targets, indices, num_masks, generator)
            losses["loss_kmeans_mask"] = self.kmeans_logit_weight * self.mask_weight * bce
            losses["loss_kmeans_dice"] = self.kmeans_logit_weight * self.dice_weight * dice
        return losses

    def class_loss(
        self, pred_logits: torch.Tensor, targets: Sequence[dict], indices: Sequence[Indices]
    ) -> torch.Tensor:
        """Unweighted cross-entropy of all queries (unmatched -> no-object), fp32 scalar.

        Args:
            pred_logits: (B, N, K+1) class logits.
        """
        if pred_logits.shape[-1] != self.num_classes + 1:
            raise ValueError(
                f"pred_logits has {pred_logits.shape[-1]} classes, expected num_classes + 1 = {self.num_classes + 1}"
            )
        logits = pred_logits.float()
        classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device)
        for b, (query_idx, target_idx) in enumerate(indices):
            labels = targets[b]["labels"].to(logits.device)
            classes[b, query_idx.to(logits.device)] = labels[target_idx.to(logits.device)]
        weight = self.class_loss_weight.to(logits.device, torch.float32)
        return F.cross_entropy(logits.transpose(1, 2), classes, weight=weight)

    def mask_losses(
        self,
        pred_masks: torch.Tensor,
        targets: Sequence[dict],
        indices: Sequence[Indices],
        num_masks: int,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Unweighted (BCE, dice) of the matched masks at importance-sampled points, each / ``num_masks``.

        Args:
            pred_masks: (B, N, h, w) mask logits at any resolution.

        Returns:
            Two fp32 scalars; exactly 0 (still connected to ``pred_masks``) when nothing is matched.
        """
        batch_idx, query_idx = _matched_positions(indices, pred_masks.device)
        if batch_idx.numel() == 0:
            zero = pred_masks.float().sum() * 0.0
            return zero, zero
        logits = pred_masks[batch_idx, query_idx].float().unsqueeze(1)  # (R, 1, h, w)
        coords = uncertain_point_coords(
            logits, self.num_points, self.oversample_ratio, self.importance_sample_ratio, generator
        )  # (R, P, 2)
        with torch.no_grad():
            point_targets = _target_points(targets, indices, coords)  # (R, P)
        point_logits = point_sample(logits, coords)[:, 0]  # (R, P)
        bce = sigmoid_bce_loss(point_logits, point_targets).sum() / num_masks
        dice = dice_loss(point_logits, point_targets).sum() / num_masks
        return bce, dice

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, class_weight={self.class_weight}, mask_weight={self.mask_weight}, "
            f"dice_weight={self.dice_weight}, no_object_weight={float(self.class_loss_weight[-1])}, "
            f"kmeans_logit_weight={self.kmeans_logit_weight}, deep_supervision={self.deep_supervision}, "
            f"num_points={self.num_points}"
        )
