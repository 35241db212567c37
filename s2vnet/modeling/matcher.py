"""``HungarianMatcher``: one-to-one assignment of decoder queries (centroids) to a slice's targets.

Some queries are initialised from user clicks of a known class; their assignment is given
(*forced*) rather than searched. Per batch element ``forced`` is an int64 ``(F, 2)`` tensor of
``(query_index, target_index)`` pairs:

* ``target_index >= 0``: the pair is a match, whatever the costs say;
* ``target_index == -1``: the query's class is absent on this slice; the query stays unmatched
  (it is trained towards no-object).

Either way a forced query is left out of the Hungarian search, and so is every target that a forced
pair already takes. The Hungarian search (``scipy.optimize.linear_sum_assignment``) then assigns the
remaining queries to the remaining targets; with fewer free queries than free targets, some targets
stay unmatched.

Cost of query ``q`` for target ``t`` (all under ``torch.no_grad`` in fp32)::

    - cost_class * softmax(pred_logits[q])[label_t]
    + cost_mask  * mean sigmoid-BCE(pred_mask[q], mask_t) over P shared uniform points
    + cost_dice  * dice cost(pred_mask[q], mask_t) over the same points
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from scipy.optimize import linear_sum_assignment
from torch import nn

from s2vnet.modeling.point_sampling import point_sample, uniform_point_coords

__all__ = [
    "HungarianMatcher",
    "pairwise_sigmoid_bce_cost",
    "pairwise_dice_cost",
    "normalize_forced",
    "fp32_region",
]

# Stand-in for non-finite costs (NaN/inf predictions), which linear_sum_assignment rejects.
_LARGE_COST = 1e8

Indices = tuple[torch.Tensor, torch.Tensor]


def fp32_region(device: torch.device) -> contextlib.AbstractContextManager:
    """A context with autocast disabled on ``device``'s type, so the math inside runs in the dtypes given."""
    device_type = torch.device(device).type
    if device_type not in ("cuda", "cpu", "xpu", "mps", "hpu"):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, enabled=False)


def pairwise_sigmoid_bce_cost(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean sigmoid binary cross-entropy of every prediction against every target.

    Args:
        logits: (Q, P) mask logits at P points.
        targets: (T, P) target values in [0, 1] at the same points.

    Returns:
        (Q, T) costs.
    """
    num_points = logits.shape[1]
    loss_if_one = F.softplus(-logits)  # -log sigmoid(x)
    loss_if_zero = F.softplus(logits)  # -log (1 - sigmoid(x))
    cost = loss_if_one @ targets.T + loss_if_zero @ (1.0 - targets).T
    return cost / max(num_points, 1)


def pairwise_dice_cost(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Dice cost ``1 - (2 |p t| + 1) / (|p| + |t| + 1)`` of every prediction against every target.

    Args:
        logits: (Q, P) mask logits at P points.
        targets: (T, P) target values in [0, 1] at the same points.

    Returns:
        (Q, T) costs in [0, 1].
    """
    probs = logits.sigmoid()
    overlap = 2.0 * (probs @ targets.T)
    total = probs.sum(dim=1, keepdim=True) + targets.sum(dim=1).unsqueeze(0)
    return 1.0 - (overlap + 1.0) / (total + 1.0)


def normalize_forced(forced: torch.Tensor | None, num_queries: int, num_targets: int) -> torch.Tensor:
    """Check one batch element's forced pairs and return them as a CPU int64 (F, 2) tensor.

    Raises:
        ValueError: wrong shape, a query index outside [0, N), a target index outside [-1, M),
            a query forced twice or a target forced to two queries.
    """
    if forced is None:
        return torch.zeros((0, 2), dtype=torch.int64)
    pairs = torch.as_tensor(forced).detach().to("cpu", torch.int64)
    if pairs.numel() == 0:
        return torch.zeros((0, 2), dtype=torch.int64)
    if pairs.dim() != 2 or pairs.shape[1] != 2:
        raise ValueError(f"forced pairs must be (F, 2) (query_index, target_index), got {tuple(pairs.shape)}")
    queries, tgts = pairs[:, 0], pairs[:, 1]
    if (queries < 0).any() or (queries >= num_queries).any():
        raise ValueError(f"forced query index outside [0, {num_queries}): {queries.tolist()}")
    if (tgts < -1).any() or (tgts >= num_targets).any():
        raise ValueError(f"forced target index outside [-1, {num_targets}): {tgts.tolist()}")
    if queries.unique().numel() != queries.numel():
        raise ValueError(f"a query is forced more than once: {queries.tolist()}")
    taken = tgts[tgts >= 0]
    if taken.unique().numel() != taken.numel():
        raise ValueError(f"a target is forced to more than one query: {tgts.tolist()}")
    return pairs


def _forced_per_image(forced: Sequence[torch.Tensor | None] | None, batch_size: int) -> list:
    """``forced`` as one entry (possibly None) per batch element."""
    if forced is None:
        return [None] * batch_size
    if len(forced) != batch_size:
        raise ValueError(f"forced has {len(forced)} entries for a batch of {batch_size}")
    return list(forced)


def _free_indices(count: int, taken: torch.Tensor) -> torch.Tensor:
    """Indices in [0, count) not in ``taken``, as a CPU int64 (count - |taken|,) tensor."""
    free = torch.ones(count, dtype=torch.bool)
    free[taken] = False
    return free.nonzero().squeeze(1)


class HungarianMatcher(nn.Module):
    """Bipartite matching of queries to targets with forced (click-initialised) pairs; no parameters."""

    @configurable
    def __init__(
        self, *, cost_class: float = 1.0, cost_mask: float = 1.0, cost_dice: float = 1.0, num_points: int = 12544
    ) -> None:
        """
        Args:
            cost_class: weight of the (negative) class probability.
            cost_mask: weight of the point-sampled sigmoid BCE.
            cost_dice: weight of the point-sampled dice cost.
            num_points: P, uniformly random points shared by all predictions and targets of an image.
        """
        super().__init__()
        if num_points <= 0:
            raise ValueError(f"num_points must be positive, got {num_points}")
        self.cost_class = float(cost_class)
        self.cost_mask = float(cost_mask)
        self.cost_dice = float(cost_dice)
        self.num_points = int(num_points)

    @classmethod
    def from_config(cls, cfg) -> dict:
        s2v = cfg.MODEL.S2VNET
        return {
            "cost_class": s2v.CLASS_WEIGHT,
            "cost_mask": s2v.MASK_WEIGHT,
            "cost_dice": s2v.DICE_WEIGHT,
            "num_points": s2v.TRAIN_NUM_POINTS,
        }

    @torch.no_grad()
    def forward(
        self,
        outputs: dict,
        targets: Sequence[dict],
        forced: Sequence[torch.Tensor | None] | None = None,
        generator: torch.Generator | None = None,
    ) -> list[Indices]:
        """Match every batch element.

        Args:
            outputs: ``"pred_logits"`` (B, N, K+1) and ``"pred_masks"`` (B, N, h, w) logits.
            targets: B dicts with ``"labels"`` int64 (M,) and ``"masks"`` (M, H, W) bool/float.
            forced: None, or B int64 (F, 2) tensors (or None) of (query_index, target_index) pairs;
                target -1 = the query stays unmatched. See the module docstring.
            generator: source of the random points; None = torch's default generator.

        Returns:
            B tuples ``(query_idx, target_idx)``: CPU int64 (L,) tensors sorted by query index,
            forced pairs (with target >= 0) included, L <= min(N, M).
        """
        pred_logits, pred_masks = outputs["pred_logits"], outputs["pred_masks"]
        batch_size = pred_logits.shape[0]
        if len(targets) != batch_size:
            raise ValueError(f"{len(targets)} targets for a batch of {batch_size}")
        forced_list = _forced_per_image(forced, batch_size)
        with fp32_region(pred_logits.device):
            return [
                self._match_image(pred_logits[b], pred_masks[b], targets[b], forced_list[b], generator)
                for b in range(batch_size)
            ]

    def _match_image(
        self,
        logits: torch.Tensor,
        masks: torch.Tensor,
        target: dict,
        forced: torch.Tensor | None,
        generator: torch.Generator | None,
    ) -> Indices:
        """One batch element: logits (N, K+1), masks (N, h, w) -> (query_idx, target_idx)."""
        num_queries, num_targets = logits.shape[0], target["labels"].shape[0]
        pairs = normalize_forced(forced, num_queries, num_targets)
        fixed = pairs[pairs[:, 1] >= 0]
        free_queries = _free_indices(num_queries, pairs[:, 0])
        free_targets = _free_indices(num_targets, fixed[:, 1])
        queries, tgts = [fixed[:, 0]], [fixed[:, 1]]
        if free_queries.numel() > 0 and free_targets.numel() > 0:
            cost = self._cost(logits, masks, target, free_queries, free_targets, generator)
            rows, cols = linear_sum_assignment(cost.numpy())
            queries.append(free_queries[torch.as_tensor(rows, dtype=torch.int64)])
            tgts.append(free_targets[torch.as_tensor(cols, dtype=torch.int64)])
        query_idx, target_idx = torch.cat(queries), torch.cat(tgts)
        order = query_idx.argsort()
        return query_idx[order], target_idx[order]

    def _cost(
        self,
        logits: torch.Tensor,
        masks: torch.Tensor,
        target: dict,
        queries: torch.Tensor,
        tgts: torch.Tensor,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        """(Q, T) fp32 CPU cost of the free queries against the free targets."""
        device = logits.device
        q_dev, t_dev = queries.to(device), tgts.to(device)
        probs = logits[q_dev].float().softmax(dim=-1)  # (Q, K+1)
        labels = target["labels"].to(device)[t_dev]  # (T,)
        class_cost = -probs[:, labels]  # (Q, T)

        coords = uniform_point_coords(1, self.num_points, device, generator)  # (1, P, 2)
        pred_points = point_sample(masks[q_dev].float().unsqueeze(0), coords)[0]  # (Q, P)
        tgt_masks = target["masks"].to(device)[t_dev].float()
        tgt_points = point_sample(tgt_masks.unsqueeze(0), coords)[0]  # (T, P)

        cost = (
            self.cost_class * class_cost
            + self.cost_mask * pairwise_sigmoid_bce_cost(pred_points, tgt_points)
            + self.cost_dice * pairwise_dice_cost(pred_points, tgt_points)
        )
        return torch.nan_to_num(cost, nan=_LARGE_COST, posinf=_LARGE_COST, neginf=-_LARGE_COST).cpu()

    def extra_repr(self) -> str:
        return (
            f"cost_class={self.cost_class}, cost_mask={self.cost_mask}, "
            f"cost_dice={self.cost_dice}, num_points={self.num_points}"
        )
