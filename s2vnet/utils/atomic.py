"""Files that appear complete or not at all, and the clean-up of what a killed writer left behind.

S2VNet's writers (volumes, slice-cache arrays and manifests, checkpoints, evaluation files) write under a
temporary name starting with :data:`TMP_PREFIX` in the target's folder and rename it into place, so a kill
mid-write leaves a ``.tmp-*`` file, never a half-written target. :func:`remove_leftovers` deletes those at the
next start of the same job (a training run in its ``OUTPUT_DIR``, a slice-cache build in its dataset folder).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["TMP_PREFIX", "temp_path", "atomic_write", "remove_leftovers"]

TMP_PREFIX = ".tmp-"


def temp_path(path: Path) -> Path:
    """A fresh temporary name beside ``path`` (``.tmp-<8 hex>-<name>``)."""
    return path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex[:8]}-{path.name}")


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(binary file)`` on a temporary file, flush it to disk, and rename it to ``path``.

    On any failure the temporary file is removed and an existing ``path`` is left as it was.
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def remove_leftovers(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Delete the ``.tmp-*`` files in ``folder`` (and below, when ``recursive``); returns what was removed.

    Call it only where no other process is writing: at the start of the job that owns the folder.
    """
    folder = Path(folder)
    if not folder.is_dir() or folder.is_symlink():
        return []
    removed = []
    for parent, dirs, files in os.walk(folder):  # symbolic links to folders are not followed
        removed += [Path(parent) / f for f in sorted(files) if f.startswith(TMP_PREFIX)]
        dirs[:] = sorted(dirs) if recursive else []
    removed = [p for p in removed if p.is_file() and not p.is_symlink()]
    for path in removed:
        path.unlink(missing_ok=True)
    if removed:
        logging.getLogger(__name__).info("removed %d unfinished temporary file(s) in %s", len(removed), folder)
    return removed
