"""Starting weights of the Swin backbone: where they come from, and the check that a training run has them.

``MODEL.SWIN_TIMM.PRETRAINED`` names a local ``.pth`` / ``.pt`` / ``.safetensors`` file; nothing is
downloaded. Two public sources hold the paper's backbone (Swin-B, window 12, 384 px, ImageNet-22k), and
:func:`s2vnet.modeling.backbone.swin.load_pretrained_swin` reads both key layouts:

* timm: ``swin_base_patch4_window12_384.ms_in22k`` (``model.safetensors`` of the Hugging Face repository
  ``timm/swin_base_patch4_window12_384.ms_in22k``); timm's own key names.
* Microsoft: ``swin_base_patch4_window12_384_22k.pth`` from the ``v1.0.0`` release of
  ``github.com/SwinTransformer/storage`` (the file Mask2Former starts from); keys under ``"model"``, each
  stage's patch merging stored at the end of the previous stage, which the loader renames.

The value is read in two places. The backbone (:func:`pretrained_file`) reads ``""`` and :data:`SCRATCH`
alike, as "no file", so predict, the viewer and ``--eval-only`` build a scratch config as they build any other.
Training is stricter (:func:`check_pretrained`): a Swin config without a file is refused unless the value is
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


def pretrained_file(value: str) -> str:
    """The weights file ``MODEL.SWIN_TIMM.PRETRAINED`` names, ``""`` for none (``""`` or :data:`SCRATCH`)."""
    return "" if value.strip() in ("", SCRATCH) else value


def check_pretrained(cfg: CfgNode, training: bool) -> None:
    """Refuse a Swin training run that has no starting weights (``cfg`` is not changed).

    A Swin backbone that is trained (``training``) from neither a full checkpoint (``MODEL.WEIGHTS``) nor
    a pretrained file is refused unless ``MODEL.SWIN_TIMM.PRETRAINED`` is :data:`SCRATCH`; so is a pretrained
    path that does not exist. Inference needs no file: the checkpoint brings every weight.

    Raises:
        InputError: one line naming the problem and how to get the weights.
    """
    value = cfg.MODEL.SWIN_TIMM.PRETRAINED
    if cfg.MODEL.BACKBONE.NAME not in SWIN_BACKBONES or not training or cfg.MODEL.WEIGHTS:
        return
    if not value.strip():
        raise InputError("MODEL.SWIN_TIMM.PRETRAINED", f"no pretrained backbone weights given: {HOW_TO_GET}")
    if pretrained_file(value) and not Path(value).is_file():
        raise InputError(value, f"no such pretrained weights file: {HOW_TO_GET}")
