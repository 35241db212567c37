"""Mapping a dataset's stored label ids onto S2VNet's contiguous label values.

Stored label files use each dataset's own ids (BTCV 1..13, TotalSegmentator 1..117, ...).
Inside S2VNet a label volume holds ``0`` for background and ``c + 1`` for class index ``c``
(``c`` indexes ``MetadataCatalog.get(name).stuff_classes``); the model's class targets are the
class indices ``c``. Stored ids that are not in the class list are an error, unless the dataset
was registered with ``unlisted_labels="background"`` (used when a subset of a label set is trained).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from s2vnet.errors import InputError

UNLISTED_POLICIES = ("error", "background")


@dataclass(frozen=True)
class LabelMap:
    """Stored ids -> contiguous values.

    Attributes:
        label_ids: stored id of each class, in class-index order (class ``c`` has id ``label_ids[c]``).
        unlisted: "error" or "background": what to do with a stored id not in ``label_ids`` (0 is background).
    """

    label_ids: tuple[int, ...]
    unlisted: str = "error"

    def __post_init__(self) -> None:
        if self.unlisted not in UNLISTED_POLICIES:
            raise ValueError(f"unlisted must be one of {UNLISTED_POLICIES}, got {self.unlisted!r}")
        if len(set(self.label_ids)) != len(self.label_ids) or 0 in self.label_ids:
            raise ValueError(f"label ids must be distinct and non-zero, got {self.label_ids}")
        if len(self.label_ids) > 254:
            raise ValueError("at most 254 classes fit the uint8 label cache (255 is the ignore value)")

    def encode(self, stored: np.ndarray, source: str) -> np.ndarray:
        """Stored label array (any shape) -> uint8 array of contiguous values (0 = background)."""
        present = np.unique(stored)
        known = set(self.label_ids) | {0}
        unknown = [int(v) for v in present if int(v) not in known]
        if unknown and self.unlisted == "error":
            listed = ", ".join(str(v) for v in sorted(known))
            raise InputError(source, f"label values {unknown[:10]} are not in the class list (ids {listed})")
        if present.size and present.min() < 0:
            raise InputError(source, f"label volume holds negative values ({int(present.min())})")
        lut = np.zeros(int(max(present.max(initial=0), max(self.label_ids))) + 1, dtype=np.uint8)
        lut[list(self.label_ids)] = np.arange(1, len(self.label_ids) + 1, dtype=np.uint8)
        return lut[stored]


def default_label_ids(class_names: Sequence[str]) -> tuple[int, ...]:
    """Ids 1..K for K classes, the convention of most public datasets."""
    return tuple(range(1, len(class_names) + 1))
