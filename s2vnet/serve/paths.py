"""Opening scans by path, confined to the server's ``--data-root``.

Rules: a requested path is taken relative to the data root; ``..`` components are refused outright; an
absolute path is accepted only if it already lies inside the root; the path is resolved with every symlink
followed and must still lie inside the root; a DICOM folder's files must too. Only formats whose voxels live
in the one file are opened (NIfTI, attached NRRD, MHA with local data), because a detached header
(``.mhd``, ``.nhdr``, ``.hdr``) could point the reader at any file on the machine.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from s2vnet.data.dicom import holds_dicom
from s2vnet.data.volume_io import SINGLE_FILE_SUFFIXES
from s2vnet.errors import InputError

__all__ = ["SCAN_SUFFIXES", "resolve_in_root", "list_scans", "check_single_file_format"]

# Suffixes opened from the data root (and, except .mha, accepted as uploads).
SCAN_SUFFIXES = SINGLE_FILE_SUFFIXES  # detached-header formats could point at data outside the root
_DETACHED = (".mhd", ".nhdr", ".hdr", ".img", ".raw")


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def resolve_in_root(root: Path, requested: str) -> Path:
    """The real path of ``requested`` (relative to ``root``, or absolute inside it), never outside ``root``.

    Args:
        root: the data root, already resolved.
        requested: what the client asked for.

    Raises:
        InputError: empty, ``..``, outside the root (directly or through a symlink), missing, or not a scan.
    """
    if not requested or "\x00" in requested:
        raise InputError(requested or "<empty path>", "no path given")
    parts = PurePosixPath(requested.replace("\\", "/")).parts
    if ".." in parts:
        raise InputError(requested, "'..' is not allowed in a path")
    absolute = os.path.isabs(requested)
    real = (Path(requested) if absolute else root / requested).resolve()
    if not _inside(real, root):
        how = "" if absolute else " (through a symbolic link)"
        raise InputError(requested, f"lies outside the data root{how}")
    if not real.exists():
        raise InputError(requested, "no such file or folder under the data root")
    if real.is_dir():
        _check_folder(real, root, requested)
    else:
        check_single_file_format(real, requested)
    return real


def _check_folder(folder: Path, root: Path, requested: str) -> None:
    """A DICOM folder: every entry must resolve inside the root."""
    for entry in folder.iterdir():
        if not _inside(entry.resolve(), root):
            raise InputError(requested, f"holds '{entry.name}', a link to outside the data root")


def check_single_file_format(path: Path, shown: str) -> None:
    """Refuse formats that are not served, and NRRD / MHA headers that point to another data file."""
    name = path.name.lower()
    if name.endswith(_DETACHED):
        raise InputError(
            shown,
            "detached-header formats (.mhd/.nhdr/.hdr/.img) are not opened by the server; convert to .nii.gz or .nrrd",
        )
    if not name.endswith(SCAN_SUFFIXES):
        raise InputError(shown, f"unsupported file type; expected one of {', '.join(SCAN_SUFFIXES)} or a DICOM folder")
    if name.endswith(".nrrd") and _nrrd_data_file(path):
        raise InputError(shown, "NRRD header names a separate data file; only attached NRRD is opened")
    if name.endswith(".mha") and _mha_data_file(path):
        raise InputError(shown, "MetaImage header names a separate data file; only ElementDataFile = LOCAL is opened")


def _header_lines(path: Path, limit: int = 65536) -> list[str]:
    with open(path, "rb") as handle:
        head = handle.read(limit)
    text = head.split(b"\n\n", 1)[0].decode("latin-1")
    return [line.strip() for line in text.splitlines()]


def _nrrd_data_file(path: Path) -> bool:
    """Whether an NRRD header has a ``data file:`` / ``datafile:`` field."""
    for line in _header_lines(path):
        key = line.split(":", 1)[0].strip().lower().replace(" ", "")
        if key == "datafile":
            return True
    return False


def _mha_data_file(path: Path) -> bool:
    """Whether a MetaImage header's ``ElementDataFile`` is anything but ``LOCAL``."""
    for line in _header_lines(path):
        key, _, value = line.partition("=")
        if key.strip().lower() == "elementdatafile":
            return value.strip().upper() != "LOCAL"
    return False


def list_scans(root: Path, max_depth: int = 4, limit: int = 1000) -> list[str]:
    """Scans under ``root`` as relative paths: image files, and folders holding DICOM files (with a ``/``).

    Symbolic links are not followed; at most ``limit`` entries, ``max_depth`` folders deep.
    """
    found: list[str] = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        depth = len(Path(folder).relative_to(root).parts)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if depth < max_depth else []
        rel = Path(folder).relative_to(root).as_posix()
        if rel != "." and holds_dicom(Path(folder), files):
            found.append(rel + "/")
        found += [
            (Path(rel) / f).as_posix()
            for f in sorted(files)
            if f.lower().endswith(SCAN_SUFFIXES) and not (Path(folder) / f).is_symlink()
        ]
        if len(found) >= limit:
            return found[:limit]
    return found
