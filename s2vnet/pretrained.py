"""Starting weights of the Swin backbone: where they come from, and the check that a training run has them.

``MODEL.SWIN_TIMM.PRETRAINED`` names a local ``.pth`` / ``.pt`` / ``.safetensors`` file; nothing is
downloaded. Two public sources hold the paper's backbone (Swin-B, window 12, 384 px, ImageNet-22k), and
:func:`s2vnet.modeling.backbone.swin.load_pretrained_swin` reads both key layouts:

* timm: ``swin_base_patch4_window12_384.ms_in22k`` (``model.safetensors`` of the Hugging Face repository
  ``timm/swin_base_patch4_window12_384.ms_in22k``); timm's own key names.
* Microsoft: ``swin_base_patch4_window12_384_22k.pth`` from the ``v1.0.0`` release of
  ``github.com/SwinTransformer/storage`` (the file Mask2Former starts from); keys under ``"model"``, each
  stage's patch merging stored at the end of the previous stage, which the loader renames.

Training a Swin config without such a file is refused (:func:`resolve_pretrained`), unless the value is
:data:`SCRATCH`, which trains the backbone from random initialisation on purpose.
"""

from __future__ import annotations

from pathlib import Path

from detectron2.config import CfgNode

from s2vnet.errors import InputError

# MODEL.SWIN_TIMM.PRETRAINED value meaning "random initialisation, on purpose".
SCRATCH = "scratch"
# MODEL.BACKBONE.NAME values whose starting weights MODEL.SWIN_TIMM.PRETRAINED gives.
SWIN_BACKBONES = ("build_timm_swin_backbone",)
HOW_TO_GET = (
    "download Swin-B ImageNet-22k weights (timm: huggingface.co/timm/swin_base_patch4_window12_384.ms_in22k, "
    "model.safetensors; or Microsoft: swin_base_patch4_window12_384_22k.pth from the v1.0.0 release of "
    "github.com/SwinTransformer/storage) and set MODEL.SWIN_TIMM.PRETRAINED to its path, or set it to "
    f"'{SCRATCH}' to train the backbone from random initialisation"
)


def resolve_pretrained(cfg: CfgNode, training: bool) -> CfgNode:
    """Check ``MODEL.SWIN_TIMM.PRETRAINED`` and return the config the model is built from.

    A Swin backbone that is trained (``training``) from neither a full checkpoint (``MODEL.WEIGHTS``) nor
    a pretrained file is refused; so is a pretrained path that does not exist. :data:`SCRATCH` becomes
    ``""`` (the backbone's "no file") in the returned copy, so the given config keeps saying ``scratch``.

    Raises:
        InputError: one line naming the problem and how to get the weights.
    """
    value = cfg.MODEL.SWIN_TIMM.PRETRAINED
    if cfg.MODEL.BACKBONE.NAME in SWIN_BACKBONES and training and not cfg.MODEL.WEIGHTS:
        if not value:
            raise InputError("MODEL.SWIN_TIMM.PRETRAINED", f"no pretrained backbone weights given: {HOW_TO_GET}")
        if value != SCRATCH and not Path(value).is_file():
            raise InputError(value, f"no such pretrained weights file: {HOW_TO_GET}")
    if value != SCRATCH:
        return cfg
    out = cfg.clone()
    out.defrost()
    out.MODEL.SWIN_TIMM.PRETRAINED = ""
    if cfg.is_frozen():
        out.freeze()
    return out
