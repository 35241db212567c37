"""The one click type, its coordinate frames, and the clicks JSON.

A :class:`Click` is a class index (0-based), a sign and a position *in a named frame*:

========== ===================================================================================
frame      position
========== ===================================================================================
``ijk``    the scan's stored SimpleITK index ``[i, j, k]`` (what the clicks JSON calls ``voxel``)
``zyx``    the same voxel as a stored array index ``(z, y, x)`` (``ijk`` reversed)
``working`` the network's grid after reorientation and in-plane resampling: slice ``z`` (int) and
           pixel ``(y, x)`` (float, pixel centres at integers)
``display`` the viewer's LPS display index ``(slice, row, col)``
========== ===================================================================================

:class:`ClickFrames` maps positions between the frames of one volume; it uses the index maps of
:class:`~s2vnet.data.orientation.Reorientation` and :class:`~s2vnet.data.resample.InPlaneResampling`
(one definition each, shared with the array maps). Stored ``zyx`` is the hub.

The clicks JSON (predict CLI, viewer API) is a list of objects::

    {"class": "liver" | 2, "positive": true, "voxel": [i, j, k]}      # or "point": [x, y, z] (mm, LPS)
                                                                         # or "display": [s, r, c] (viewer)

``class`` is a class name or a label id ``1..K`` (the id written in output label maps), never a 0-based
index; ``positive`` is a JSON boolean (default true). :func:`parse_click` checks every value strictly and
raises :class:`~s2vnet.errors.InputError` with one line naming the source and the click.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from s2vnet.data.orientation import Reorientation
from s2vnet.data.resample import InPlaneResampling
from s2vnet.errors import InputError

__all__ = ["FRAMES", "Click", "ClickFrames", "parse_click", "parse_clicks", "read_clicks", "click_tensors"]

FRAMES = ("ijk", "zyx", "working", "display")
# JSON key of each user-facing position kind, and the frame it is in ("point" is physical, mapped to ijk).
JSON_POSITIONS = {"voxel": "ijk", "display": "display", "point": "physical"}


@dataclass(frozen=True)
class Click:
    """One click.

    Attributes:
        class_index: 0-based class index (label id ``class_index + 1``).
        position: three numbers in ``frame`` (see the module docstring).
        frame: one of :data:`FRAMES`.
        positive: True adds the class at the click, False marks a place that is not the class.
    """

    class_index: int
    position: tuple[float, float, float]
    frame: str = "zyx"
    positive: bool = True

    def __post_init__(self) -> None:
        if self.frame not in FRAMES:
            raise ValueError(f"unknown click frame '{self.frame}'; known: {', '.join(FRAMES)}")
        if not _is_int(self.class_index) or self.class_index < 0:
            raise ValueError(f"class_index must be a non-negative int, got {self.class_index!r}")
        if not isinstance(self.positive, (bool, np.bool_)):
            raise ValueError(f"positive must be a bool, got {self.positive!r}")
        if len(self.position) != 3 or not all(_is_number(v) and _is_finite(v) for v in self.position):
            raise ValueError(f"position must be three finite numbers, got {self.position!r}")
        object.__setattr__(self, "position", tuple(self.position))
        object.__setattr__(self, "positive", bool(self.positive))
        object.__setattr__(self, "class_index", int(self.class_index))

    @property
    def slice_index(self) -> int:
        """The first coordinate as an int (the slice in the ``zyx``, ``working`` and ``display`` frames)."""
        return int(round(self.position[0]))

    def at(self, position: Sequence[float], frame: str) -> Click:
        """The same click at another position/frame."""
        return replace(self, position=tuple(position), frame=frame)

    def to_json(self, class_names: Sequence[str] | None = None) -> dict:
        """The JSON object of a click in the ``ijk`` or ``display`` frame (class by name when names are given)."""
        key = {"ijk": "voxel", "display": "display"}.get(self.frame)
        if key is None:
            raise ValueError(f"a {self.frame} click has no JSON form; map it to 'ijk' or 'display' first")
        label = class_names[self.class_index] if class_names else self.class_index + 1
        return {"class": label, "positive": self.positive, key: [int(round(v)) for v in self.position]}


class ClickFrames:
    """Maps click positions between the frames of one volume (and checks they lie inside it).

    Args:
        stored_shape: the stored array shape ``(z, y, x)``.
        working: reorientation from stored to the network's orientation.
        resampling: in-plane resampling from the reoriented grid to the working grid.
        display: reorientation from stored to the viewer's display orientation (None: no display frame).
        geometry: the scan's :class:`~s2vnet.data.volume_io.Geometry`, for physical points (None: none).
    """

    def __init__(
        self,
        stored_shape: Sequence[int],
        working: Reorientation,
        resampling: InPlaneResampling,
        display: Reorientation | None = None,
        geometry=None,
    ) -> None:
        self.stored_shape = tuple(int(s) for s in stored_shape)
        self.working, self.resampling, self.display, self.geometry = working, resampling, display, geometry

    @classmethod
    def of(cls, prepared, display: Reorientation | None = None) -> ClickFrames:
        """The frames of a :class:`~s2vnet.data.preprocess.PreparedVolume`."""
        return cls(prepared.geometry.shape, prepared.reorientation, prepared.resampling, display, prepared.geometry)

    def shape(self, frame: str) -> tuple[int, ...]:
        """The index extent of ``frame`` (``working`` in-plane extent is the resampled one)."""
        if frame == "zyx":
            return self.stored_shape
        if frame == "ijk":
            return tuple(reversed(self.stored_shape))
        if frame == "working":
            return (self.working.shape(self.stored_shape)[0],) + tuple(self.resampling.out_shape)
        return self._display().shape(self.stored_shape)

    def to_zyx(self, click: Click) -> tuple[int, int, int]:
        """The stored array voxel ``(z, y, x)`` of a click in any frame (rounded to the nearest voxel)."""
        p = click.position
        if click.frame == "zyx":
            return _rounded(p)
        if click.frame == "ijk":
            return _rounded(p[::-1])
        if click.frame == "display":
            return self._display().invert_index(_rounded(p), self.stored_shape)
        y, x = self.resampling.restore_index(p[1:])
        canon = (click.slice_index, int(round(y)), int(round(x)))
        return self.working.invert_index(canon, self.stored_shape)

    def convert(self, click: Click, frame: str, source: str = "clicks") -> Click:
        """The click in ``frame``; raises :class:`InputError` (naming ``source``) when it lies outside the volume."""
        self.check_inside(click, source)
        if frame == click.frame:
            return click
        zyx = self.to_zyx(click)
        if frame == "zyx":
            return click.at(zyx, "zyx")
        if frame == "ijk":
            return click.at(zyx[::-1], "ijk")
        if frame == "display":
            return click.at(self._display().apply_index(zyx, self.stored_shape), "display")
        canon = self.working.apply_index(zyx, self.stored_shape)
        return click.at((canon[0],) + self.resampling.index(canon[1:]), "working")

    def check_inside(self, click: Click, source: str = "clicks") -> None:
        """Raise :class:`InputError` when the click lies outside the volume in its own frame.

        A voxel frame needs the rounded index inside the extent; the ``working`` frame an integer slice
        and an in-plane position inside the pixels' extent ``[-0.5, n - 0.5)``.
        """
        extent = self.shape(click.frame)
        if click.frame == "working":
            z, y, x = click.position
            inside = (
                0 <= z < extent[0]
                and float(z).is_integer()
                and all(-0.5 <= v < n - 0.5 for v, n in zip((y, x), extent[1:]))
            )
        else:
            inside = all(0 <= round(v) < n for v, n in zip(click.position, extent))
        if not inside:
            shown = [round(float(v), 2) for v in click.position]
            raise InputError(source, f"click at {click.frame} {shown} lies outside the volume (size {list(extent)})")

    def from_physical(self, point: Sequence[float]) -> tuple[int, int, int]:
        """Physical LPS ``(x, y, z)`` mm -> nearest stored index ``[i, j, k]``."""
        if self.geometry is None:
            raise ValueError("physical points need the scan's geometry")
        return tuple(int(round(v)) for v in self.geometry.physical_to_index(point))

    def _display(self) -> Reorientation:
        if self.display is None:
            raise ValueError("this volume has no display frame")
        return self.display


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _is_finite(value: Any) -> bool:
    """Whether a number is finite as a float (an int too large for a float is not)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _rounded(position: Sequence[float]) -> tuple[int, int, int]:
    return tuple(int(round(float(v))) for v in position)


