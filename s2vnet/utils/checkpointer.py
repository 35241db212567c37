"""A Detectron2 checkpointer whose files are written atomically.

Detectron2 (fvcore) writes ``model_XXXXXXX.pth`` and ``last_checkpoint`` in place, so a kill during a save
leaves a zero-byte or partial checkpoint (and ``--resume`` falls back one period or fails). Here both are
written to a temporary file, synced and renamed, so each is complete or absent.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from detectron2.checkpoint import DetectionCheckpointer

from s2vnet.utils.atomic import atomic_write

__all__ = ["AtomicCheckpointer"]


def _is_local(path: str) -> bool:
    return "://" not in str(path)


class AtomicCheckpointer(DetectionCheckpointer):
    """:class:`DetectionCheckpointer` with atomic ``save`` and ``tag_last_checkpoint`` for local folders."""

    def save(self, name: str, **kwargs: Any) -> None:
        """As :meth:`fvcore.common.checkpoint.Checkpointer.save`: model, checkpointables and ``kwargs``."""
        if not self.save_dir or not self.save_to_disk or not _is_local(self.save_dir):
            return super().save(name, **kwargs)
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        data.update(kwargs)
        basename = f"{name}.pth"
        path = Path(self.save_dir) / basename
        self.logger.info("Saving checkpoint to %s", path)
        os.makedirs(self.save_dir, exist_ok=True)
        atomic_write(path, lambda handle: torch.save(data, handle))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        if not _is_local(self.save_dir):
            return super().tag_last_checkpoint(last_filename_basename)
        text = last_filename_basename.encode("utf-8")
        atomic_write(Path(self.save_dir) / "last_checkpoint", lambda handle: handle.write(text))
