"""Pixel decoders. Importing this package registers ``MSDeformAttnPixelDecoder`` and ``LightFPNPixelDecoder``
in :data:`PIXEL_DECODER_REGISTRY`; see :mod:`s2vnet.modeling.pixel_decoder.build` for the forward contract.
"""

from s2vnet.modeling.pixel_decoder.build import PIXEL_DECODER_REGISTRY, build_pixel_decoder
from s2vnet.modeling.pixel_decoder.fpn import LightFPNPixelDecoder
from s2vnet.modeling.pixel_decoder.msdeform_attn import MSDeformAttn
from s2vnet.modeling.pixel_decoder.msdeform_decoder import MSDeformAttnPixelDecoder

__all__ = [
    "PIXEL_DECODER_REGISTRY",
    "build_pixel_decoder",
    "LightFPNPixelDecoder",
    "MSDeformAttn",
    "MSDeformAttnPixelDecoder",
]
