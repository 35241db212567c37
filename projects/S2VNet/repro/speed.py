"""``training-speed``: seconds per iteration and peak GPU memory of a ``train_net.py`` output folder.

Read from Detectron2's ``log.txt``: the ``Overall training speed`` line (its timer leaves out the first
iterations) and the largest ``max_mem`` of the periodic metric lines (printed when training on a GPU).
"""

from __future__ import annotations

import re
from pathlib import Path

from s2vnet.errors import InputError

SPEED = re.compile(r"Overall training speed: (\d+) iterations in \S+ \(([\d.]+) s / it\)")
MEMORY = re.compile(r"max_mem: (\d+)M")


def training_speed(folder: Path) -> dict:
    """``{"iterations_timed", "seconds_per_iteration", "peak_memory_mb"}`` (memory None without a GPU)."""
    log = Path(folder) / "log.txt"
    if not log.is_file():
        raise InputError(log, "no such training log")
    text = log.read_text(errors="replace")
    speeds = SPEED.findall(text)
    if not speeds:
        raise InputError(log, "has no 'Overall training speed' line (did the training finish?)")
    iterations, seconds = speeds[-1]
    memory = [int(m) for m in MEMORY.findall(text)]
    return {
        "iterations_timed": int(iterations),
        "seconds_per_iteration": float(seconds),
        "peak_memory_mb": max(memory) if memory else None,
    }
