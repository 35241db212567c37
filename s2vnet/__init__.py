"""S2VNet: clustering propagation for universal (automatic + interactive) medical image segmentation.

Importing ``s2vnet`` registers its components with Detectron2 (builtin and demo datasets, the backbone,
pixel decoders, the k-means decoder and the ``S2VNet`` meta-architecture). Use
``s2vnet.add_s2vnet_config(cfg)`` to add its config keys.
"""
from s2vnet import data, modeling  # noqa: F401  (registers datasets and model components)
from s2vnet.config import add_s2vnet_config, get_s2vnet_cfg, setup_cfg
from s2vnet.data.clicks import Click
from s2vnet.errors import InputError
from s2vnet.inference.api import InteractiveSession, Predictor, SegmentationResult

__version__ = "0.1.0"
__all__ = ["add_s2vnet_config", "get_s2vnet_cfg", "setup_cfg", "InputError", "Predictor", "InteractiveSession",
           "SegmentationResult", "Click"]
