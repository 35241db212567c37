"""``LightFPNPixelDecoder``: a plain top-down FPN pixel decoder for CPU configs.

Each input feature gets a lateral 1x1 conv (with norm). From the coarsest level down, the previous
output is upsampled (nearest) and added to the lateral, then a 3x3 conv with norm and ReLU gives the
level's output (the coarsest level: its lateral alone). ``mask_features`` is a 1x1 conv of the
``common_stride`` output; the three coarsest outputs are the multi-scale features.
"""

from __future__ import annotations

from collections.abc import Sequence

import fvcore.nn.weight_init as weight_init
import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from torch import nn

from s2vnet.modeling.pixel_decoder.build import PIXEL_DECODER_REGISTRY

__all__ = ["LightFPNPixelDecoder"]

NUM_MULTI_SCALE = 3  # multi-scale maps handed to the transformer decoder (strides 32, 16, 8)


def sort_by_stride(input_shape: dict[str, ShapeSpec], names: Sequence[str], coarse_first: bool) -> list[str]:
    """``names`` ordered by their stride in ``input_shape``; KeyError names a feature the backbone lacks."""
    missing = [n for n in names if n not in input_shape]
    if missing:
        raise KeyError(f"pixel decoder features {missing} not among the backbone outputs {sorted(input_shape)}")
    return sorted(names, key=lambda n: input_shape[n].stride, reverse=coarse_first)


def make_conv(in_ch: int, out_ch: int, kernel: int, norm: str, relu: bool) -> Conv2d:
    """Conv (``kernel`` 1 or 3, same padding) with optional norm and ReLU, c2_xavier_fill initialised."""
    conv = Conv2d(
        in_ch,
        out_ch,
        kernel_size=kernel,
        padding=kernel // 2,
        bias=not norm,
        norm=get_norm(norm, out_ch),
        activation=F.relu if relu else None,
    )
    weight_init.c2_xavier_fill(conv)
    return conv


def select_features(input_shape: dict[str, ShapeSpec], names: Sequence[str]) -> dict[str, ShapeSpec]:
    """The ``names`` entries of the backbone's ``input_shape``; KeyError names the missing ones."""
    missing = [n for n in names if n not in input_shape]
    if missing:
        raise KeyError(f"pixel decoder IN_FEATURES {missing} not among backbone outputs {sorted(input_shape)}")
    return {n: input_shape[n] for n in names}


@PIXEL_DECODER_REGISTRY.register()
class LightFPNPixelDecoder(nn.Module):
    """Lightweight FPN pixel decoder (no attention).

    Args:
        input_shape: backbone features the decoder reads (name -> ShapeSpec), at least three, e.g. res2..res5.
        conv_dim: channels of the lateral/output convs and of the multi-scale features.
        mask_dim: channels of ``mask_features``.
        norm: norm of the convs ("GN", "BN", "" ...).
        common_stride: stride of ``mask_features``; one input feature must have it.
    """

    @configurable
    def __init__(
        self,
        *,
        input_shape: dict[str, ShapeSpec],
        conv_dim: int,
        mask_dim: int,
        norm: str = "GN",
        common_stride: int = 4,
    ) -> None:
        super().__init__()
        self.in_features = sort_by_stride(input_shape, list(input_shape), coarse_first=True)
        strides = [input_shape[n].stride for n in self.in_features]
        if len(strides) < NUM_MULTI_SCALE or common_stride not in strides:
            raise ValueError(
                f"need >= {NUM_MULTI_SCALE} features, one at stride {common_stride}, got strides {strides}"
            )
        self.num_levels = strides.index(common_stride) + 1  # levels finer than common_stride are not used
        used = self.in_features[: self.num_levels]
        self.lateral_convs = nn.ModuleList(
            make_conv(input_shape[n].channels, conv_dim, 1, norm, relu=False) for n in used
        )
        self.output_convs = nn.ModuleList(make_conv(conv_dim, conv_dim, 3, norm, relu=True) for _ in used)
        self.mask_features = make_conv(conv_dim, mask_dim, 1, "", relu=False)

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]) -> dict:
        """Keyword arguments from ``MODEL.PIXEL_DECODER.*`` (``IN_FEATURES`` selects the read features)."""
        pix = cfg.MODEL.PIXEL_DECODER
        return {
            "input_shape": select_features(input_shape, pix.IN_FEATURES),
            "conv_dim": pix.CONVS_DIM,
            "mask_dim": pix.MASK_DIM,
            "norm": pix.NORM,
            "common_stride": pix.COMMON_STRIDE,
        }

    def forward(self, features: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``features``: backbone maps ``{name: (B, C_s, H/s, W/s)}``.

        Returns:
            ``mask_features`` ``(B, mask_dim, H/common_stride, W/common_stride)`` and the three coarsest
            outputs ``(B, conv_dim, h, w)``, coarse to fine (strides 32, 16, 8 for res2..res5).
        """
        outs: list[torch.Tensor] = []
        for name, lateral, output in zip(self.in_features, self.lateral_convs, self.output_convs):
            y = lateral(features[name])
            if outs:
                y = y + F.interpolate(outs[-1], size=y.shape[-2:], mode="nearest")
            outs.append(output(y))
        return self.mask_features(outs[-1]), outs[:NUM_MULTI_SCALE]
