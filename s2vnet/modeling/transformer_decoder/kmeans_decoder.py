"""The per-slice k-means transformer decoder (Mask2Former's decoder with k-means cross-attention)."""

from __future__ import annotations

import torch
from detectron2.config import configurable
from torch import nn

from s2vnet.modeling.mlp import MLP
from s2vnet.modeling.position_encoding import PositionEmbeddingSine
from s2vnet.modeling.transformer_decoder.build import TRANSFORMER_DECODER_REGISTRY
from s2vnet.modeling.transformer_decoder.kmeans_attention import FFNLayer, KMeansCrossAttention, SelfAttentionLayer

NUM_LEVELS = 3


class KMeansDecoderLayer(nn.Module):
    """k-means cross-attention -> self-attention -> FFN, as in Mask2Former's layer order."""

    def __init__(self, dim: int, nheads: int, dim_feedforward: int, dropout: float) -> None:
        super().__init__()
        self.cross = KMeansCrossAttention(dim, dropout)
        self.self_attn = SelfAttentionLayer(dim, nheads, dropout)
        self.ffn = FFNLayer(dim, dim_feedforward, dropout)

    def forward(self, x, pos, pixels, pixel_pos) -> tuple[torch.Tensor, torch.Tensor]:
        x, logits = self.cross(x, pos, pixels, pixel_pos)
        return self.ffn(self.self_attn(x, pos)), logits


@TRANSFORMER_DECODER_REGISTRY.register()
class KMeansTransformerDecoder(nn.Module):
    """Refines a set of centroids on one slice and predicts a class and a mask for each.

    Call: ``decoder(multi_scale_features, mask_features, centroids, centroid_pos)`` with
    ``multi_scale_features`` = three ``(B, C, h_l, w_l)`` maps (coarse to fine), ``mask_features``
    ``(B, mask_dim, H/4, W/4)``, ``centroids`` and ``centroid_pos`` ``(B, N, D)``. Layer ``i`` attends to
    level ``i % 3``. Returns the last layer's ``{"pred_logits" (B, N, K+1), "pred_masks" (B, N, H/4, W/4),
    "kmeans_logits" (B, N, h_l, w_l)}`` plus ``"aux_outputs"`` (the same for earlier layers; in training
    mode only; in eval mode the heads run on the last layer alone and ``"aux_outputs"`` is empty) and
    ``"centroids"`` ``(B, N, D)``, the refined centroids that propagation passes on.
    """

    @configurable
    def __init__(
        self,
        *,
        in_channels: int,
        mask_dim: int,
        num_classes: int,
        hidden_dim: int,
        nheads: int,
        dim_feedforward: int,
        dec_layers: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.input_proj = nn.ModuleList(
            nn.Conv2d(in_channels, hidden_dim, 1) if in_channels != hidden_dim else nn.Identity()
            for _ in range(NUM_LEVELS)
        )
        self.level_embed = nn.Embedding(NUM_LEVELS, hidden_dim)
        self.pos_enc = PositionEmbeddingSine(hidden_dim // 2)
        self._pos_cache: dict[tuple, torch.Tensor] = {}  # see _level_pos
        self.layers = nn.ModuleList(
            KMeansDecoderLayer(hidden_dim, nheads, dim_feedforward, dropout) for _ in range(dec_layers)
        )
        self.norm = nn.LayerNorm(hidden_dim)
        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)

    @classmethod
    def from_config(cls, cfg) -> dict:
        s2v = cfg.MODEL.S2VNET
        return {
            "in_channels": cfg.MODEL.PIXEL_DECODER.CONVS_DIM,
            "mask_dim": cfg.MODEL.PIXEL_DECODER.MASK_DIM,
            "num_classes": s2v.NUM_CLASSES,
            "hidden_dim": s2v.HIDDEN_DIM,
            "nheads": s2v.NHEADS,
            "dim_feedforward": s2v.DIM_FEEDFORWARD,
            "dec_layers": s2v.DEC_LAYERS,
            "dropout": s2v.DROPOUT,
        }

    def _flatten_levels(self, features: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor, tuple]]:
        levels = []
        for i, f in enumerate(features):
            src = self.input_proj[i](f).flatten(2).transpose(1, 2) + self.level_embed.weight[i]
            levels.append((src, self._level_pos(f, src.dtype), tuple(f.shape[-2:])))
        return levels

    def _level_pos(self, feature: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Flattened sine encoding ``(1, h*w, D)`` of a ``(B, C, h, w)`` map.

        A fixed function of the map's size, so inference (eval mode) keeps it per (size, device, dtype): a volume's
        slices all share their three sizes. Training recomputes it, and nothing is kept for tensors that are not
        plain tensors (fake/meta tracing) or while compiling.
        """
        key = (tuple(feature.shape[-2:]), feature.device, dtype)
        pos = None if self.training else self._pos_cache.get(key)
        if pos is None:
            pos = self.pos_enc(feature[:1]).flatten(2).transpose(1, 2).to(dtype)
            plain = type(feature) is torch.Tensor and feature.device.type != "meta"
            if plain and not self.training and not torch.compiler.is_compiling():
                if len(self._pos_cache) >= 8:
                    self._pos_cache.clear()
                self._pos_cache[key] = pos
        return pos

    def predict(self, centroids: torch.Tensor, mask_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits ``(B, N, K+1)`` and mask logits ``(B, N, H/4, W/4)`` for centroids ``(B, N, D)``."""
        x = self.norm(centroids)
        masks = torch.einsum("bnc,bchw->bnhw", self.mask_embed(x), mask_features)
        return self.class_embed(x), masks

    def forward(
        self,
        multi_scale_features: list[torch.Tensor],
        mask_features: torch.Tensor,
        centroids: torch.Tensor,
        centroid_pos: torch.Tensor,
    ) -> dict:
        levels = self._flatten_levels(multi_scale_features)
        outputs = []
        x = centroids
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            src, pos, (h, w) = levels[i % NUM_LEVELS]
            x, logits = layer(x, centroid_pos, src, pos)
            if i < last and not self.training:
                continue  # deep supervision is for training: inference needs only the last layer's heads
            pred_logits, pred_masks = self.predict(x, mask_features)
            outputs.append(
                {
                    "pred_logits": pred_logits,
                    "pred_masks": pred_masks,
                    "kmeans_logits": logits.reshape(logits.shape[0], logits.shape[1], h, w),
                }
            )
        return {**outputs[-1], "aux_outputs": outputs[:-1], "centroids": x}
