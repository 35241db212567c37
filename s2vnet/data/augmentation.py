"""Large-scale jitter (LSJ) and flip for a clip of slices, drawn from a passed generator.

Detectron2's ``ResizeScale`` / ``FixedSizeCrop`` augmentations draw from NumPy's global RNG;
S2VNet draws the parameters itself from an ``np.random.Generator`` and builds the same Detectron2
*transforms*, so one sampled ``TransformList`` is applied identically to every slice of a clip.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from detectron2.data import transforms as T
from fvcore.transforms.transform import CropTransform, HFlipTransform, PadTransform
from PIL import Image


@dataclass(frozen=True)
class LSJSettings:
    """Config ``INPUT.VOLUME.{LSJ_SCALE, CROP_SIZE, FLIP_PROB, PAD_VALUE}``."""

    scale: tuple[float, float] = (0.5, 1.75)
    crop_size: tuple[int, int] = (512, 512)
    flip_prob: float = 0.5
    pad_value: int = 0
    seg_pad_value: int = 255
    contrast: tuple[float, float] = (1.0, 1.0)
    brightness: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def from_cfg(cls, cfg) -> LSJSettings:
        vol = cfg.INPUT.VOLUME
        return cls(
            tuple(map(float, vol.LSJ_SCALE)),
            tuple(map(int, vol.CROP_SIZE)),
            float(vol.FLIP_PROB),
            int(vol.PAD_VALUE),
            255,
            tuple(map(float, vol.CONTRAST_RANGE)),
            tuple(map(float, vol.BRIGHTNESS_RANGE)),
        )


def sample_intensity(rng: np.random.Generator, settings: LSJSettings):
    """Draw one contrast/brightness jitter; returns ``fn(uint8 slice) -> uint8 slice`` (identity when off).

    ``out = clip((x - 128) * contrast + 128 + brightness, 0, 255)``, the same for every slice of a clip.
    Not in the paper; the demo config turns it on because it trains on a single patient.
    """
    if settings.contrast == (1.0, 1.0) and settings.brightness == (0.0, 0.0):
        return lambda image: image
    contrast = rng.uniform(*settings.contrast)
    brightness = rng.uniform(*settings.brightness)

    def jitter(image: np.ndarray) -> np.ndarray:
        out = (image.astype(np.float32) - 128.0) * contrast + 128.0 + brightness
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    return jitter


def sample_lsj(rng: np.random.Generator, image_hw: tuple[int, int], settings: LSJSettings) -> T.TransformList:
    """Draw one LSJ + flip for slices of size ``image_hw = (H, W)``.

    Resize so the slice fits ``scale * crop_size`` (aspect ratio kept, scale ~ U(settings.scale)),
    crop a random ``crop_size`` window (or pad up to it), then flip horizontally with
    probability ``flip_prob``. The result maps any ``(H, W)`` slice to ``crop_size``.
    """
    h, w = image_hw
    crop_h, crop_w = settings.crop_size
    scale = rng.uniform(*settings.scale)
    factor = min(scale * crop_h / h, scale * crop_w / w)
    new_h, new_w = max(1, int(round(h * factor))), max(1, int(round(w * factor)))
    tfms = [T.ResizeTransform(h, w, new_h, new_w, interp=Image.BILINEAR)]
    ch, cw = min(crop_h, new_h), min(crop_w, new_w)
    y0 = int(rng.integers(0, new_h - ch + 1))
    x0 = int(rng.integers(0, new_w - cw + 1))
    tfms.append(CropTransform(x0, y0, cw, ch, orig_w=new_w, orig_h=new_h))
    if (ch, cw) != (crop_h, crop_w):
        tfms.append(
            PadTransform(
                0,
                0,
                crop_w - cw,
                crop_h - ch,
                orig_w=cw,
                orig_h=ch,
                pad_value=settings.pad_value,
                seg_pad_value=settings.seg_pad_value,
            )
        )
    if rng.random() < settings.flip_prob:
        tfms.append(HFlipTransform(crop_w))
    return T.TransformList(tfms)
