"""Centroid slots and click-initialised centroids (paper Eq. 7-8).

Slots: ``K * P`` centroid slots (``P`` = ``CENTROIDS_PER_CLASS``), slot ``k * P + j`` being the ``j``-th
slot of class ``k``. Automatically, every slot starts from a learned embedding and the class head
decides what it finds. A click of class ``k`` initialises one of class ``k``'s slots (Eq. 7): the pixel
embedding under the click is sampled bilinearly, accumulated with the class's earlier clicks and rounds
with weight ``beta`` (Eq. 8: ``O_r + beta * O_{r-1} + beta^2 * O_{r-2} ...``), and an FFN maps the result to
the centroid.

Which slot (``MODEL.S2VNET.CLICK_SLOTS``):

* ``"per_click"`` (paper, 3.3: "each click serving as the trigger to initialize one of them"): the ``n``-th
  click of class ``k`` in a session takes slot ``k * P + (n mod P)``. Past ``P`` clicks the oldest click's
  slot is reused; its feature is already in the Eq. 8 accumulator, so no click is dropped.
* ``"shared"``: every click of class ``k`` re-initialises slot ``k * P``.

Eq. 8 normalisation (``MODEL.S2VNET.CLICK_FEATURE_NORM``): ``"none"`` (paper) keeps the raw weighted sum,
whose norm grows with the number of clicks (up to ``1 / (1 - beta)`` = 5x); ``"weights"`` divides it by the
sum of its weights ``1 + beta + beta^2 ...``, so the FFN always sees a weighted mean of clicked features.

Negative clicks (design choice, documented here): they are accumulated the same way into a second
feature per class, mapped by their own FFN, and *added* to that class's click centroid. The negative
FFN's last layer starts at zero, so an untrained model ignores negatives, and training (simulated
negatives next to the object, and error-driven negatives on the model's own false positives) learns to
move the centroid away from the clicked background. A class with no positive click yet gets no click
centroid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from torch import nn

from s2vnet.modeling.mlp import MLP


@dataclass
class ClickMemory:
    """Eq. 8 accumulators and slot counters per class.

    Attributes:
        positive / negative: ``{k: (D_f,)}`` weighted sums of the class's positive / negative click features.
        positive_weight / negative_weight: ``{k: float}`` the sum of the weights in that sum (for normalising).
        count: ``{k: int}`` clicks of class ``k`` so far (selects the next ``per_click`` slot).
    """

    positive: dict[int, torch.Tensor] = field(default_factory=dict)
    negative: dict[int, torch.Tensor] = field(default_factory=dict)
    positive_weight: dict[int, float] = field(default_factory=dict)
    negative_weight: dict[int, float] = field(default_factory=dict)
    count: dict[int, int] = field(default_factory=dict)

    def copy(self) -> ClickMemory:
        return ClickMemory(
            dict(self.positive),
            dict(self.negative),
            dict(self.positive_weight),
            dict(self.negative_weight),
            dict(self.count),
        )


@dataclass(frozen=True)
class ClickCentroid:
    """A click-initialised centroid: the slot it takes, its class, and its ``(D,)`` value."""

    slot: int
    class_index: int
    centroid: torch.Tensor


def sample_features(features: torch.Tensor, coords: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
    """Bilinearly sample a feature map at click positions.

    Args:
        features: ``(D_f, h, w)`` pixel embeddings of one slice (any stride).
        coords: ``(n, 2)`` clicks as ``(y, x)`` pixel indices of the ``image_hw`` input.
        image_hw: the input slice size ``(H, W)``; ``h / H == w / W`` is the feature stride.

    Returns:
        ``(n, D_f)``.
    """
    h_img, w_img = image_hw
    norm = torch.stack([(coords[:, 1] + 0.5) / w_img, (coords[:, 0] + 0.5) / h_img], dim=-1)  # (x, y) in [0, 1]
    grid = (norm * 2 - 1).to(features.dtype)[None, :, None, :]  # (1, n, 1, 2)
    out = F.grid_sample(features[None], grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0, :, :, 0].t()


def host_list(values) -> list:
    """Click classes or signs as a Python list: inference passes lists already; training's mapper passes CPU tensors."""
    return values.tolist() if torch.is_tensor(values) else list(values)


