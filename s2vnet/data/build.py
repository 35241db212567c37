"""The training data loader: cached volumes -> ``VolumeDatasetMapper`` clips, Detectron2-style batches."""

from __future__ import annotations

from detectron2.data import build_detection_train_loader
from detectron2.data.samplers import TrainingSampler

from s2vnet.data.dataset_mapper import VolumeDatasetMapper
from s2vnet.data.slice_cache import cached_dataset_dicts
from s2vnet.errors import InputError


def build_volume_train_loader(cfg, mapper: VolumeDatasetMapper | None = None):
    """Infinite loader over ``cfg.DATASETS.TRAIN``; each batch is a list of ``SOLVER.IMS_PER_BATCH`` clips.

    The slice cache is built first if it is missing or stale (with a progress bar).
    """
    if not cfg.DATASETS.TRAIN:
        raise InputError("DATASETS.TRAIN", "no training datasets configured")
    dicts = cached_dataset_dicts(cfg, cfg.DATASETS.TRAIN)
    return build_detection_train_loader(
        dicts,
        mapper=mapper or VolumeDatasetMapper(cfg),
        sampler=TrainingSampler(len(dicts), seed=cfg.SEED if cfg.SEED >= 0 else None),
        total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
        aspect_ratio_grouping=False,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )
