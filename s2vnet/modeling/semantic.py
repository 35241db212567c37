"""From a slice's centroids to per-class scores: click-aware class probabilities and semantic inference.

``CLICK_CLASS_SCORES`` decides what class a click-initialised centroid stands for (``MODEL.S2VNET.CLICK_CLASS_SCORE``);
``SEMANTIC_INFERENCE`` combines the centroids' class and mask probabilities into one score map per class
(``MODEL.S2VNET.SEMANTIC_INFERENCE``). Both are registries of plain functions, called as documented on each.
"""

from __future__ import annotations

import torch

__all__ = ["CLICK_CLASS_SCORES", "SEMANTIC_INFERENCE"]


def _head_probs(probs: torch.Tensor, click_class: torch.Tensor, here: torch.Tensor) -> torch.Tensor:
    return probs  # paper: the class head decides for every centroid


def _clicked_probs(probs: torch.Tensor, click_class: torch.Tensor, here: torch.Tensor) -> torch.Tensor:
    """Click slots keep only their clicked class or no-object (all foreground mass to the clicked class); on the
    clicked slice itself the slot is its class."""
    clicked = click_class >= 0  # no early return on "none clicked": that test would wait for the device
    num_fg = probs.shape[1] - 1
    k = click_class.clamp(min=0)
    as_clicked = torch.zeros_like(probs)
    as_clicked[:, num_fg] = torch.where(here, torch.zeros_like(probs[:, num_fg]), probs[:, num_fg])
    as_clicked.scatter_(1, k[:, None], (1 - as_clicked[:, num_fg])[:, None])
    return torch.where(clicked[:, None], as_clicked, probs)


# MODEL.S2VNET.CLICK_CLASS_SCORE -> fn(probs (N, K+1), click_class (N,), clicked_here (N,)) -> probs (N, K+1)
CLICK_CLASS_SCORES = {"head": _head_probs, "clicked": _clicked_probs}

# MODEL.S2VNET.SEMANTIC_INFERENCE -> fn(class probs (N, K), mask probs (N, h, w)) -> scores (K, h, w)
SEMANTIC_INFERENCE = {
    "sum": lambda probs, masks: torch.einsum("nk,nhw->khw", probs, masks),  # Mask2Former's semantic inference
    "max": lambda probs, masks: torch.einsum("nk,nhw->nkhw", probs, masks).amax(dim=0),
}
