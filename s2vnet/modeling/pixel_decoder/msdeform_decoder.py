"""``MSDeformAttnPixelDecoder``: a deformable-attention encoder over the coarse levels plus a top-down FPN.

The ``deformable_in_features`` (res3..res5) are projected to ``conv_dim`` channels and refined jointly by
``transformer_enc_layers`` encoder layers (deformable self-attention over all levels, then an FFN; post-norm). Finer
backbone levels (res2) are fused top-down: lateral 1x1 conv + upsampled coarser output, then a 3x3 conv
with norm and ReLU. ``mask_features`` is a 1x1 conv of the ``common_stride`` map.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from torch import nn

from s2vnet.modeling.pixel_decoder.build import PIXEL_DECODER_REGISTRY
from s2vnet.modeling.pixel_decoder.fpn import NUM_MULTI_SCALE, make_conv, select_features, sort_by_stride
from s2vnet.modeling.pixel_decoder.msdeform_attn import MSDeformAttn
from s2vnet.modeling.position_encoding import PositionEmbeddingSine

__all__ = ["MSDeformAttnEncoderLayer", "MSDeformAttnEncoder", "MSDeformAttnPixelDecoder"]


class MSDeformAttnEncoderLayer(nn.Module):
    """Deformable self-attention + FFN, each with residual, dropout and post-LayerNorm.

    Args:
        d_model: channels. n_levels / n_heads / n_points: of the deformable attention.
        dim_feedforward: FFN hidden width. dropout: dropout rate.
    """

    def __init__(
        self, d_model: int, n_levels: int, n_heads: int, n_points: int, dim_feedforward: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points)
        self.norm1 = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, dim_feedforward),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(dim_feedforward, d_model),
        )
        for linear in (self.ffn[0], self.ffn[3]):
            nn.init.xavier_uniform_(linear.weight)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(
        self,
        src: torch.Tensor,
        pos: torch.Tensor,
        reference_points: torch.Tensor,
        spatial_shapes: Sequence[tuple[int, int]],
        level_start_index: Sequence[int],
    ) -> torch.Tensor:
        """``src``/``pos`` ``(B, sum HW, C)``, ``reference_points`` ``(B, sum HW, L, 2)`` -> ``(B, sum HW, C)``;
        ``spatial_shapes`` / ``level_start_index`` as Python ints (see :meth:`MSDeformAttn.forward`)."""
        attn = self.self_attn(src + pos, reference_points, src, spatial_shapes, level_start_index)
        src = self.norm1(src + self.dropout1(attn))
        return self.norm2(src + self.dropout2(self.ffn(src)))


class MSDeformAttnEncoder(nn.Module):
    """A stack of :class:`MSDeformAttnEncoderLayer` over flattened multi-level maps (no padding).

    Args:
        num_layers: layers. The other arguments as :class:`MSDeformAttnEncoderLayer`.
    """

    def __init__(
        self,
        num_layers: int,
        d_model: int,
        n_levels: int,
        n_heads: int,
        n_points: int,
        dim_feedforward: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            MSDeformAttnEncoderLayer(d_model, n_levels, n_heads, n_points, dim_feedforward, dropout)
            for _ in range(num_layers)
        )

    def forward(self, maps: Sequence[torch.Tensor], pos: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """``maps``/``pos``: per level ``(B, C, H_l, W_l)`` (pos already includes the level embedding)
        -> refined maps, same shapes and order."""
        shapes = [(int(m.shape[-2]), int(m.shape[-1])) for m in maps]  # Python ints: no host sync per layer
        sizes = [h * w for h, w in shapes]
        level_start_index = [sum(sizes[:i]) for i in range(len(sizes))]
        src = torch.cat([m.flatten(2).transpose(1, 2) for m in maps], dim=1)
        pos_flat = torch.cat([p.flatten(2).transpose(1, 2) for p in pos], dim=1)
        reference = self._reference_points(shapes, maps[0]).expand(src.shape[0], -1, len(shapes), -1)
        for layer in self.layers:
            src = layer(src, pos_flat, reference, shapes, level_start_index)
        return [s.transpose(1, 2).reshape(s.shape[0], -1, h, w) for s, (h, w) in zip(src.split(sizes, dim=1), shapes)]

    @staticmethod
    def _reference_points(shapes: Sequence[tuple[int, int]], like: torch.Tensor) -> torch.Tensor:
        """Pixel centres of every level, normalised (x, y): ``(1, sum HW, 1, 2)``."""
        points = []
        for h, w in shapes:
            ys = (torch.arange(h, dtype=like.dtype, device=like.device) + 0.5) / h
            xs = (torch.arange(w, dtype=like.dtype, device=like.device) + 0.5) / w
            grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
            points.append(torch.stack([grid_x.flatten(), grid_y.flatten()], dim=-1))
        return torch.cat(points, dim=0)[None, :, None, :]


@PIXEL_DECODER_REGISTRY.register()
class MSDeformAttnPixelDecoder(nn.Module):
    """Mask2Former's pixel decoder: deformable-attention encoder on the coarse levels, FPN on the finer ones.

    Args:
        input_shape: backbone features the decoder reads (name -> ShapeSpec), e.g. res2..res5.
        deformable_in_features: the features refined by the encoder (e.g. res3, res4, res5).
        conv_dim: channels inside the decoder (a multiple of 32: GroupNorm(32) on the input projections).
        mask_dim: channels of ``mask_features``.
        norm: norm of the FPN convs ("GN", "BN", "" ...).
        transformer_enc_layers / nheads / n_points / dim_feedforward / dropout: of the encoder.
        common_stride: stride of ``mask_features``; the finer features down to it are fused top-down.
    """

    @configurable
    def __init__(
        self,
        *,
        input_shape: dict[str, ShapeSpec],
        deformable_in_features: Sequence[str],
        conv_dim: int,
        mask_dim: int,
        norm: str = "GN",
        transformer_enc_layers: int = 6,
        nheads: int = 8,
        n_points: int = 4,
        dim_feedforward: int = 1024,
        dropout: float = 0.0,
        common_stride: int = 4,
    ) -> None:
        super().__init__()
        self.deformable_features = sort_by_stride(input_shape, deformable_in_features, coarse_first=True)
        min_stride = input_shape[self.deformable_features[-1]].stride
        finer = [n for n, s in input_shape.items() if common_stride <= s.stride < min_stride]
        self.fpn_features = sort_by_stride(input_shape, finer, coarse_first=True)
        strides = [input_shape[n].stride for n in self.deformable_features + self.fpn_features]
        if strides[-1] != common_stride or len(strides) < NUM_MULTI_SCALE:
            raise ValueError(
                f"need >= {NUM_MULTI_SCALE} levels ending at stride {common_stride}, got strides {strides}"
            )
        self.input_proj = nn.ModuleList(
            self._input_proj(input_shape[n].channels, conv_dim) for n in self.deformable_features
        )
        self.level_embed = nn.Parameter(torch.empty(len(self.deformable_features), conv_dim).normal_())
        self.pe_layer = PositionEmbeddingSine(conv_dim // 2)
        self.encoder = MSDeformAttnEncoder(
            transformer_enc_layers, conv_dim, len(self.deformable_features), nheads, n_points, dim_feedforward, dropout
        )
        self.lateral_convs = nn.ModuleList(
            make_conv(input_shape[n].channels, conv_dim, 1, norm, relu=False) for n in self.fpn_features
        )
        self.output_convs = nn.ModuleList(make_conv(conv_dim, conv_dim, 3, norm, relu=True) for _ in self.fpn_features)
        self.mask_features = make_conv(conv_dim, mask_dim, 1, "", relu=False)

    @staticmethod
    def _input_proj(in_channels: int, conv_dim: int) -> nn.Sequential:
        """1x1 conv (Xavier-uniform, zero bias) + GroupNorm(32)."""
        proj = nn.Sequential(nn.Conv2d(in_channels, conv_dim, kernel_size=1), nn.GroupNorm(32, conv_dim))
        nn.init.xavier_uniform_(proj[0].weight, gain=1)
        nn.init.zeros_(proj[0].bias)
        return proj

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]) -> dict:
        """Keyword arguments from ``MODEL.PIXEL_DECODER.*`` (``IN_FEATURES`` selects the read features)."""
        pix = cfg.MODEL.PIXEL_DECODER
        return {
            "input_shape": select_features(input_shape, pix.IN_FEATURES),
            "deformable_in_features": list(pix.DEFORMABLE_IN_FEATURES),
            "conv_dim": pix.CONVS_DIM,
            "mask_dim": pix.MASK_DIM,
            "norm": pix.NORM,
            "transformer_enc_layers": pix.TRANSFORMER_ENC_LAYERS,
            "nheads": pix.NHEADS,
            "n_points": pix.N_POINTS,
            "dim_feedforward": pix.DIM_FEEDFORWARD,
            "common_stride": pix.COMMON_STRIDE,
        }

    def forward(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``features``: backbone maps ``{name: (B, C_s, H/s, W/s)}``.

        Returns:
            ``mask_features`` ``(B, mask_dim, H/common_stride, W/common_stride)`` and three
            ``(B, conv_dim, h, w)`` maps, coarse to fine (strides 32, 16, 8 for res3..res5 encoded).
        """
        maps = [proj(features[n]) for proj, n in zip(self.input_proj, self.deformable_features)]
        pos = [self.pe_layer(m) + self.level_embed[i].view(1, -1, 1, 1) for i, m in enumerate(maps)]
        outs = self.encoder(maps, pos)
        for name, lateral, output in zip(self.fpn_features, self.lateral_convs, self.output_convs):
            cur = lateral(features[name])
            up = F.interpolate(outs[-1], size=cur.shape[-2:], mode="bilinear", align_corners=False)
            outs.append(output(cur + up))
        return self.mask_features(outs[-1]), outs[:NUM_MULTI_SCALE]
