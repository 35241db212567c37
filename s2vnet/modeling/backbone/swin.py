"""A Detectron2 ``Backbone`` around timm's Swin Transformer (v1).

Sizes: the timm model is built at its default ``img_size`` with ``strict_img_size=False``, so every stage
keeps the model's nominal window (e.g. 12 for ``swin_base_patch4_window12_384``, what pretrained weights
expect) and the shifted-window masks are rebuilt for each input. Any H, W that are multiples of 32 work;
feature maps that are not a multiple of the window are zero-padded inside each block.

timm 1.0.31 rolls a shifted window *before* padding, which misplaces the shift mask whenever a feature map
is not a multiple of the window (tokens on one image border then attend to the opposite border; at a
512 x 512 input with window 12 this happens in every stage). :class:`_PadThenShiftBlock` restores the
original Swin order (pad, then roll); it is identical to timm when no padding is needed.

Features are taken with ``forward_intermediates`` of the full timm model (not ``features_only``), so the
parameter names are timm's own (``layers.0.blocks...``) and timm / Microsoft checkpoints load directly.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from timm.models.swin_transformer import SwinTransformer, SwinTransformerBlock
from torch import nn

from s2vnet.errors import InputError
from s2vnet.pretrained import pretrained_file

__all__ = ["TimmSwinBackbone", "build_timm_swin_backbone", "load_pretrained_swin"]

logger = logging.getLogger(__name__)

STAGE_NAMES = ("res2", "res3", "res4", "res5")


class _PadThenShiftBlock(SwinTransformerBlock):
    """timm's Swin block with the original pad-then-roll order of the shifted-window attention."""

    def _attn(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B, H, W, C)`` (already normalised) -> window attention output ``(B, H, W, C)``."""
        _, h, w, c = x.shape
        win_h, win_w = self.window_size
        x = F.pad(x, (0, 0, 0, (win_w - w % win_w) % win_w, 0, (win_h - h % win_h) % win_h))  # pads W, then H
        shift = tuple(self.shift_size)
        if any(shift):
            x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        _, hp, wp, _ = x.shape
        mask = self.get_attn_mask(x) if self.dynamic_mask else self.attn_mask
        windows = x.reshape(-1, hp // win_h, win_h, wp // win_w, win_w, c).permute(0, 1, 3, 2, 4, 5)
        out = self.attn(windows.reshape(-1, win_h * win_w, c), mask=mask)
        out = out.reshape(-1, hp // win_h, wp // win_w, win_h, win_w, c).permute(0, 1, 3, 2, 4, 5)
        out = out.reshape(-1, hp, wp, c)
        if any(shift):
            out = torch.roll(out, shifts=shift, dims=(1, 2))
        return out[:, :h, :w, :].contiguous()


def _create_swin(name: str, drop_path_rate: float, in_chans: int) -> SwinTransformer:
    """A randomly initialised timm Swin (v1) without head, accepting any input size (nothing downloaded)."""
    if not timm.is_model(name):
        raise InputError(name, "unknown timm model name")
    model = timm.create_model(
        name,
        pretrained=False,
        num_classes=0,
        in_chans=in_chans,
        drop_path_rate=drop_path_rate,
        strict_img_size=False,
    )
    if not isinstance(model, SwinTransformer):
        raise InputError(name, "not a timm Swin Transformer (v1) model")
    for module in model.modules():
        if type(module) is SwinTransformerBlock:
            module.__class__ = _PadThenShiftBlock
    return model


def _read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a ``.pth``/``.pt``/``.safetensors`` file, unwrapped from ``"model"``/``"state_dict"``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such pretrained weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unreadable / corrupt file is a bad input
        raise InputError(path, f"cannot read pretrained weights ({type(err).__name__}: {err})") from None
    for key in ("model", "state_dict"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping):
        raise InputError(path, "pretrained weights file holds no state dict")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _to_timm_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop non-persistent buffers; rename Microsoft-format keys (downsample at a stage's end) to timm's."""
    old_format = "layers.0.downsample.reduction.weight" in state
    out = {}
    for key, value in state.items():
        if "relative_position_index" in key or "attn_mask" in key:
            continue
        if old_format:
            key = re.sub(r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) + 1}.downsample", key)
        out[key] = value
    return out


