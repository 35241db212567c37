"""Loading trained weights into a model built from a config."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from s2vnet.errors import InputError

__all__ = ["load_weights"]


def load_weights(model: torch.nn.Module, path: str | os.PathLike) -> None:
    """Load a Detectron2 checkpoint strictly; weights that do not fit the config are an :class:`InputError`.

    The file is read with ``weights_only=True``: tensors and plain containers only, no arbitrary pickled code
    (Detectron2's own checkpoints, including ``model_final.pth``, load this way).
    """
    if not Path(path).is_file():
        raise InputError(path, "no such weights file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or non-tensor files
        raise InputError(path, f"cannot be read as a weights-only checkpoint ({type(err).__name__})") from None
    state = state.get("model", state) if isinstance(state, dict) else state
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).strip().splitlines()[1:3]]
        raise InputError(path, "weights do not match the config: " + " ".join(lines)[:300]) from None
