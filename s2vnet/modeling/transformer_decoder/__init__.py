"""Per-slice transformer decoders (registry ``TRANSFORMER_DECODER_REGISTRY``)."""

from s2vnet.modeling.transformer_decoder.build import TRANSFORMER_DECODER_REGISTRY, build_transformer_decoder
from s2vnet.modeling.transformer_decoder.kmeans_decoder import KMeansTransformerDecoder

__all__ = ["TRANSFORMER_DECODER_REGISTRY", "build_transformer_decoder", "KMeansTransformerDecoder"]