def load_pretrained_swin(model: nn.Module, path: str | Path) -> dict[str, int]:
    """Load local weights into a timm Swin with ``strict=False``; keys of another shape are skipped.

    Returns:
        counts of ``"loaded"``, ``"missing"``, ``"unexpected"`` and ``"mismatched"`` (skipped) keys, also logged.

    Raises:
        InputError: the file does not exist or cannot be read.
    """
    state = _to_timm_keys(_read_state_dict(path))
    own = model.state_dict()
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    for key in mismatched:
        del state[key]
    result = model.load_state_dict(state, strict=False)
    counts = {
        "loaded": len(state) - len(result.unexpected_keys),
        "missing": len(result.missing_keys),
        "unexpected": len(result.unexpected_keys),
        "mismatched": len(mismatched),
    }
    logger.info("Swin weights from %s: %s", path, counts)
    return counts


class TimmSwinBackbone(Backbone):
    """timm Swin Transformer as a Detectron2 backbone with outputs ``res2``..``res5`` (strides 4, 8, 16, 32).

    Args:
        name: timm model name of a Swin v1 (e.g. ``"swin_base_patch4_window12_384"``).
        out_features: returned stages, a subset of ``("res2", "res3", "res4", "res5")``.
        drop_path_rate: stochastic depth rate.
        pretrained: local ``.pth``/``.pt``/``.safetensors`` weights loaded with ``strict=False``; ``""`` or
            ``"scratch"`` = none (random initialisation).
        in_chans: input channels.
        out_norm: a LayerNorm on each returned stage (as Mask2Former's Swin; identity at initialisation).
    """

    @configurable
    def __init__(
        self,
        *,
        name: str,
        out_features: Sequence[str] = STAGE_NAMES,
        drop_path_rate: float = 0.0,
        pretrained: str = "",
        in_chans: int = 3,
        out_norm: bool = True,
    ) -> None:
        super().__init__()
        unknown = [f for f in out_features if f not in STAGE_NAMES]
        if not out_features or unknown:
            raise InputError(name, f"out_features must be a non-empty subset of {STAGE_NAMES}: {list(out_features)}")
        self._out_features = [f for f in STAGE_NAMES if f in out_features]
        self._indices = [STAGE_NAMES.index(f) for f in self._out_features]
        self.swin = _create_swin(name, drop_path_rate, in_chans)
        self.swin.prune_intermediate_layers(self._indices, prune_norm=True, prune_head=True)
        if path := pretrained_file(pretrained):
            load_pretrained_swin(self.swin, path)
        info = self.swin.feature_info
        self._out_feature_channels = {f: info[i]["num_chs"] for f, i in zip(self._out_features, self._indices)}
        self._out_feature_strides = {f: info[i]["reduction"] for f, i in zip(self._out_features, self._indices)}
        self.out_norms = nn.ModuleDict(
            {f: nn.LayerNorm(c) if out_norm else nn.Identity() for f, c in self._out_feature_channels.items()}
        )

    @classmethod
    def from_config(cls, cfg, input_shape: ShapeSpec) -> dict:
        """Keyword arguments from ``MODEL.SWIN_TIMM.*``; ``input_shape.channels`` = input channels."""
        swin = cfg.MODEL.SWIN_TIMM
        return {
            "name": swin.NAME,
            "out_features": tuple(swin.OUT_FEATURES),
            "drop_path_rate": swin.DROP_PATH_RATE,
            "pretrained": swin.PRETRAINED,
            "in_chans": input_shape.channels,
        }

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``x`` ``(B, in_chans, H, W)``, H and W multiples of 32 -> ``{name: (B, C_s, H/s, W/s)}``."""
        if x.dim() != 4 or x.shape[-2] % 32 or x.shape[-1] % 32:
            raise ValueError(f"TimmSwinBackbone needs (B, C, H, W) with H, W multiples of 32, got {tuple(x.shape)}")
        maps = self.swin.forward_intermediates(x, indices=self._indices, intermediates_only=True)
        return {f: self._norm(f, m) for f, m in zip(self._out_features, maps)}

    def _norm(self, name: str, feature: torch.Tensor) -> torch.Tensor:
        """LayerNorm over channels of a ``(B, C, h, w)`` map."""
        return self.out_norms[name](feature.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous()

    def output_shape(self) -> dict[str, ShapeSpec]:
        """``{name: ShapeSpec(channels, stride)}`` of the returned stages."""
        return {
            f: ShapeSpec(channels=self._out_feature_channels[f], stride=self._out_feature_strides[f])
            for f in self._out_features
        }

    @property
    def size_divisibility(self) -> int:
        """Inputs are padded to multiples of 32 (the stride of res5)."""
        return 32


@BACKBONE_REGISTRY.register()
def build_timm_swin_backbone(cfg, input_shape: ShapeSpec) -> TimmSwinBackbone:
    """Build :class:`TimmSwinBackbone` from ``MODEL.SWIN_TIMM.*`` (Detectron2 ``build_backbone`` entry point)."""
    return TimmSwinBackbone(cfg, input_shape)