def accumulate(features: torch.Tensor, beta: float, prior: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 8 over clicks in order: ``acc <- O_r + beta * acc``; ``features (n, D_f)`` -> ``(D_f,)``."""
    acc = prior
    for feature in features:
        acc = feature if acc is None else feature + beta * acc
    return acc


def accumulate_weight(beta: float, prior: float = 0.0) -> float:
    """The weight sum after one more click: ``w <- 1 + beta * w`` (``1 + beta + ... + beta^(n-1)`` after n)."""
    return 1.0 + beta * prior


# MODEL.S2VNET.CLICK_FEATURE_NORM -> fn(weighted sum (D_f,), weight sum) -> the FFN's input
CLICK_FEATURE_NORMS = {
    "none": lambda acc, weight: acc,  # paper Eq. 8
    "weights": lambda acc, weight: acc / weight,  # a weighted mean: the same scale for 1 or 15 clicks
}


class CentroidBank(nn.Module):
    """Learned centroid slots plus the click -> centroid mapping."""

    @configurable
    def __init__(
        self,
        *,
        num_classes: int,
        per_class: int,
        hidden_dim: int,
        feature_dim: int,
        beta: float = 0.8,
        adaptive: bool = True,
        slots: str = "per_click",
        feature_norm: str = "none",
    ) -> None:
        """
        Args:
            num_classes: K foreground classes; per_class: P slots per class (paper: 20).
            hidden_dim: centroid width D; feature_dim: width of the sampled pixel embeddings.
            beta: Eq. 8 weight of earlier clicks; adaptive: False keeps only the latest click (Table 4 row 4).
            slots: "per_click" (paper) or "shared" (see the module docstring).
            feature_norm: key of :data:`CLICK_FEATURE_NORMS`.
        """
        super().__init__()
        if slots not in ("per_click", "shared"):
            raise ValueError(f"unknown CLICK_SLOTS '{slots}'; known: per_click, shared")
        if feature_norm not in CLICK_FEATURE_NORMS:
            raise ValueError(f"unknown CLICK_FEATURE_NORM '{feature_norm}'; known: {', '.join(CLICK_FEATURE_NORMS)}")
        self.num_classes, self.per_class = num_classes, per_class
        self.beta, self.adaptive, self.slots = beta, adaptive, slots
        self.normalise = CLICK_FEATURE_NORMS[feature_norm]
        self.query_feat = nn.Embedding(num_classes * per_class, hidden_dim)
        self.query_pos = nn.Embedding(num_classes * per_class, hidden_dim)
        self.positive_ffn = MLP(feature_dim, hidden_dim, hidden_dim, 2)
        self.negative_ffn = MLP(feature_dim, hidden_dim, hidden_dim, 2)
        nn.init.zeros_(self.negative_ffn.layers[-1].weight)
        nn.init.zeros_(self.negative_ffn.layers[-1].bias)

    @classmethod
    def from_config(cls, cfg) -> dict:
        s2v = cfg.MODEL.S2VNET
        return {
            "num_classes": s2v.NUM_CLASSES,
            "per_class": s2v.CENTROIDS_PER_CLASS,
            "hidden_dim": s2v.HIDDEN_DIM,
            "feature_dim": cfg.MODEL.PIXEL_DECODER.MASK_DIM,
            "beta": s2v.BETA,
            "adaptive": s2v.ADAPTIVE_SAMPLING,
            "slots": s2v.CLICK_SLOTS,
            "feature_norm": s2v.CLICK_FEATURE_NORM,
        }

    @property
    def num_slots(self) -> int:
        return self.num_classes * self.per_class

    def click_slot(self, class_index: int, ordinal: int = 0) -> int:
        """The slot the ``ordinal``-th click (0-based, in the session) of class ``class_index`` initialises."""
        offset = ordinal % self.per_class if self.slots == "per_click" else 0
        return class_index * self.per_class + offset

    def _add(self, store: dict, weights: dict, k: int, feature: torch.Tensor) -> None:
        """Fold one click feature ``(D_f,)`` into class ``k``'s Eq. 8 accumulator (in place on the dicts)."""
        if not self.adaptive:
            store[k], weights[k] = feature, 1.0
            return
        store[k] = accumulate(feature[None], self.beta, store.get(k))
        weights[k] = accumulate_weight(self.beta, weights.get(k, 0.0))

    def _centroid(self, memory: ClickMemory, k: int) -> torch.Tensor:
        centroid = self.positive_ffn(self.normalise(memory.positive[k], memory.positive_weight[k]))
        if k in memory.negative:
            centroid = centroid + self.negative_ffn(self.normalise(memory.negative[k], memory.negative_weight[k]))
        return centroid

    def click_centroids(
        self, features: torch.Tensor, clicks: dict, image_hw: tuple[int, int], memory: ClickMemory
    ) -> tuple[list[ClickCentroid], ClickMemory]:
        """Centroids for the clicks on one slice, in click order, and the updated memory.

        Every click first updates its class's accumulator; then, with ``per_click`` slots, each click gives a
        centroid (from the accumulator as it stands after that click) in its own slot; with ``shared`` slots each
        clicked class gives one centroid from its final accumulator. A class without any positive click so far
        gives none.

        Args:
            features: ``(D_f, h, w)`` pixel embeddings of the clicked slice.
            clicks: ``{"coords": (n, 2) (y, x), "classes": n ints, "positive": n bools}`` (lists or CPU tensors).
            image_hw: input slice size.
            memory: accumulated click features of earlier clicks/rounds (not modified).
        """
        sampled = sample_features(features, clicks["coords"].to(features.device, torch.float32), image_hw)
        new = memory.copy()
        out: list[ClickCentroid] = []
        classes, positive = host_list(clicks["classes"]), host_list(clicks["positive"])
        for feature, k, pos in zip(sampled, classes, positive):
            if pos:
                self._add(new.positive, new.positive_weight, k, feature)
            else:
                self._add(new.negative, new.negative_weight, k, feature)
            ordinal = new.count.get(k, 0)
            new.count[k] = ordinal + 1
            if self.slots == "per_click" and k in new.positive:
                out.append(ClickCentroid(self.click_slot(k, ordinal), k, self._centroid(new, k)))
        if self.slots == "shared":
            out = [
                ClickCentroid(self.click_slot(k), k, self._centroid(new, k))
                for k in dict.fromkeys(classes)
                if k in new.positive
            ]
        return out, new
