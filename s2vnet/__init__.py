"""S2VNet: clustering propagation for universal (automatic + interactive) medical image segmentation.

Importing ``s2vnet`` registers its components with Detectron2 (builtin and demo datasets, the backbone,
pixel decoders, the k-means decoder and the ``S2VNet`` meta-architecture). Use
``s2vnet.add_s2vnet_config(cfg)`` to add its config keys.
"""

import warnings

# Detectron2 and fvcore decorate functions with torch.jit.script at import time, and torch >= 2.9 warns about each
# (4 lines before any output of every CLI). That one message is silenced before Detectron2 is imported; every
# other warning, including torch's other deprecations, is kept.
warnings.filterwarnings(
    "ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning, module=r"torch\.jit\._script"
)

from s2vnet import data, modeling  # noqa: E402,F401  (registers datasets and model components)
from s2vnet.config import add_s2vnet_config, get_s2vnet_cfg, setup_cfg  # noqa: E402
from s2vnet.data.clicks import Click  # noqa: E402
from s2vnet.errors import InputError  # noqa: E402
from s2vnet.inference.api import InteractiveSession, Predictor, SegmentationResult  # noqa: E402

__version__ = "0.1.0"
__all__ = [
    "add_s2vnet_config",
    "get_s2vnet_cfg",
    "setup_cfg",
    "InputError",
    "Predictor",
    "InteractiveSession",
    "SegmentationResult",
    "Click",
]
