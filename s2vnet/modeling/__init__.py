"""S2VNet's model: backbones, pixel decoders, the k-means decoder, propagation, interaction, losses.

Importing it registers ``build_timm_swin_backbone`` (Detectron2 ``BACKBONE_REGISTRY``), the pixel
decoders (``PIXEL_DECODER_REGISTRY``), the k-means decoder (``TRANSFORMER_DECODER_REGISTRY``) and the
``S2VNet`` meta-architecture (``META_ARCH_REGISTRY``).
"""

from s2vnet.modeling import backbone  # noqa: F401  (registers build_timm_swin_backbone)
from s2vnet.modeling.meta_arch import S2VNet, SliceFeatures
from s2vnet.modeling.pixel_decoder import PIXEL_DECODER_REGISTRY, build_pixel_decoder
from s2vnet.modeling.propagation import PropagationState
from s2vnet.modeling.transformer_decoder import TRANSFORMER_DECODER_REGISTRY, build_transformer_decoder

__all__ = [
    "S2VNet",
    "SliceFeatures",
    "PropagationState",
    "PIXEL_DECODER_REGISTRY",
    "build_pixel_decoder",
    "TRANSFORMER_DECODER_REGISTRY",
    "build_transformer_decoder",
]