def _class_index(value: Any, class_names: Sequence[str], where: str) -> int:
    """A click's ``class`` value (name or label id ``1..K``) -> 0-based index."""
    if isinstance(value, str):
        if value in class_names:
            return list(class_names).index(value)
        if value.isascii() and value.isdigit() and len(value) <= 9:  # "2"; not "²" or 5000 digits
            value = int(value)
        else:
            raise InputError(where, f"unknown class name {_short(value)}; known: {', '.join(class_names)}")
    if not _is_int(value):
        raise InputError(where, f"'class' must be a class name or a label id 1..{len(class_names)}, got {value!r}")
    if not 1 <= value <= len(class_names):
        raise InputError(where, f"unknown class id {value}; ids are 1..{len(class_names)}")
    return int(value) - 1


def _position(value: Any, integer: bool, where: str, key: str) -> tuple[float, float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 3 or not all(_is_number(v) for v in value):
        raise InputError(where, f"'{key}' must be a list of three numbers, got {_short(value)}")
    if not all(_is_finite(v) for v in value):
        raise InputError(where, f"'{key}' must be finite, got {_short(value)}")
    if integer and not all(float(v).is_integer() for v in value):
        raise InputError(where, f"'{key}' must be three integer indices, got {value!r}")
    return tuple(float(v) for v in value)


def parse_click(
    obj: Any, class_names: Sequence[str], frames: ClickFrames | None = None, source: str = "clicks"
) -> Click:
    """Validate one clicks-JSON object and return it as a :class:`Click` in its frame.

    ``voxel`` gives an ``ijk`` click and ``display`` a ``display`` click; a physical ``point`` is mapped to
    the nearest ``ijk`` voxel, which needs ``frames``. With ``frames`` the click must lie inside the volume.

    Raises:
        InputError: one line naming ``source`` and the problem.
    """
    if not isinstance(obj, dict) or "class" not in obj:
        raise InputError(source, f"a click must be an object with 'class', got {_short(obj)}")
    keys = [k for k in JSON_POSITIONS if k in obj]
    if len(keys) != 1:
        raise InputError(
            source,
            f"a click needs exactly one of 'voxel' or 'point' (the viewer also takes 'display'), got {_short(obj)}",
        )
    unknown = set(obj) - {"class", "positive", *JSON_POSITIONS}
    if unknown:
        raise InputError(source, f"unknown click key(s) {', '.join(sorted(unknown))}")
    positive = obj.get("positive", True)
    if not isinstance(positive, bool):
        raise InputError(source, f"'positive' must be true or false, got {positive!r}")
    key = keys[0]
    position = _position(obj[key], key != "point", source, key)
    if key == "point":
        if frames is None:
            raise InputError(source, "physical 'point' clicks need the scan's geometry")
        position = frames.from_physical(position)
    click = Click(
        _class_index(obj["class"], class_names, source),
        position,
        "ijk" if key == "point" else JSON_POSITIONS[key],
        positive,
    )
    if frames is not None:
        frames.check_inside(click, source)
    return click


def parse_clicks(
    objs: Any, class_names: Sequence[str], frames: ClickFrames | None = None, source: str = "clicks"
) -> list[Click]:
    """Validate a clicks-JSON list (see :func:`parse_click`); errors name the click's place in the list."""
    if not isinstance(objs, list):
        raise InputError(source, "clicks must be a JSON list of click objects")
    return [parse_click(obj, class_names, frames, f"{source} (click {i + 1})") for i, obj in enumerate(objs)]


def _short(obj: Any) -> str:
    text = repr(obj)
    return text if len(text) <= 80 else text[:77] + "..."


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def read_clicks(path: str | os.PathLike) -> list:
    """Read a clicks JSON file (the list of click objects, not yet validated: see :func:`parse_clicks`)."""
    try:
        objs = json.loads(Path(path).read_text(encoding="utf-8"), parse_constant=_reject_constant)
    except FileNotFoundError:
        raise InputError(path, "no such clicks file") from None
    except RecursionError:
        raise InputError(path, "is nested too deeply to be a clicks file") from None
    except (OSError, ValueError) as err:
        raise InputError(path, f"cannot be parsed as JSON ({str(err).splitlines()[0]})") from None
    if not isinstance(objs, list):
        raise InputError(path, "must hold a JSON list of click objects")
    return objs


def click_tensors(clicks: Sequence[Click], device=None) -> dict:
    """Clicks of one slice (``working`` frame) -> the decoder's click input.

    Returns:
        ``{"coords": float32 (n, 2) as (y, x) pixels on ``device``, "classes": [int] * n, "positive": [bool] * n}``;
        classes and signs stay host-side Python lists, so the decoder's slot bookkeeping never waits for the device.
    """
    import torch

    if any(c.frame != "working" for c in clicks):
        raise ValueError("the decoder takes clicks in the working frame")
    coords = torch.tensor([c.position[1:] for c in clicks], dtype=torch.float32, device=device).reshape(-1, 2)
    return {
        "coords": coords,
        "classes": [int(c.class_index) for c in clicks],
        "positive": [bool(c.positive) for c in clicks],
    }
