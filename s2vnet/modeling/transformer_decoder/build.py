"""The transformer-decoder registry (the per-slice centroid decoder).

Members are ``nn.Module`` classes called as ``cls(cfg)`` (``@configurable``); see
:class:`s2vnet.modeling.transformer_decoder.kmeans_decoder.KMeansTransformerDecoder` for the call contract.
"""

from __future__ import annotations

from detectron2.utils.registry import Registry
from torch import nn

TRANSFORMER_DECODER_REGISTRY = Registry("TRANSFORMER_DECODER")
TRANSFORMER_DECODER_REGISTRY.__doc__ = __doc__


def build_transformer_decoder(cfg) -> nn.Module:
    """Build ``cfg.MODEL.S2VNET.TRANSFORMER_DECODER_NAME``."""
    return TRANSFORMER_DECODER_REGISTRY.get(cfg.MODEL.S2VNET.TRANSFORMER_DECODER_NAME)(cfg)
