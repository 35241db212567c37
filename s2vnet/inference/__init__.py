"""Whole-volume inference with cached slice features (automatic sweeps and interactive rounds)."""
from s2vnet.inference.volume import ROUND_FUSIONS, Click, InteractionState, VolumeFeatures, VolumeInference

__all__ = ["VolumeInference", "VolumeFeatures", "Click", "InteractionState", "ROUND_FUSIONS"]
