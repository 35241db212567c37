"""What ``--input`` names: one scan, a folder of scans, or a text file listing scans; and the cases' names.

* one scan: an image file (NIfTI, NRRD, MHA/MHD, a single DICOM file) or a folder holding DICOM files;
* a folder of scans: its image files and its sub-folders that hold DICOM files (one level, sorted by name;
  hidden entries and other files are ignored);
* a list: a ``.txt`` / ``.lst`` / ``.list`` file with one path per line (blank lines and ``#`` comments
  ignored; relative paths are taken from the list's folder). A listed path that does not exist stays a
  case, so the run reports it and goes on with the others.

A case is named after its file without the image suffix, or its folder; names that collide get their
parent folders prepended (``p1_ct``, ``p2_ct``) until every name is unique.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from s2vnet.data.dicom import holds_dicom
from s2vnet.data.volume_io import IMAGE_SUFFIXES, matching_suffix
from s2vnet.errors import InputError

__all__ = ["Case", "LIST_SUFFIXES", "is_case_collection", "discover_cases", "read_case_list", "case_names"]

LIST_SUFFIXES = (".txt", ".lst", ".list")


@dataclass(frozen=True)
class Case:
    """One scan of a folder run: its unique ``name`` (output file stem) and its ``path``."""

    name: str
    path: Path


def is_case_collection(path: Path) -> bool:
    """Whether ``--input`` names several scans (a folder that is not itself a DICOM series, or a list file)."""
    path = Path(path)
    if path.is_dir():
        return not holds_dicom(path)
    return matching_suffix(path, LIST_SUFFIXES) is not None


def _stem(path: Path) -> str:
    suffix = matching_suffix(path, IMAGE_SUFFIXES + (".dcm",))
    name = path.name.rstrip("/")
    return name[: len(name) - len(suffix)] if suffix else name


def case_names(paths: Sequence[Path]) -> list[str]:
    """A unique, file-system-safe name per path (stem, then parents prepended where stems collide)."""
    depth = [0] * len(paths)
    while True:
        names = [_name(p, d) for p, d in zip(paths, depth)]
        clashes = {n for n in names if names.count(n) > 1}
        if not clashes:
            return names
        grown = False
        for i, name in enumerate(names):
            if name in clashes and depth[i] < len(paths[i].parent.parts):
                depth[i] += 1
                grown = True
        if not grown:  # the same path listed twice
            return _number_repeats(names)


def _number_repeats(names: list[str]) -> list[str]:
    """``[a, a, b]`` -> ``[a, a_2, b]``."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return out


def _name(path: Path, depth: int) -> str:
    parents = [p for p in path.parent.parts[len(path.parent.parts) - depth :] if p != path.anchor] if depth else []
    raw = "_".join(parents + [_stem(path)])
    return "".join(ch if ch.isalnum() or ch in "-._" else "_" for ch in raw).lstrip(".") or "case"


def _scans_in(folder: Path) -> list[Path]:
    found = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        if entry.is_dir() and holds_dicom(path):
            found.append(path)
        elif entry.is_file() and matching_suffix(path, IMAGE_SUFFIXES) is not None:
            found.append(path)
    return found


def read_case_list(path: Path) -> list[Path]:
    """The paths listed in a text file (relative ones taken from the file's folder)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(path, f"cannot be read as a list of scans ({type(err).__name__})") from None
    entries = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    return [p if p.is_absolute() else Path(path).parent / p for p in map(Path, entries)]


def discover_cases(source: Path) -> list[Case]:
    """The cases of a folder of scans or a list file, in order.

    Raises:
        InputError: ``source`` is missing, or names no scan at all.
    """
    source = Path(source)
    if not source.exists():
        raise InputError(source, "no such file or folder")
    paths = _scans_in(source) if source.is_dir() else read_case_list(source)
    if not paths:
        what = (
            "holds no readable scans (NIfTI / NRRD / MHA files or DICOM series sub-folders)"
            if source.is_dir()
            else "lists no scans"
        )
        raise InputError(source, what)
    return [Case(n, p) for n, p in zip(case_names(paths), paths)]
