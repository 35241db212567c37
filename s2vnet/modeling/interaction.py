"""Centroid slots and click-initialised centroids (paper Eq. 7-8).

Slots: ``K * P`` centroid slots (``P`` = ``CENTROIDS_PER_CLASS``), slot ``k * P + j`` being the ``j``-th
slot of class ``k``. Automatically, every slot starts from a learned embedding and the class head
decides what it finds. Clicks of class ``k`` re-initialise slot ``k * P`` (Eq. 7): the pixel
embedding under each click is sampled bilinearly, the positive ones are accumulated over clicks and
rounds with weight ``beta`` (Eq. 8: ``O_r + beta * O_{r-1} + beta^2 * O_{r-2} ...``), and an FFN maps the
result to the centroid.

Negative clicks (design choice, documented here): they are accumulated the same way into a second
feature per class, mapped by their own FFN, and *added* to that class's click centroid. The negative
FFN's last layer starts at zero, so an untrained model ignores negatives, and training (the mapper
simulates negatives next to the object) learns to move the centroid away from the clicked background.
A class with negative clicks but no positive one gets no click centroid.
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
    """Eq. 8 accumulators per class: ``positive[k]`` / ``negative[k]`` are ``(D_f,)`` features."""

    positive: dict[int, torch.Tensor] = field(default_factory=dict)
    negative: dict[int, torch.Tensor] = field(default_factory=dict)


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


def accumulate(features: torch.Tensor, beta: float, prior: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 8 over clicks in order: ``acc <- O_r + beta * acc``; ``features (n, D_f)`` -> ``(D_f,)``."""
    acc = prior
    for feature in features:
        acc = feature if acc is None else feature + beta * acc
    return acc


class CentroidBank(nn.Module):
    """Learned centroid slots plus the click -> centroid mapping."""

    @configurable
    def __init__(self, *, num_classes: int, per_class: int, hidden_dim: int, feature_dim: int, beta: float = 0.8,
                 adaptive: bool = True) -> None:
        """
        Args:
            num_classes: K foreground classes; per_class: P slots per class (paper: 20).
            hidden_dim: centroid width D; feature_dim: width of the sampled pixel embeddings.
            beta: Eq. 8 weight of earlier clicks; adaptive: False keeps only the latest click (Table 4 row 4).
        """
        super().__init__()
        self.num_classes, self.per_class = num_classes, per_class
        self.beta, self.adaptive = beta, adaptive
        self.query_feat = nn.Embedding(num_classes * per_class, hidden_dim)
        self.query_pos = nn.Embedding(num_classes * per_class, hidden_dim)
        self.positive_ffn = MLP(feature_dim, hidden_dim, hidden_dim, 2)
        self.negative_ffn = MLP(feature_dim, hidden_dim, hidden_dim, 2)
        nn.init.zeros_(self.negative_ffn.layers[-1].weight)
        nn.init.zeros_(self.negative_ffn.layers[-1].bias)

    @classmethod
    def from_config(cls, cfg) -> dict:
        s2v = cfg.MODEL.S2VNET
        return {"num_classes": s2v.NUM_CLASSES, "per_class": s2v.CENTROIDS_PER_CLASS, "hidden_dim": s2v.HIDDEN_DIM,
                "feature_dim": cfg.MODEL.PIXEL_DECODER.MASK_DIM, "beta": s2v.BETA, "adaptive": s2v.ADAPTIVE_SAMPLING}

    @property
    def num_slots(self) -> int:
        return self.num_classes * self.per_class

    def click_slot(self, class_index: int) -> int:
        """The slot a click of class ``class_index`` initialises."""
        return class_index * self.per_class

    def _accumulate(self, features: torch.Tensor, prior: torch.Tensor | None) -> torch.Tensor:
        if not self.adaptive:
            return features[-1]
        return accumulate(features, self.beta, prior)

    def click_centroids(self, features: torch.Tensor, clicks: dict, image_hw: tuple[int, int],
                        memory: ClickMemory) -> tuple[dict[int, torch.Tensor], ClickMemory]:
        """Centroids ``{class: (D,)}`` for the classes clicked on one slice, and the updated memory.

        Args:
            features: ``(D_f, h, w)`` pixel embeddings of the clicked slice.
            clicks: ``{"coords": (n, 2) (y, x), "classes": (n,), "positive": (n,) bool}``.
            image_hw: input slice size.
            memory: accumulated click features of earlier clicks/rounds (not modified).
        """
        sampled = sample_features(features, clicks["coords"].to(features.device, torch.float32), image_hw)
        new = ClickMemory(dict(memory.positive), dict(memory.negative))
        for k in clicks["classes"].unique().tolist():
            of_k = clicks["classes"].to(features.device) == k
            for store, select in ((new.positive, clicks["positive"].to(features.device)), (new.negative, ~clicks["positive"].to(features.device))):
                chosen = sampled[of_k & select]
                if len(chosen):
                    store[k] = self._accumulate(chosen, store.get(k))
        centroids = {}
        for k in clicks["classes"].unique().tolist():
            if k in new.positive:
                centroid = self.positive_ffn(new.positive[k])
                if k in new.negative:
                    centroid = centroid + self.negative_ffn(new.negative[k])
                centroids[k] = centroid
        return centroids, new
