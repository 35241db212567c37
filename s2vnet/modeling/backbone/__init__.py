"""Backbones. Importing this package registers ``build_timm_swin_backbone`` in Detectron2's ``BACKBONE_REGISTRY``.

Detectron2's own ResNet (``build_resnet_backbone``) is registered by Detectron2 itself.
"""

from s2vnet.modeling.backbone.swin import TimmSwinBackbone, build_timm_swin_backbone, load_pretrained_swin

__all__ = ["TimmSwinBackbone", "build_timm_swin_backbone", "load_pretrained_swin"]
