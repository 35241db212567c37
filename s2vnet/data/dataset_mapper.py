"""``VolumeDatasetMapper``: one volume's dataset dict -> one training clip of slices.

Input: a dict from :func:`s2vnet.data.slice_cache.cached_dataset_dicts` (it carries a ``"cache"``
entry; the mapper memory-maps the cached arrays and never decodes a NIfTI).

Output (the structure the model consumes)::

    {
      "case_id": str, "dataset_name": str,
      "slice_indices": [z_0, z_1, z_2],       # in decoding order (ascending or descending)
      "interactive_classes": int64 (M,),      # class indices trained from clicks in this clip
      "error_rounds": int,                    # error-driven click rounds the model runs first (CLICKS.ERROR_*)
      "slices": [                             # one entry per slice, in decoding order
        {
          "image": uint8 (1, H, W),           # normalised slice, [0, 255], padding = PAD_VALUE
          "height": H, "width": W,
          "sem_seg": int64 (H, W),            # 0 = background, c + 1 = class c, 255 = padding (ignore)
          "instances": Instances(gt_classes int64 (M_t,), gt_masks bool (M_t, H, W)),  # one per class present
          "clicks": {"coords": float32 (N, 2) as (y, x) pixels, "classes": int64 (N,), "positive": bool (N,)},
        }, ...
      ],
    }

Every slice of a clip gets the same LSJ crop/scale, the same flip and the same (optional) intensity jitter.
Each class present in the
clip is made interactive with probability ``CLICKS.INTERACTIVE_PROB``; its clicks are simulated on
the first slice (in decoding order) where it appears, and the other slices carry no clicks for it.
"""

from __future__ import annotations

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.structures import Instances
from detectron2.utils import comm

from s2vnet.data.augmentation import LSJSettings, sample_intensity, sample_lsj
from s2vnet.data.click_simulation import ClickSettings, simulate_clicks
from s2vnet.data.slice_cache import load_cached_slices
from s2vnet.data.slice_sampling import SliceSamplingSettings, sample_slice_indices

__all__ = ["VolumeDatasetMapper"]


class VolumeDatasetMapper:
    """Samples a clip of slices from a cached volume, augments it and simulates clicks."""

    @configurable
    def __init__(
        self,
        *,
        sampling: SliceSamplingSettings,
        lsj: LSJSettings,
        clicks: ClickSettings,
        seed: int | None = None,
    ) -> None:
        """
        Args:
            sampling: how slices are chosen (count, gap, foreground preference, direction).
            lsj: the shared large-scale jitter, crop and flip.
            clicks: click simulation settings.
            seed: base seed; each data-loader worker and rank derives its own stream from it.
                None draws fresh entropy from the OS.
        """
        self.sampling = sampling
        self.lsj = lsj
        self.clicks = clicks
        self.seed = seed
        self._rng: np.random.Generator | None = None

    @classmethod
    def from_config(cls, cfg) -> dict:
        return {
            "sampling": SliceSamplingSettings.from_cfg(cfg),
            "lsj": LSJSettings.from_cfg(cfg),
            "clicks": ClickSettings.from_cfg(cfg),
            "seed": cfg.SEED if cfg.SEED >= 0 else None,
        }

    def _generator(self) -> np.random.Generator:
        """This process's generator: seeded by (seed, rank, data-loader worker id), made on first use."""
        if self._rng is None:
            worker = torch.utils.data.get_worker_info()
            entropy = None if self.seed is None else [self.seed, comm.get_rank(), worker.id if worker else 0]
            self._rng = np.random.default_rng(entropy)
        return self._rng

    def __call__(self, dataset_dict: dict, rng: np.random.Generator | None = None) -> dict:
        """Map one volume dict to one clip (see the module docstring); ``rng`` overrides the mapper's own."""
        rng = self._generator() if rng is None else rng
        arrays = load_cached_slices(dataset_dict["cache"])
        indices = sample_slice_indices(rng, arrays["presence"], self.sampling)
        transform = sample_lsj(rng, arrays["image"].shape[1:], self.lsj)
        jitter = sample_intensity(rng, self.lsj)
        images = [transform.apply_image(jitter(np.array(arrays["image"][z]))) for z in indices]
        labels = [transform.apply_segmentation(np.array(arrays["label"][z])) for z in indices]
        num_classes = arrays["presence"].shape[1]
        interactive = self._pick_interactive(rng, labels, num_classes)
        slices = [self._slice_record(img, lbl) for img, lbl in zip(images, labels)]
        self._add_clicks(rng, slices, labels, interactive)
        return {
            "case_id": dataset_dict["case_id"],
            "dataset_name": dataset_dict.get("dataset_name", ""),
            "slice_indices": [int(z) for z in indices],
            "interactive_classes": torch.as_tensor(interactive, dtype=torch.int64),
            "error_rounds": self.clicks.error_rounds(rng) if interactive else 0,
            "slices": slices,
        }

    def _pick_interactive(self, rng: np.random.Generator, labels: list[np.ndarray], num_classes: int) -> list[int]:
        present = sorted({int(v) - 1 for lbl in labels for v in np.unique(lbl) if 0 < v <= num_classes})
        return [c for c in present if rng.random() < self.clicks.interactive_prob]

    @staticmethod
    def _slice_record(image: np.ndarray, label: np.ndarray) -> dict:
        sem_seg = torch.as_tensor(label.astype(np.int64))
        values = [int(v) for v in np.unique(label) if 0 < v < 255]
        instances = Instances(label.shape)
        instances.gt_classes = torch.tensor([v - 1 for v in values], dtype=torch.int64)
        instances.gt_masks = (
            torch.stack([sem_seg == v for v in values]) if values else torch.zeros((0,) + label.shape, dtype=torch.bool)
        )
        empty = {
            "coords": torch.zeros((0, 2)),
            "classes": torch.zeros(0, dtype=torch.int64),
            "positive": torch.zeros(0, dtype=torch.bool),
        }
        return {
            "image": torch.as_tensor(np.ascontiguousarray(image))[None],
            "height": label.shape[0],
            "width": label.shape[1],
            "sem_seg": sem_seg,
            "instances": instances,
            "clicks": empty,
        }

    def _add_clicks(
        self, rng: np.random.Generator, slices: list[dict], labels: list[np.ndarray], classes: list[int]
    ) -> None:
        for c in classes:
            t = next(i for i, lbl in enumerate(labels) if (lbl == c + 1).any())
            coords, positive = simulate_clicks(labels[t] == c + 1, labels[t] != 255, rng, self.clicks)
            clicks = slices[t]["clicks"]
            clicks["coords"] = torch.cat([clicks["coords"], torch.from_numpy(coords)])
            clicks["classes"] = torch.cat([clicks["classes"], torch.full((len(coords),), c, dtype=torch.int64)])
            clicks["positive"] = torch.cat([clicks["positive"], torch.from_numpy(positive)])
