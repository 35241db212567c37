"""Checks on ``--output`` made before any network work, each failing with one line that names the path.

A single scan writes one file; a folder run writes into a folder. Refused: an output that is the input
(or lies inside the input's DICOM folder or scan folder, where the next run would read it as a scan), an
existing folder given as a file, an existing file given as a folder, a parent that is a file, and a folder
that cannot be written (probed by creating and removing a temporary file, so permissions, read-only mounts
and root's rights are all taken as they really are).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from s2vnet.errors import InputError
from s2vnet.inference.writers import format_of_path

__all__ = ["check_output_file", "check_output_folder", "check_writable"]


def _same_or_inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def check_writable(target: Path) -> None:
    """``target`` (a file or folder still to be written) can be created: its nearest existing ancestor is a
    writable folder.

    Raises:
        InputError: an ancestor is a file, or the folder refuses a new file.
    """
    ancestor = Path(target).absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(target, f"cannot be created: {ancestor} is a file, not a folder")
    try:
        handle, probe = tempfile.mkstemp(prefix=".s2vnet-probe-", dir=ancestor)
    except OSError as err:
        raise InputError(target, f"cannot be written: folder {ancestor} is not writable ({err.strerror})") from None
    os.close(handle)
    os.unlink(probe)


def _check_not_input(output: Path, scan: Path) -> None:
    if output.exists() and scan.exists() and output.resolve() == scan.resolve():
        what = (
            "folder; its scans would be mixed with the results" if scan.is_dir() else "scan; writing would overwrite it"
        )
        raise InputError(output, f"is the input {what}")
    if scan.is_dir() and _same_or_inside(output, scan):
        raise InputError(output, f"lies inside the input folder {scan}; the next run would read it as input")


def check_output_file(output: Path, scan: Path) -> None:
    """One scan -> one file at ``output``.

    Raises:
        InputError: ``output`` is an existing folder, is or lies inside the input, or cannot be written.
    """
    output, scan = Path(output), Path(scan)
    if output.is_dir():
        raise InputError(
            output,
            "is an existing folder; give a file name such as seg.nii.gz (a folder output is "
            "for a folder or list of scans)",
        )
    _check_not_input(output, scan)
    check_writable(output)


def check_output_folder(output: Path, source: Path) -> None:
    """A folder run (``source``: a folder of scans or a list file) -> files in the folder ``output``.

    Raises:
        InputError: ``output`` is an existing file or named like one, is or lies inside the input folder, or
            cannot be written.
    """
    output, source = Path(output), Path(source)
    if output.exists() and not output.is_dir():
        raise InputError(output, "is a file; a folder or list of scans is written into an output folder")
    if not output.exists() and format_of_path(output) is not None:
        raise InputError(
            output,
            "is named like a file; a folder or list of scans is written into an output folder "
            "(choose the file type with --format)",
        )
    _check_not_input(output, source)
    check_writable(output / "probe")
