"""The pixel-decoder registry.

Members are ``nn.Module`` classes called as ``cls(cfg, input_shape)`` (``@configurable``), where
``input_shape`` maps backbone feature names to ``ShapeSpec``. Their ``forward(features)`` takes the
backbone's dict of ``(B, C, H/s, W/s)`` maps and returns ``(mask_features, multi_scale_features)``:
``mask_features`` ``(B, MASK_DIM, H/4, W/4)`` and a list of three ``(B, CONVS_DIM, h, w)`` maps ordered
coarse to fine (strides 32, 16, 8), the levels the transformer decoder cycles through.
"""

from __future__ import annotations

from detectron2.layers import ShapeSpec
from detectron2.utils.registry import Registry
from torch import nn

PIXEL_DECODER_REGISTRY = Registry("PIXEL_DECODER")
PIXEL_DECODER_REGISTRY.__doc__ = __doc__


def build_pixel_decoder(cfg, input_shape: dict[str, ShapeSpec]) -> nn.Module:
    """Build ``cfg.MODEL.PIXEL_DECODER.NAME`` on the backbone's output shapes."""
    return PIXEL_DECODER_REGISTRY.get(cfg.MODEL.PIXEL_DECODER.NAME)(cfg, input_shape)
