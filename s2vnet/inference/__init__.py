"""Whole-volume inference (the engine) and the public library API built on it."""

from s2vnet.data.clicks import Click
from s2vnet.inference.api import InteractiveSession, Predictor, SegmentationResult
from s2vnet.inference.checkpoint import load_weights
from s2vnet.inference.volume import ROUND_FUSIONS, InteractionState, VolumeFeatures, VolumeInference

__all__ = [
    "VolumeInference",
    "VolumeFeatures",
    "Click",
    "InteractionState",
    "ROUND_FUSIONS",
    "Predictor",
    "InteractiveSession",
    "SegmentationResult",
    "load_weights",
]
